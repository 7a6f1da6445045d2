"""Every study but concentration runs from its shipped config through every executor (shrunk with --set),
and equal settings give equal numbers whichever executor computed them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import without_scheduler

pytestmark = pytest.mark.cli
REPO = Path(__file__).resolve().parents[2]

SMALL = {
    "depth": [
        "activations=[relu, tanh]",
        "sigma_b=[0.2]",
        "sigma_w_factors=[1.0, 0.8]",
        "max_depth=30",
        "finite.depths=[1, 3]",
        "finite.width=16",
        "finite.seeds=2",
    ],
    "positivity": [
        "activations=[abs, linear]",
        "depths=[2]",
        "sigma_b=[0.0]",
        "ns=[4, 8]",
        "antipodal=[false, true]",
        "finite.widths=[8, 32]",
        "finite.n=4",
        "finite.seeds=2",
    ],
    "spectrum": [
        "activations=[relu, elu, monomial(2)]",
        "depths=[2, 3]",
        "dims=[3]",
        "kmax=40",
        "fit.k_min=10",
    ],
    "sample_paths": [
        "activations=[relu, tanh]",
        "depths=[2]",
        "widths=[16, 32]",
        "seeds=4",
        "out_dim=2",
        "circle_points=64",
        "circle_kmax=8",
        "sphere_kmax=4",
        "increments.lags=[1, 2]",
        "paths=1",
    ],
    "fluctuations": [
        "nets=[relu, abs]",
        "depths=[2]",
        "widths=[8, 16]",
        "kernels=[ntk, nngp]",
        "seeds=40",
        "seeds_per_cell=20",
        "cosines=[0.5]",
        "norms=[1.0, 0.9]",
    ],
    "training": [
        "activations=[relu]",
        "widths=[8, 16]",
        "seeds=2",
        "chunk=1",
        "data.n_train=6",
        "data.n_test=3",
        "target.width=32",
        "steps=4",
        "observe=2",
        "optimizers=[{name: sgd, learning_rate: 0.5}, {name: adam, learning_rate: 0.01, relative: false}]",
    ],
}
KEYS = {
    "depth": ["part", "activation", "sigma_w_factor", "pair", "depth", "seed"],
    "positivity": ["part", "activation", "kernel", "antipodal", "n", "width", "seed"],
    "spectrum": ["activation", "kernel", "dim", "depth", "k"],
    "sample_paths": ["part", "activation", "depth", "dim", "width", "k", "order", "lag", "output", "angle"],
    "fluctuations": ["activation", "kernel", "depth", "width", "seed_start", "quantity", "i", "a", "j", "b"],
    "training": ["activation", "optimizer", "width", "seed", "step"],
}
STUDIES = list(SMALL)


def ntksim(*args: object, cwd: Path) -> subprocess.CompletedProcess:
    env = without_scheduler(dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1"))
    cmd = [sys.executable, "-m", "ntksim", *map(str, args)]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, timeout=600)


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


# key → (bad value, the key path the one-line message must start with)
BAD_VALUES = {
    "depth": {
        "activations": ("nope", "activations.0:"),
        "sigma_b": ("x", "sigma_b.0:"),  # a scalar is a one-element list
        "sigma_w_factors": ([0], "sigma_w_factors.0:"),
        "max_depth": (100_001, "max_depth:"),
        "cosines": ([-2], "cosines.0:"),
        "data": ({"kind": "cube"}, "data.kind:"),
        "finite": ({"depths": [2], "width": 0}, "finite.width:"),
        "finite.depths": ([-1], "finite.depths.0:"),
        "finite.schedule": ("cubic", "finite.schedule:"),
        "finite.seeds": (0, "finite.seeds:"),
        "finite.data": ({"n": 0}, "finite.data.n:"),
        "finite.ntk": ({"method": "x"}, "finite.ntk.method:"),
    },
    "positivity": {
        "activations": ([], "activations:"),
        "depths": ([101], "depths.0:"),
        "sigma_w": (-1.0, "sigma_w:"),
        "sigma_b": ([-1.0], "sigma_b.0:"),
        "ns": ([5000], "ns.0:"),
        "antipodal": (["maybe"], "antipodal.0:"),
        "kernels": (["x"], "kernels.0:"),
        "floor_factor": ("big", "floor_factor:"),
        "data": ({"dim": 0}, "data.dim:"),
        "finite": ({"widths": []}, "finite.widths:"),
        "finite.n": (0, "finite.n:"),
        "finite.seeds": (-2, "finite.seeds:"),
        "finite.method": ("x", "finite.method:"),
        "finite.dtype": ("float16", "finite.dtype:"),
    },
    "spectrum": {
        "activations": (["gelu"], "activations.0: gelu has no Edge-of-Chaos point"),
        "depths": ([0], "depths.0:"),
        "kernels": (["ntkk"], "kernels.0:"),
        "dims": ([1], "dims.0:"),
        "kmax": (-1, "kmax:"),
        "fit": ({"k_min": 0}, "fit.k_min:"),
        "fit.k_max": ({"k_max": 500}, "fit.k_max: must be at most kmax"),
        "sigma_w": ({"tanhh": 1.0}, "sigma_w: 'tanhh' is not an activation name"),
        "sigma_b": ([-0.1], "sigma_b.0:"),
        "nodes": (2, "nodes:"),
    },
    "sample_paths": {
        "activations": (["gelu"], "activations.0: gelu has no Edge-of-Chaos point"),
        "dims": ([4], "dims.0:"),
        "widths": ([0], "widths.0:"),
        "seeds": (1, "seeds:"),
        "circle_points": (8, "circle_points:"),
        "circle_kmax": (600, "circle_kmax: must be below"),
        "sphere_kmax": (-1, "sphere_kmax:"),
        "increments": ({"lags": [0, 1]}, "increments.lags.0:"),
        "paths": (20, "paths:"),
        "sigma_w": (0.0, "sigma_w:"),
    },
    "training": {
        "optimizers": ([{"name": "adamm"}], "optimizers.0.name: unknown optimizer 'adamm'"),
        "optimizers.params": ([{"name": "adam", "params": {"beta1": 0.9}}], "optimizers.0.params.beta1: not"),
        "optimizers.lr": ([{"name": "sgd", "learning_rate": 1.2}], "optimizers.0.learning_rate: 1.2 × 2/"),
        "steps": (0, "steps:"),
        "widths": ([0], "widths.0:"),
        "seeds": (0, "seeds:"),
        "data": ({"kind": "file"}, "data.path: required"),
        "target": ({"kind": "cosine"}, "target.kind:"),
        "schedule": ("cubic", "schedule:"),
        "dtype": ("float16", "dtype:"),
    },
}


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
