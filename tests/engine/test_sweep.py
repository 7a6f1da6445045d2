"""Sweeps: crash safety, resume, failures, concurrency and the submitit executors.

Everything goes through the real `ntksim` command in subprocesses, as users and clusters run it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from ntksim.engine.loading import validate
from ntksim.studies.concentration import expand
from tests.conftest import without_scheduler

pytestmark = pytest.mark.cli

KEY = ["activation", "depth", "width", "out_dim", "seed"]
SWEEP = {
    "name": "sweep test",
    "activations": ["relu", "abs"],
    "depths": [2],
    "widths": [8, 16, 32, 64, 128, 256],
    "seeds": 4,
    "seeds_per_cell": 1,
    "data": {"n": 8, "dim": 4},
    "limit": {"backend": "closed_form"},
}


def _env() -> dict[str, str]:
    env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    return without_scheduler(env)  # the fake-sbatch test puts its own in front


def write(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def ntksim(*args: object, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "ntksim", *map(str, args)]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env or _env(), timeout=300)


# `python -m ntksim` with Ctrl-C raising KeyboardInterrupt, as in a terminal's foreground process,
# even when these tests run in a background job (which ignores SIGINT; children inherit that).
FOREGROUND = (
    "import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "runpy.run_module('ntksim', run_name='__main__')"
)


def start(*args: object, cwd: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-c", FOREGROUND, *map(str, args)]
    return subprocess.Popen(
        cmd, cwd=cwd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_for_shards(out: Path, count: int, proc: subprocess.Popen, limit: float = 120) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if len(list((out / "shards").glob("*.csv"))) >= count:
            return
        assert proc.poll() is None, "the run ended before it could be interrupted"
        time.sleep(0.02)
    raise AssertionError("no shards appeared")


def shard_stamps(out: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (out / "shards").glob("*.csv")}


def check_complete(out: Path, config: dict) -> pd.DataFrame:
    table = pd.read_csv(out / "results.csv")
    expected = len(config["activations"]) * len(config["depths"]) * len(config["widths"]) * config["seeds"]
    assert len(table) == expected
    assert not table.duplicated(KEY).any()
    return table


def test_ctrl_c_with_the_local_executor_exits_130_and_stops_its_tasks(tmp_path: Path) -> None:
    """The driver of --executor local interrupted: exit 130 with the resume hint and no traceback,
    its task processes stopped (no orphan keeps computing), finished shards kept."""
    config = write(
        tmp_path / "sweep.yaml", {**SWEEP, "launcher": {"cells_per_task": 8, "local_parallelism": 2}}
    )
    out = tmp_path / "out"
    claim = hold_last_cell(out, SWEEP, f"{socket.gethostname()}:{os.getpid()}")  # the run cannot finish
    proc = start("run", config, "--out", out, "--executor", "local", "--no-progress", cwd=tmp_path)
    wait_for_shards(out, 2, proc)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=90)
    assert proc.returncode == 130, stderr
    assert "resume" in stderr and "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    time.sleep(1.5)
    settled = shard_stamps(out)
    time.sleep(2)
    assert shard_stamps(out) == settled  # nothing left computing
    assert [p.name for p in (out / "claims").iterdir()] == [claim.name]  # only the peer's claim
    assert len(pd.read_csv(out / "results.csv")) >= 2


def hold_last_cell(out: Path, config: dict, owner: str) -> Path:
    """Claim the sweep's last cell for `owner` ("host:pid"), as a peer computing it would."""
    last = expand(validate(config))[-1]
    claim = out / "claims" / f"{last.cell_id}.claim"
    claim.parent.mkdir(parents=True, exist_ok=True)
    claim.write_text(owner)
    return claim


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
def test_interrupted_sweep_resumes_without_recomputing(tmp_path: Path, sig: int, dead_pid: int) -> None:
    config = write(tmp_path / "sweep.yaml", SWEEP)
    out = tmp_path / "out"
    # A live peer (this test's process) holds the last cell, so the run cannot finish before the
    # signal arrives however slowly this test is scheduled: it computes the rest, then waits.
    claim = hold_last_cell(out, SWEEP, f"{socket.gethostname()}:{os.getpid()}")
    proc = start("run", config, "--out", out, "--no-progress", cwd=tmp_path)
    wait_for_shards(out, 3, proc)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    if sig == signal.SIGINT:
        assert proc.returncode == 130, stderr
        assert "resume" in stderr and "Traceback" not in stderr
        assert len(pd.read_csv(out / "results.csv")) >= 3  # finished cells are in the table at once
    else:
        assert proc.returncode == -signal.SIGKILL
    before = shard_stamps(out)
    assert 3 <= len(before) < 48
    claim.write_text(f"{socket.gethostname()}:{dead_pid}")  # the peer died: its claim is stale

    rerun = ntksim("run", config, "--out", out, "--no-progress", cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(before)} done" in rerun.stdout  # the resumed run saw what was finished
    after = shard_stamps(out)
    assert all(after[name] == stamp for name, stamp in before.items())  # not recomputed
    assert len(after) == 48
    check_complete(out, SWEEP)
    assert not list((out / "claims").iterdir())  # the killed run's stale claim was taken over


