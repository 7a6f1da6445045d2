"""The SLURM executor on a real one-node SLURM cluster (`make test-slurm`).

scripts/one_node_slurm.py starts munged, slurmctld and slurmd from its own key and slurm.conf in a
temporary directory (SLURM_CONF), once for the session; the tests submit through the real `ntksim`
command and watch the real scheduler. They need root and Debian's SLURM packages, and are skipped
with that reason elsewhere. The faked-sbatch tests in tests/engine keep what one node cannot show
(GPU options, accounts, QoS).

Cells are the toy study's (a sleep and a few numbers: tests/engine/toy_study.py), except in the
first test, which runs the concentration study and compares it with an inline run.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import yaml

from ntksim.engine.inflight import ALIVE

REPO = Path(__file__).resolve().parents[2]
TOY = "tests.engine.toy_study"

pytestmark = [pytest.mark.slurm, pytest.mark.cli]


def _one_node_slurm():
    spec = importlib.util.spec_from_file_location("one_node_slurm", REPO / "scripts" / "one_node_slurm.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Cluster:
    directory: Path
    env: dict[str, str]

    def run(self, *command: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=60)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(command)}: {proc.stderr or proc.stdout}")
        return proc

    def states(self, job: str) -> dict[str, str]:
        """Every live task of the job: "<job>_<task>" (or "<job>") → state. All states are asked
        for by name: squeue's default list can miss a task for a moment while it is requeued."""
        proc = self.run("squeue", "-h", "-r", "-t", "all", "-o", "%i %T", "-j", job, check=False)
        pairs = (line.split()[:2] for line in proc.stdout.splitlines() if len(line.split()) >= 2)
        return {task: state for task, state in pairs if state in ALIVE}

    def release_requeued(self, job: str) -> None:
        """A requeued task waits ~2 min (SLURM's begin-time delay) before it may start again; a
        test makes it eligible 5 s from now instead. Not at once: a task started within a moment
        of its requeue was killed ("Job credential revoked") and ended for good."""
        proc = self.run("squeue", "-h", "-r", "-t", "PD", "-o", "%i %r %S", "-j", job, check=False)
        now = datetime.datetime.now()
        for line in proc.stdout.splitlines():
            task, reason, begin = [*line.split(), "", "", ""][:3]
            with contextlib.suppress(ValueError):
                if reason == "BeginTime" and datetime.datetime.fromisoformat(
                    begin
                ) > now + datetime.timedelta(seconds=10):
                    self.run("scontrol", "update", f"jobid={task}", "StartTime=now+5", check=False)


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    slurm = _one_node_slurm()
    reason = slurm.why_unavailable()
    if reason and os.environ.get("NTKSIM_REQUIRE_SLURM"):  # make test-slurm installed it: must work
        pytest.fail(reason)
    if reason:
        pytest.skip(reason)
    directory = Path(tempfile.mkdtemp(prefix="ntksim-slurm-", dir="/tmp"))
    directory.chmod(0o755)  # munged's socket directory must be world-traversable
    try:
        conf = slurm.start(directory, cpus=4)  # stops what it started if it fails
        env = dict(
            slurm.environment(directory),
            SLURM_CONF=str(conf),
            JAX_PLATFORMS="cpu",
            PYTHONUNBUFFERED="1",
            PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
        )
        yield Cluster(directory, env)
    finally:
        slurm.stop(directory)
        if not request.session.testsfailed:  # the daemons' logs stay for a failure to be read
            shutil.rmtree(directory, ignore_errors=True)


def ntksim(cluster: Cluster, *args: object, cwd: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "ntksim", *map(str, args)]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=cluster.env, timeout=300)


def write(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def toy(path: Path, values: list[int], **keys: object) -> Path:
    launcher = {"cpus_per_task": 1, "time_min": 10, **keys.pop("launcher", {})}
    return write(path, {"name": "toy on slurm", "study": TOY, "values": values, "launcher": launcher, **keys})


def submitted_jobs(out: Path) -> list[str]:
    """submitit job ids of every submission of this run directory, in order."""
    return [entry["job"] for entry in json.loads((out / "submitted.json").read_text())]


def array_of(out: Path) -> str:
    """The SLURM job id of the run's latest submission (the array's, for several tasks)."""
    return submitted_jobs(out)[-1].split("_")[0]


def attempts_of(out: Path, job: str) -> list[dict]:
    """The task's attempts as recorded in tasks/<job>.json ([] when there is no record: a task
    killed before it wrote one), for assertions and their messages."""
    path = out / "tasks" / f"{job}.json"
    return json.loads(path.read_text()) if path.exists() else []


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str, poll_s: float = 0.3) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(poll_s)


