"""Every study runs from its shipped config through every executor (shrunk with --set), and equal
settings give equal numbers whichever executor computed them. What to run of each comes from the
study's own test module (tests/studies/test_<study>.py): adding a study touches nothing here."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest

from ntksim.engine.study import builtin_studies
from tests.conftest import without_scheduler

pytestmark = pytest.mark.cli
REPO = Path(__file__).resolve().parents[2]


def _study_tests(study: str) -> ModuleType:
    """tests/studies/test_<study>.py, which says how to run the study small (SMALL_RUN), how its
    rows are ordered (ROW_KEYS) and, optionally, bad values of its keys (BAD_VALUES)."""
    return importlib.import_module(f"tests.studies.test_{study}")


STUDIES = builtin_studies()
SMALL = {study: _study_tests(study).SMALL_RUN for study in STUDIES}
KEYS = {study: _study_tests(study).ROW_KEYS for study in STUDIES}
BAD_VALUES = {study: getattr(_study_tests(study), "BAD_VALUES", {}) for study in STUDIES}


def ntksim(*args: object, cwd: Path) -> subprocess.CompletedProcess:
    env = without_scheduler(dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1"))
    cmd = [sys.executable, "-m", "ntksim", *map(str, args)]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, timeout=600)


def test_every_study_says_how_to_run_it_small() -> None:
    for study in STUDIES:
        assert SMALL[study] and KEYS[study], study


@pytest.mark.parametrize("study", STUDIES)
def test_study_config_runs_alike_inline_and_in_a_local_task(study: str, tmp_path: Path) -> None:
    tables = {}
    overrides = [a for item in SMALL[study] for a in ("--set", item)]
    # inline and local (a pickled cell in a submitit subprocess: what a study can break); the debug
    # executor is the engine's, tested once with the toy study (tests/engine/test_study.py)
    for executor in ("inline", "local"):
        out = tmp_path / executor
        proc = ntksim(
            "run",
            REPO / "configs" / f"{study}.yaml",
            "--out",
            out,
            "--executor",
            executor,
            "--no-progress",
            *overrides,
            cwd=tmp_path,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert " 0 failed, 0 pending" in proc.stdout
        table = pd.read_csv(out / "results.csv")
        table = table.drop(columns=["seconds"], errors="ignore")  # wall time, not a result
        tables[executor] = table.sort_values(KEYS[study], ignore_index=True)
        assert (out / "summary.md").read_text().startswith(f"# {study}")
        assert list((out / "figures").glob("*.png"))
    pd.testing.assert_frame_equal(tables["inline"], tables["local"], rtol=1e-5)
    again = ntksim(
        "run",
        REPO / "configs" / f"{study}.yaml",
        "--out",
        tmp_path / "inline",
        "--no-progress",
        *overrides,
        cwd=tmp_path,
    )
    assert again.returncode == 0 and " 0 to run" in again.stdout  # resumed: nothing recomputed
    status = ntksim("status", tmp_path / "local", cwd=tmp_path)  # expands the config in a new process
    assert status.returncode == 0 and " 0 failed, 0 pending" in status.stdout, status.stdout
    plot = ntksim("plot", tmp_path / "inline", cwd=tmp_path)
    assert plot.returncode == 0 and "figures" in plot.stdout


def test_bad_study_key_from_the_command_line_exits_2_with_one_line(tmp_path: Path) -> None:
    proc = ntksim(
        "run", REPO / "configs" / "depth.yaml", "--set", "max_depth=0", "--out", tmp_path / "o", cwd=tmp_path
    )
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0
    assert "max_depth: Input should be greater than or equal to 2" in proc.stderr
    assert not (tmp_path / "o").exists()
    proc = ntksim("run", REPO / "configs" / "positivity.yaml", "--set", "widths=[8]", cwd=tmp_path)
    assert proc.returncode == 2 and "--set widths: no such config key" in proc.stderr


@pytest.mark.parametrize(("study", "key"), [(s, k) for s, keys in BAD_VALUES.items() for k in keys])
def test_every_new_key_rejects_bad_input_with_one_line_naming_it(study: str, key: str) -> None:
    from ntksim.engine.config import ConfigError
    from ntksim.engine.loading import validate

    value, expected = BAD_VALUES[study][key]
    raw = {"study": study, "activations": ["relu"]}
    if key.startswith("optimizers."):
        raw["optimizers"] = value
    elif key == "fit.k_max":
        raw["fit"] = value
    elif key.startswith("finite."):
        base = {"depths": [2]} if study == "depth" else {"widths": [8]}
        raw["finite"] = {**base, key.split(".", 1)[1]: value}
    else:
        raw[key] = value
    with pytest.raises(ConfigError) as err:
        validate(raw)
    message = str(err.value)
    assert "\n" not in message and message.startswith(expected), message


@pytest.mark.parametrize(("value", "words"), [("[unclosed", "not valid YAML"), (".depth", "not a name")])
def test_bad_study_name_from_the_command_line_is_one_line(tmp_path: Path, value: str, words: str) -> None:
    proc = ntksim("run", REPO / "configs" / "depth.yaml", "--set", f"study={value}", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and words in proc.stderr, proc.stderr


def test_a_worker_that_expands_other_cells_fails_loudly(tmp_path: Path) -> None:
    """A task whose cell ids its worker cannot find (another ntksim on the node) must not report
    success with nothing computed."""
    from ntksim.engine.launch import CellTask
    from ntksim.engine.loading import validate

    resolved = validate({"study": "depth", "activations": ["relu"], "max_depth": 3}).model_dump(mode="json")
    import jax

    x64 = jax.config.jax_enable_x64  # a worker turns x64 on for its process: restore it here
    try:
        with pytest.raises(RuntimeError, match="1 of this task's cells are not in the config"):
            CellTask()(str(tmp_path / "out"), resolved, ["0123456789abcdef"])
    finally:
        jax.config.update("jax_enable_x64", x64)


@pytest.mark.parametrize("study", STUDIES)
def test_study_renders_a_slurm_array_in_a_dry_run(
    study: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SLURM executor path is the engine's: a dry run lists the study's cells and the sbatch
    array (with a fake sbatch/srun on PATH, as a login node has; nothing is submitted)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sbatch", "srun"):
        (bin_dir / tool).write_text("#!/bin/sh\nexit 3\n")
        (bin_dir / tool).chmod(0o755)
    env = without_scheduler(dict(os.environ, JAX_PLATFORMS="cpu"))
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    cmd = [sys.executable, "-m", "ntksim", "run", str(REPO / "configs" / f"{study}.yaml"), "--out", "out",
           "--executor", "slurm", "--dry-run", "--set", "launcher.cells_per_task=5"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (
        f"{study}: " in proc.stdout and "would submit" in proc.stdout and "#SBATCH --array=0-" in proc.stdout
    )
    assert not (tmp_path / "out").exists()


# Issue 25, bugs 2 and 7: values validation let through, which then failed at plotting (a
# traceback after results.csv) or gave duplicate points; each now a one-line error naming the key.
LATE_FAILURES = [
    ("depth", {"sigma_w_factors": [float("inf")]}, "sigma_w_factors.0:"),
    ("spectrum", {"kmax": 0}, "kmax:"),
    ("sample_paths", {"circle_kmax": 0}, "circle_kmax:"),
    ("sample_paths", {"sphere_kmax": 0}, "sphere_kmax:"),
    ("positivity", {"data": {"dim": 1}}, "data.dim: must be at least 2"),
    ("depth", {"data": {"n": 8, "dim": 1}}, "data.dim: must be at least 2"),
]


@pytest.mark.parametrize(("study", "keys", "expected"), LATE_FAILURES)
def test_values_that_failed_late_are_refused_at_validation(study: str, keys: dict, expected: str) -> None:
    from ntksim.engine.config import ConfigError
    from ntksim.engine.loading import validate

    with pytest.raises(ConfigError) as err:
        validate({"study": study, "activations": ["relu"], **keys})
    assert "\n" not in str(err.value) and str(err.value).startswith(expected), str(err.value)