def test_executors_local_and_debug_match_inline(tmp_path: Path) -> None:
    small = {**SWEEP, "widths": [8, 16], "seeds": 3, "seeds_per_cell": 2}
    config = write(tmp_path / "sweep.yaml", small)
    tables = {}
    for executor in ("inline", "local", "debug"):
        proc = ntksim("run", config, "--out", tmp_path / executor, "--executor", executor, "--no-progress",
                      cwd=tmp_path)  # fmt: skip
        assert proc.returncode == 0, (executor, proc.stderr[-3000:])
        tables[executor] = check_complete(tmp_path / executor, small).sort_values(KEY).reset_index(drop=True)
    assert list((tmp_path / "local" / "logs").iterdir())  # submitit wrote its logs under the run
    for executor in ("local", "debug"):
        for column in ("err_op", "err_fro", "err_max", "rel_op", "kinf_op"):
            pd.testing.assert_series_equal(tables[executor][column], tables["inline"][column], rtol=1e-6)


def test_two_concurrent_runs_give_one_row_per_cell_and_seed(tmp_path: Path) -> None:
    config = write(tmp_path / "sweep.yaml", SWEEP)
    out = tmp_path / "out"
    procs = [start("run", config, "--out", out, "--no-progress", cwd=tmp_path) for _ in range(2)]
    for proc in procs:
        _, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr[-3000:]
    check_complete(out, SWEEP)
    assert len(shard_stamps(out)) == 48