def wait_for_job(cluster: Cluster, job: str, timeout_s: float = 180) -> None:
    wait_until(lambda: not cluster.states(job), timeout_s, f"SLURM job {job} to leave the queue")


def shards(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "shards").glob("*.csv"))}


def computations(log: Path) -> list[int]:
    return [int(v) for v in log.read_text().split()] if log.exists() else []


def test_sweep_completes_and_status_matches_an_inline_run(cluster: Cluster, tmp_path: Path) -> None:
    """The concentration study as a 3-task array: `status` reports the cells pending and in
    flight while it runs, and at the end the same rows, number for number, as an inline run."""
    config = write(
        tmp_path / "c.yaml",
        {
            "name": "concentration on slurm",
            "activations": ["relu", "abs"],
            "depths": [2],
            "widths": [8, 16, 32],
            "seeds": 2,
            "data": {"n": 8, "dim": 4},
            "limit": {"backend": "closed_form"},
            # held at submission: status is asked while every task is surely still queued
            "launcher": {"cells_per_task": 2, "cpus_per_task": 1, "time_min": 10, "sbatch": {"hold": True}},
        },
    )
    proc = ntksim(cluster, "run", config, "--out", "slurm", "--executor", "slurm", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "submitted 3 task(s) as SLURM job" in proc.stdout
    job = array_of(tmp_path / "slurm")
    during = ntksim(cluster, "status", "slurm", cwd=tmp_path)
    assert during.returncode == 0, during.stderr
    assert "0 cells done, 0 failed, 6 pending" in during.stdout
    assert (
        f"6 of the pending cells are in flight (queued or running in SLURM job {job}); 0 are" in during.stdout
    )
    cluster.run("scontrol", "release", job)
    wait_for_job(cluster, job)
    after = ntksim(cluster, "status", "slurm", cwd=tmp_path)
    assert after.returncode == 0, after.stdout
    assert "6 cells done, 0 failed, 0 pending; results.csv has 12 rows" in after.stdout

    inline = ntksim(cluster, "run", config, "--out", "inline", cwd=tmp_path)
    assert inline.returncode == 0, inline.stderr
    key = ["activation", "depth", "width", "out_dim", "seed"]
    ours = pd.read_csv(tmp_path / "slurm" / "results.csv").sort_values(key).reset_index(drop=True)
    theirs = pd.read_csv(tmp_path / "inline" / "results.csv").sort_values(key).reset_index(drop=True)
    timing = [c for c in ours.columns if c == "seconds" or c.endswith("_s")]  # wall clock differs
    pd.testing.assert_frame_equal(ours.drop(columns=timing), theirs.drop(columns=timing), check_exact=True)
    # each task logs under logs/<job>_<task>/ and records its attempt in tasks/
    for task in range(3):
        err = (tmp_path / "slurm" / "logs" / f"{job}_{task}").glob("*_log.err")
        assert "ntksim: [2/2]" in "".join(p.read_text() for p in err)
    attempts = [json.loads(p.read_text()) for p in (tmp_path / "slurm" / "tasks").glob("*.json")]
    assert sorted(a[-1]["array_task_id"] for a in attempts) == ["0", "1", "2"]
    assert all(a[-1]["computed"] == 2 and a[-1]["host"] for a in attempts)


def test_array_parallelism_is_respected(cluster: Cluster, tmp_path: Path) -> None:
    """6 one-cell tasks with array_parallelism 2 on a node with 4 free CPUs: squeue never shows
    more than 2 running, and shows 2 at some point."""
    config = toy(tmp_path / "t.yaml", [1, 2, 3, 4, 5, 6], sleep_s=3, launcher={"array_parallelism": 2})
    proc = ntksim(cluster, "run", config, "--out", "out", "--executor", "slurm", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    job = array_of(tmp_path / "out")
    most = 0
    deadline = time.monotonic() + 180
    while states := cluster.states(job):
        most = max(most, sum(state == "RUNNING" for state in states.values()))
        assert time.monotonic() < deadline, "the array did not finish in 180 s"
        time.sleep(0.2)
    assert most == 2
    assert len(shards(tmp_path / "out")) == 6


def test_requeued_task_resumes_from_its_shards(cluster: Cluster, tmp_path: Path) -> None:
    """`scontrol requeue` of a running task (what pre-emption does): the task starts again and
    skips the cells it had finished — their shards byte-identical, no row twice, only the cell it
    was in the middle of computed again."""
    log = tmp_path / "computed.log"
    values = [1, 2, 3, 4, 5, 6]
    config = toy(tmp_path / "t.yaml", values, sleep_s=2, log=str(log), launcher={"cells_per_task": 6})
    assert ntksim(cluster, "run", config, "--out", "out", "--executor", "slurm", cwd=tmp_path).returncode == 0
    out = tmp_path / "out"
    job = array_of(out)
    wait_until(lambda: len(shards(out)) >= 2, 120, "two finished cells")
    before = shards(out)
    cluster.run("scontrol", "requeue", job)
    wait_until(lambda: cluster.states(job).get(job) == "PENDING", 60, "the requeued task to be pending")
    cluster.release_requeued(job)
    wait_for_job(cluster, job)
    after = shards(out)
    assert len(after) == 6
    assert {name: after[name] for name in before} == before
    status = ntksim(cluster, "status", "out", cwd=tmp_path)
    assert "6 cells done, 0 failed, 0 pending; results.csv has 12 rows" in status.stdout
    table = pd.read_csv(out / "results.csv")
    assert not table.duplicated(["value", "repeat"]).any()
    counts = pd.Series(computations(log)).value_counts()
    assert counts.max() <= 2 and (counts == 2).sum() <= 1  # at most the interrupted cell, once more
    assert all(counts[value] == 1 for value in range(1, len(before) + 1))  # finished before: never again
    attempts = attempts_of(out, job)
    assert attempts[0].get("interrupted", "").startswith("Terminated: SIGTERM from the scheduler")
    assert attempts[-1]["computed"] + attempts[-1]["skipped"] == 6


def test_time_limit_requeues_and_completes_or_leaves_cells_pending(cluster: Cluster, tmp_path: Path) -> None:
    """60 cells of 2 s in a 2-minute task. SLURM warns it (SIGUSR2, 30 s before the limit) at its
    first look (every 30 s) with less than a minute left: 60–90 s after the start. With
    max_requeue 10 the task is requeued by submitit, resumes from its shards and completes; with
    max_requeue 0 it stops at the warning, and the cells left are reported pending: none failed,
    none half-written. (A 1-minute limit was warned 15–45 s in: on a loaded 2-core CI machine the
    warning once missed the task and SLURM's SIGTERM at the limit came first.)"""
    values = list(range(1, 61))
    runs = {}
    for requeues in (10, 0):
        config = toy(tmp_path / f"t{requeues}.yaml", values, sleep_s=2,
                     launcher={"cells_per_task": 60, "time_min": 2, "max_requeue": requeues})  # fmt: skip
        out = f"out{requeues}"
        proc = ntksim(cluster, "run", config, "--out", out, "--executor", "slurm", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        runs[requeues] = (tmp_path / out, array_of(tmp_path / out))

    def settled() -> bool:
        for _, job in runs.values():
            cluster.release_requeued(job)  # requeued after its warning: may start again now
        return all(not cluster.states(job) for _, job in runs.values())

    wait_until(settled, 600, "both time-limited jobs to end", poll_s=1)
    full, job = runs[10]
    status = ntksim(cluster, "status", full.name, cwd=tmp_path)
    attempts = attempts_of(full, job)
    assert "60 cells done, 0 failed, 0 pending" in status.stdout, (status.stdout, attempts)
    assert len(attempts) >= 2 and attempts[0].get("interrupted", "").startswith("requeued by submitit"), (
        attempts
    )
    assert "interrupted" not in attempts[-1]
    stopped, job = runs[0]
    status = ntksim(cluster, "status", stopped.name, cwd=tmp_path)
    assert status.returncode == 0, status.stdout
    done = len(shards(stopped))
    attempts = attempts_of(stopped, job)
    assert done < 60 and f"{done} cells done, 0 failed, {60 - done} pending" in status.stdout, status.stdout
    assert (
        f"task {job} ended with {60 - done} cells not done" in status.stdout
        and "timed-out too many" in status.stdout
    ), (status.stdout, attempts)
    assert not list((stopped / "failed").glob("*")) and not list((stopped / "shards").glob("*.tmp*"))
    assert len(attempts) == 1 and attempts[0].get("interrupted", "").startswith("UncompletedJobError"), (
        attempts
    )


def test_scancel_of_a_task_then_run_again_submits_only_its_cells(cluster: Cluster, tmp_path: Path) -> None:
    """While the array runs, the same `ntksim run` submits nothing (its cells are done or in
    flight, asked of squeue); after `scancel` of one queued task, it submits exactly that task's
    cells while the others stay in flight; then everything completes."""
    config = toy(tmp_path / "t.yaml", [1, 2, 3, 4, 5, 6], sleep_s=3, launcher={"array_parallelism": 2})
    assert ntksim(cluster, "run", config, "--out", "out", "--executor", "slurm", cwd=tmp_path).returncode == 0
    out = tmp_path / "out"
    job = array_of(out)
    wait_until(lambda: len(shards(out)) >= 2, 120, "two finished cells")
    # the tasks not started yet stay queued while we look. scontrol may exit 1 for the tasks that
    # have started or finished already; what matters is that every pending one is held, task 5 too
    hold = cluster.run("scontrol", "hold", job, check=False)
    pending = cluster.run("squeue", "-h", "-r", "-t", "PD", "-o", "%i %r", "-j", job, check=False).stdout
    reasons = dict(line.split()[:2] for line in pending.splitlines() if len(line.split()) >= 2)
    held = all(reason.startswith("JobHeld") for reason in reasons.values())  # JobHeldAdmin as root
    assert f"{job}_5" in reasons and held, (hold.stderr, pending)
    while_running = ntksim(cluster, "run", config, "--out", "out", "--executor", "slurm", cwd=tmp_path)
    assert while_running.returncode == 0, while_running.stderr  # nothing to submit: all done or in flight
    assert re.search(r"\d+ in flight on SLURM, 0 to run", while_running.stdout), while_running.stdout
    assert array_of(out) == job  # no second submission
    cluster.run("scancel", f"{job}_5")  # the last task: queued (held) until now
    wait_until(lambda: f"{job}_5" not in cluster.states(job), 60, "the cancelled task to leave the queue")
    record = json.loads((out / "submitted.json").read_text())
    cancelled = next(entry["cells"] for entry in record if entry["job"] == f"{job}_5")
    status = ntksim(cluster, "status", "out", cwd=tmp_path)
    assert f"task {job}_5 ended with 1 cell not done" in status.stdout, status.stdout
    again = ntksim(cluster, "run", config, "--out", "out", "--executor", "slurm", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "in flight on SLURM, 1 to run" in again.stdout and "submitted 1 task(s)" in again.stdout, (
        again.stdout
    )
    second = array_of(out)
    assert second != job
    record = json.loads((out / "submitted.json").read_text())
    resubmitted = [
        cell for entry in record if entry["job"].split("_")[0] == second for cell in entry["cells"]
    ]
    assert resubmitted == cancelled
    cluster.run("scontrol", "release", job, check=False)  # fails for the tasks that have finished
    wait_for_job(cluster, job)
    wait_for_job(cluster, second)
    final = ntksim(cluster, "status", "out", cwd=tmp_path)
    assert "6 cells done, 0 failed, 0 pending; results.csv has 12 rows" in final.stdout


def test_failing_cell_is_recorded_and_the_other_tasks_finish(cluster: Cluster, tmp_path: Path) -> None:
    config = toy(tmp_path / "t.yaml", [1, 2, 3, 4], fail_on=3)
    assert ntksim(cluster, "run", config, "--out", "out", "--executor", "slurm", cwd=tmp_path).returncode == 0
    wait_for_job(cluster, array_of(tmp_path / "out"))
    status = ntksim(cluster, "status", "out", cwd=tmp_path)
    assert status.returncode == 1
    assert "3 cells done, 1 failed, 0 pending" in status.stdout
    assert "failed: toy v=3" in status.stdout and "ArithmeticError: toy failure at 3" in status.stdout
    assert len(list((tmp_path / "out" / "failed").glob("*.json"))) == 1


def test_a_task_that_crashes_leaves_its_traceback_in_its_log(cluster: Cluster, tmp_path: Path) -> None:
    """A worker whose environment lacks the study (setup breaks PYTHONPATH): the task's Python
    traceback is in logs/<job>_<task>/, and `status` points there for the cells it left."""
    broken = {"cells_per_task": 2, "setup": ["export PYTHONPATH=/nonexistent"]}
    config = toy(tmp_path / "t.yaml", [1, 2], launcher=broken)
    assert ntksim(cluster, "run", config, "--out", "out", "--executor", "slurm", cwd=tmp_path).returncode == 0
    out = tmp_path / "out"
    job = array_of(out)
    wait_for_job(cluster, job)
    err = "".join(p.read_text() for p in (out / "logs" / job).glob("*_log.err"))
    unknown = "ConfigError: study: unknown study 'tests.engine.toy_study'"
    assert "Traceback (most recent call last)" in err and unknown in err
    status = ntksim(cluster, "status", "out", cwd=tmp_path)
    assert "0 cells done, 0 failed, 2 pending" in status.stdout
    assert f"task {job} ended with 2 cells not done" in status.stdout
    assert unknown in status.stdout
    assert str(Path("out") / "logs" / job) in status.stdout