def test_failing_cell_is_recorded_and_the_rest_complete(tmp_path: Path) -> None:
    """σ_w = 40 far off the EOC: variance grows ×800 per layer, so depth 25 overflows float32."""
    bad = {**SWEEP, "activations": ["relu"], "depths": [2, 25], "widths": [8, 16], "seeds": 2,
           "schedule": "constant", "sigma_w": 40.0}  # fmt: skip
    config = write(tmp_path / "bad.yaml", bad)
    out = tmp_path / "out"
    proc = ntksim("run", config, "--out", out, "--no-progress", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "4 failed" in proc.stdout and "non-finite" in proc.stdout and "l=25" in proc.stdout
    table = pd.read_csv(out / "results.csv")
    assert len(table) == 4 and set(table["depth"]) == {2}
    status = ntksim("status", out, cwd=tmp_path)
    assert status.returncode == 1 and "4 cells done, 4 failed, 0 pending" in status.stdout


def test_changed_config_is_refused_unless_forced(tmp_path: Path) -> None:
    small = {**SWEEP, "widths": [8], "seeds": 2}
    config = write(tmp_path / "sweep.yaml", small)
    out = tmp_path / "out"
    assert ntksim("run", config, "--out", out, "--no-progress", cwd=tmp_path).returncode == 0
    before = (out / "results.csv").read_text()
    refused = ntksim("run", config, "--out", out, "--set", "data.n=9", cwd=tmp_path)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "data.n" in refused.stderr and "--force" in refused.stderr
    assert (out / "results.csv").read_text() == before
    # renaming or moving the run to another launcher is not a change of its numbers
    same = ntksim("run", config, "--out", out, "--set", "name=renamed", "--no-progress", cwd=tmp_path)
    assert same.returncode == 0 and "4 done" in same.stdout
    forced = ntksim("run", config, "--out", out, "--set", "widths=[8,16]", "--force", "--no-progress",
                    cwd=tmp_path)  # fmt: skip
    assert forced.returncode == 0 and "4 done" in forced.stdout  # width 8 cells reused
    assert len(pd.read_csv(out / "results.csv")) == 8


FAKE_SBATCH = """#!/bin/sh
# Records what ntksim/submitit submits, like a SLURM controller that accepts everything.
cp "$1" "{record}/script.sh"
echo "$@" > "{record}/args"
echo "Submitted batch job 4242"
"""


def test_slurm_submission_with_fake_sbatch(tmp_path: Path) -> None:
    bin_dir, record = tmp_path / "bin", tmp_path / "record"
    bin_dir.mkdir()
    record.mkdir()
    sbatch = bin_dir / "sbatch"
    sbatch.write_text(FAKE_SBATCH.format(record=record))
    sbatch.chmod(0o755)
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")  # submitit only checks that it exists
    (bin_dir / "srun").chmod(0o755)
    launcher = {"partition": "gpu", "account": "theory", "qos": "high", "time_min": 90, "gpus_per_node": 1,
                "cpus_per_task": 4, "mem_gb": 16, "constraint": "h100", "setup": ["module load cuda/12.4"],
                "cells_per_task": 5, "array_parallelism": 3,
                "sbatch": {"gres": "gpu:a100:1", "exclusive": True, "mail_type": "END"}}  # fmt: skip
    config = write(tmp_path / "cluster.yaml", {**SWEEP, "launcher": launcher})  # 48 cells → 10 tasks
    out = tmp_path / "out"
    env = _env() | {"PATH": f"{bin_dir}:{_env()['PATH']}"}

    dry = ntksim("run", config, "--out", out, "--executor", "slurm", "--dry-run", cwd=tmp_path, env=env)
    assert dry.returncode == 0, dry.stderr
    assert "would submit 10 task(s)" in dry.stdout and "#SBATCH --array=0-9%3" in dry.stdout
    assert not out.exists() and not (record / "script.sh").exists()

    proc = ntksim("run", config, "--out", out, "--executor", "slurm", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "job 4242" in proc.stdout and f"ntksim status {out}" in proc.stdout
    script = (record / "script.sh").read_text()
    for line in ("#SBATCH --array=0-9%3", "#SBATCH --partition=gpu", "#SBATCH --account=theory",
                 "#SBATCH --qos=high", "#SBATCH --time=90", "#SBATCH --gpus-per-node=1",
                 "#SBATCH --cpus-per-task=4", "#SBATCH --mem=16GB", "#SBATCH --constraint=h100",
                 "module load cuda/12.4", "submitit.core._submit", "#SBATCH --gres=gpu:a100:1",
                 "#SBATCH --exclusive\n", "#SBATCH --mail-type=END", "#SBATCH --signal=USR2@90"):  # fmt: skip
        assert line in script, line
    assert str(out / "logs") in script
    status = ntksim("status", out, cwd=tmp_path)
    assert status.returncode == 0 and "0 cells done, 0 failed, 48 pending" in status.stdout
    assert "warning: could not ask squeue" in status.stderr  # no squeue on PATH yet

    # The scheduler still holds tasks 0–4 (5 cells each): a re-run leaves them alone, status says so.
    (bin_dir / "squeue").write_text('#!/bin/sh\nfor t in 0 1 2 3 4; do echo "4242_$t RUNNING"; done\n')
    (bin_dir / "squeue").chmod(0o755)
    status = ntksim("status", out, cwd=tmp_path, env=env)
    assert (
        "25 of the pending cells are in flight (queued or running in SLURM job 4242); 23 are" in status.stdout
    )
    # the 23 others' tasks ended (cancelled, crashed): status names them and their logs
    for task in (5, 9):  # a traceback in one task's log, nothing in another's
        (out / "logs" / f"4242_{task}").mkdir(parents=True, exist_ok=True)
    (out / "logs" / "4242_5" / "4242_5_0_log.err").write_text(
        "Traceback (most recent call last):\n  File 'x'\nMemoryError: out of memory\nsrun: error: task 0\n"
    )
    status = ntksim("status", out, cwd=tmp_path, env=env)
    held = {entry["job"]: len(entry["cells"]) for entry in json.loads((out / "submitted.json").read_text())}
    for task in (5, 6, 7, 8, 9):
        assert f"task 4242_{task} ended with {held[f'4242_{task}']} cells not done" in status.stdout, (
            status.stdout
        )
    assert (
        f"task 4242_5 ended with {held['4242_5']} cells not done: MemoryError: out of memory (log: "
        in status.stdout
    )
    again = ntksim("run", config, "--out", out, "--executor", "slurm", "--dry-run", cwd=tmp_path, env=env)
    assert again.returncode == 0 and "25 in flight on SLURM, 23 to run" in again.stdout, again.stdout
    assert "would submit 5 task(s)" in again.stdout
    # every pending cell in flight: a real re-run submits nothing and exits 0 (nothing is lost)
    (bin_dir / "squeue").write_text('#!/bin/sh\nfor t in $(seq 0 9); do echo "4242_$t PENDING"; done\n')
    submissions = (out / "submitted.json").read_text()
    held = ntksim("run", config, "--out", out, "--executor", "slurm", cwd=tmp_path, env=env)
    assert held.returncode == 0 and "48 in flight on SLURM, 0 to run" in held.stdout, held.stdout
    assert "still pending" not in held.stdout and (out / "submitted.json").read_text() == submissions
    (bin_dir / "squeue").write_text(
        "#!/bin/sh\necho 'slurm_load_jobs error: Invalid job id specified' >&2\nexit 1\n"
    )
    gone = ntksim("run", config, "--out", out, "--executor", "slurm", "--dry-run", cwd=tmp_path, env=env)
    assert "48 to run" in gone.stdout and "in flight" not in gone.stdout  # the jobs have left the queue


@pytest.mark.parametrize(("time_min", "delay"), [(1, 15), (4, 60), (6, 90), (600, 90)])
def test_time_limit_warning_leaves_a_short_task_time_to_work(time_min: int, delay: int) -> None:
    """SIGUSR2 comes `delay` s before the limit: submitit's 90 s, at most a quarter of the limit
    (SLURM sends it at the first 30 s check with less than delay + 30 s left)."""
    from ntksim.engine.launch import signal_delay_s, slurm_parameters

    assert signal_delay_s(time_min) == delay
    launcher = validate({**SWEEP, "launcher": {"time_min": time_min}}).launcher
    assert slurm_parameters(launcher, "x")["signal_delay_s"] == delay


def test_rejected_submission_is_one_line_and_leaves_nothing_behind(tmp_path: Path) -> None:
    """sbatch refusing (a bad partition): one stderr line quoting it, exit 2; a directory this
    command created is gone, and an existing run keeps its files but gets no stray pickles."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(
        '#!/bin/sh\necho "sbatch: error: invalid partition specified: nope" >&2\nexit 1\n'
    )
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    for tool in ("sbatch", "srun"):
        (bin_dir / tool).chmod(0o755)
    config = write(tmp_path / "c.yaml", SWEEP)
    env = _env() | {"PATH": f"{bin_dir}:{_env()['PATH']}"}
    out = tmp_path / "new"
    proc = ntksim("run", config, "--out", out, "--executor", "slurm", cwd=tmp_path, env=env)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "submission failed: sbatch: error: invalid partition specified: nope" in proc.stderr
    assert not out.exists()
    existing = tmp_path / "old"
    first = ntksim("run", config, "--out", existing, "--set", "widths=[8]", "--no-progress", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    run_json = (existing / "run.json").read_text()
    args = ("--executor", "slurm", "--set", "widths=[8, 16]", "--force")
    again = ntksim("run", config, "--out", existing, *args, cwd=tmp_path, env=env)
    assert again.returncode == 2 and again.stderr.count("\n") == 1, again.stderr
    assert (existing / "run.json").read_text() == run_json and (existing / "config.yaml").exists()
    leftovers = [p.name for p in (existing / "logs").rglob("*")] if (existing / "logs").exists() else []
    assert not [n for n in leftovers if n.endswith((".pkl", ".sh"))], leftovers


@pytest.mark.parametrize(
    ("sbatch", "words"),
    [
        ({"partition": "x"}, "'partition' has its own launcher key"),
        ({"Gres": "x"}, "not an sbatch option name"),
    ],
)
def test_sbatch_pass_through_refuses_named_and_malformed_options(sbatch: dict, words: str) -> None:
    from ntksim.engine.config import ConfigError
    from ntksim.engine.loading import validate

    with pytest.raises(ConfigError, match=words):
        validate({"activations": ["relu"], "launcher": {"sbatch": sbatch}})


def test_expired_claim_of_a_dead_host_is_taken_over(tmp_path: Path) -> None:
    """A task killed on another node leaves its claim; once the lease has passed, a re-run
    computes the cell instead of leaving it pending forever."""
    from ntksim.engine.loading import validate
    from ntksim.engine.store import CLAIM_LEASE_S, RunStore
    from ntksim.studies.concentration import expand

    small = {**SWEEP, "widths": [8], "seeds": 2}
    config = write(tmp_path / "sweep.yaml", small)
    out = tmp_path / "out"
    assert ntksim("run", config, "--out", out, "--no-progress", cwd=tmp_path).returncode == 0
    store = RunStore(out)
    cells = expand(validate(small))
    for cell, owner in zip(cells[:2], ["node17:4242", ""], strict=True):  # a dead node; a torn write
        store.shard_path(cell).unlink()  # as if their tasks died mid-cell
        path = store.claim_path(cell)
        path.write_text(owner)
        old = time.time() - CLAIM_LEASE_S - 5
        os.utime(path, (old, old))
    proc = ntksim("run", config, "--out", out, "--no-progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{len(cells)} cells done, 0 failed, 0 pending" in proc.stdout
    check_complete(out, small)


def test_ctrl_c_swallowed_by_a_gc_callback_still_stops_the_sweep() -> None:
    """Python raises KeyboardInterrupt wherever SIGINT finds it, e.g. in JAX's garbage-collector
    callback, which prints it as "ignored" (seen under load: the run went on). The sweep's
    handler records the request, so its next check between cells stops it anyway."""
    from ntksim.engine.sweep import Interrupts

    class RaisesInDel:
        def __del__(self) -> None:
            raise KeyboardInterrupt  # what SIGINT does when it arrives in a finalizer or gc callback

    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in an interactive shell
    with Interrupts().installed() as interrupts:
        try:
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt:
            pass  # swallowed, as a gc callback does
        with pytest.raises(KeyboardInterrupt):
            interrupts.check()
    with Interrupts().installed() as interrupts:
        RaisesInDel()  # Python cannot raise from __del__: it reports it as "unraisable"
        with pytest.raises(KeyboardInterrupt):
            interrupts.check()  # taken as the request, and nothing printed
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    signal.signal(signal.SIGINT, before)


STUCK_SWEEP = """
import signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)  # a foreground process (see FOREGROUND)
from pathlib import Path
import numpy as np
from ntksim.engine import sweep
from ntksim.engine.loading import validate
from ntksim.engine.store import RunStore
from ntksim.studies.concentration import COLUMNS, TABLE_COLUMNS, expand

sweep.STUCK_GRACE_S = 0.3
cells = expand(validate(yaml_config))[:3]
store = RunStore(Path(sys.argv[1]), TABLE_COLUMNS, [COLUMNS])
store.create()
a = np.random.default_rng(0).standard_normal((4000, 4000))
def compute(cell):
    if cell is cells[1]:
        print("inside", flush=True)
        for _ in range(20):  # LAPACK without the GIL: Python's handler cannot run until it returns
            np.linalg.eigh(a)
    return [dict.fromkeys(COLUMNS, 0.0) | {"seed": s, "activation": "relu"} for s in cell.seeds]
sweep.run_cells(cells, compute, store, progress=False)
"""


def test_ctrl_c_inside_native_code_ends_the_sweep_promptly(tmp_path: Path) -> None:
    """Issue 25, bug 4: Ctrl-C while XLA compiled a very deep network waited for the compilation
    (minutes, then an OOM kill). Native code that holds the main thread without the GIL (here
    LAPACK, ~20 eigendecompositions of 4000², tens of seconds) is left at once: exit 130 within
    seconds of the signal, the finished cell's shard kept, no claim left behind, and the next
    sweep computes exactly the two missing cells."""
    from ntksim.engine.store import RunStore
    from ntksim.studies.concentration import COLUMNS, TABLE_COLUMNS

    script = f"yaml_config = {SWEEP!r}\n" + STUCK_SWEEP
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path / "run")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "inside"
        time.sleep(2.0)  # well into the first eigh (≥ 5 s each here), even on a loaded machine
        child.send_signal(signal.SIGINT)
        sent = time.monotonic()
        _, err = child.communicate(timeout=120)
        waited = time.monotonic() - sent
    finally:  # never leave it running into the next test
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == 130, err
    assert "interrupted inside native code" in err  # the watchdog's exit, not the handler's
    assert waited < 10, waited
    store = RunStore(tmp_path / "run", TABLE_COLUMNS, [COLUMNS])
    cells = expand(validate(SWEEP))[:3]
    assert [store.is_done(c) for c in cells] == [True, False, False]
    assert not list((store.root / "claims").iterdir())
    computed = run_cells_quietly(cells, store)
    assert [c.cell_id for c in computed] == [c.cell_id for c in cells[1:]]


def run_cells_quietly(cells: list, store) -> list:
    from ntksim.engine.sweep import run_cells
    from ntksim.studies.concentration import COLUMNS

    def compute(cell: object) -> list[dict]:
        return [dict.fromkeys(COLUMNS, 0.0) | {"seed": s, "activation": "relu"} for s in cell.seeds]

    return run_cells(cells, compute, store, progress=False).computed


def test_a_scheduler_interruption_stops_the_sweep_and_fails_no_cell(tmp_path: Path) -> None:
    """submitit's "no requeue left" raised in the middle of a cell: the sweep stops, that cell is
    pending (no failure record, no claim), the cells finished before keep their shards."""
    from ntksim.engine.store import RunStore
    from ntksim.engine.sweep import run_cells
    from ntksim.studies.concentration import COLUMNS, TABLE_COLUMNS

    class TimeIsUp(RuntimeError):
        pass

    cells = expand(validate(SWEEP))[:3]
    store = RunStore(tmp_path / "run", TABLE_COLUMNS, [COLUMNS])
    store.create()

    def compute(cell: object) -> list[dict]:
        if cell is cells[1]:
            raise TimeIsUp("timed-out too many times")
        return [dict.fromkeys(COLUMNS, 0.0) | {"seed": s, "activation": "relu"} for s in cell.seeds]

    with pytest.raises(TimeIsUp):
        run_cells(cells, compute, store, progress=False, interruptions=(TimeIsUp,))
    assert [store.is_done(c) for c in cells] == [True, False, False]
    assert not list((store.root / "failed").iterdir()) and not list((store.root / "claims").iterdir())
    assert not run_cells(cells[2:], compute, store, progress=False).failed
    # not listed as an interruption, the same exception is that cell's recorded failure
    assert len(run_cells(cells[1:2], compute, store, progress=False).failed) == 1


def test_slurm_cells_too_large_for_the_task_are_failed_before_submission(tmp_path: Path) -> None:
    """With `mem_gb` below a cell's memory estimate, the cell is said, recorded as failed
    ("MemoryEstimate") and not submitted; the others are."""
    bin_dir, record = tmp_path / "bin", tmp_path / "record"
    bin_dir.mkdir()
    record.mkdir()
    (bin_dir / "sbatch").write_text(FAKE_SBATCH.format(record=record))
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    for tool in ("sbatch", "srun"):
        (bin_dir / tool).chmod(0o755)
    env = _env() | {"PATH": f"{bin_dir}:{_env()['PATH']}"}
    config = write(
        tmp_path / "c.yaml", {**SWEEP, "depths": [3], "widths": [8, 4096], "launcher": {"mem_gb": 0.05}}
    )
    proc = ntksim("run", config, "--out", "out", "--executor", "slurm", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    too_large = [line for line in proc.stderr.splitlines() if "too large" in line]
    assert len(too_large) == 8 and all("m=4096" in line for line in too_large), proc.stderr
    submitted = [c for e in json.loads((tmp_path / "out" / "submitted.json").read_text()) for c in e["cells"]]
    failed = {p.stem for p in (tmp_path / "out" / "failed").glob("*.json")}
    assert len(submitted) == 8 and len(failed) == 8 and failed.isdisjoint(submitted)
    assert all("MemoryEstimate" in p.read_text() for p in (tmp_path / "out" / "failed").glob("*.json"))


def test_a_progress_line_never_says_more_compiling_than_the_cell_took(capsys) -> None:
    """Issue 25, bug 11: "3.7 s (4.4 s compiling)" (compile events of state the next cells share)."""
    from ntksim.engine.sweep import ProgressLines

    lines = ProgressLines(2)
    lines.done("cell a", 3.7, compile_s=4.4)
    lines.done("cell b", 2.0, compile_s=0.5)
    err = capsys.readouterr().err.splitlines()
    assert "cell a: 3.7 s (3.7 s compiling)" in err[0] and "cell b: 2.0 s (0.5 s compiling)" in err[1]


def test_the_eta_follows_the_cost_model_not_the_first_cells(capsys) -> None:
    """Issue 25, bug 11: the ETA swung from 190 s to 2 976 s on a 1 078 s run (the first cells
    were the smallest). With the study's estimates, time left = spent × estimated seconds left /
    estimated seconds done: here two small cells (1 s each, estimated 1) and two large ones
    (estimated 10 each) → after the first, 1 s × 21/1 = 21 s; without estimates, 3 s."""
    from ntksim.engine.sweep import ProgressLines

    estimates = {"a": 1.0, "b": 1.0, "c": 10.0, "d": 10.0}
    lines = ProgressLines(4, estimates)
    lines.done("cell a", 1.0, cell_id="a")
    lines.skip("b")  # done before: neither spent nor left
    lines.done("cell c", 10.0, cell_id="c")
    plain = ProgressLines(4)
    plain.done("cell a", 1.0)
    err = capsys.readouterr().err.splitlines()
    assert err[0].endswith("ETA 21 s"), err
    assert err[1].endswith("ETA 10 s"), err  # 11 s spent × 10 left / 11 done
    assert err[2].endswith("ETA 3 s"), err


def test_ctrl_c_while_xla_compiles_a_deep_network_ends_the_run_at_once(tmp_path: Path) -> None:
    """Issue 25, bug 4: depth's finite part at 5 000 layers "ignores Ctrl-C ('interrupted'
    printed, process kept going)". Reproduced at 300 layers of width 4 (tracing ~5 s, then XLA
    compiles for ~1.5 min here): the run said "interrupted", then its exit waited for XLA's
    compilation thread (and crashed, SIGSEGV). Now it leaves within seconds, exit 130, the limit
    cell's shard kept, no claim left."""
    config = tmp_path / "deep.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "study": "depth",
                "activations": ["relu"],
                "max_depth": 10,
                "cosines": [0.5],
                "finite": {"depths": [300], "width": 4, "seeds": 1},
            }
        )
    )
    out = tmp_path / "out"
    proc = start("run", config, "--out", out, "--no-progress", cwd=tmp_path)
    wait_for_shards(out, 1, proc, limit=300)  # the limit cell; then the finite cell is traced and compiled
    time.sleep(12)
    proc.send_signal(signal.SIGINT)
    sent = time.monotonic()
    _, err = proc.communicate(timeout=300)
    waited = time.monotonic() - sent
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert waited < 10, f"{waited:.1f} s after Ctrl-C"
    assert len(list((out / "shards").iterdir())) == 1
    assert not list((out / "claims").iterdir())
