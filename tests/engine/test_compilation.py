"""Compile vs compute time per cell, and JAX's persistent compilation cache shared by processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import pandas as pd
import pytest
import yaml

from ntksim.engine.compilation import CompileClock, cache_size, describe_cache
from tests.conftest import without_scheduler
from tests.test_cli import TINY as CLI_TINY

TINY = {**CLI_TINY, "name": "cache test"}
NUMBERS = ["err_op", "err_fro", "err_max", "rel_op", "kinf_op"]


def test_compile_clock_counts_a_new_shape_and_not_a_compiled_one() -> None:
    """The first call of a new shape is compile time; a second call of the same shape compiles
    nothing, so its block reports (near) zero compile seconds and all its time as compute."""
    f = jax.jit(lambda x: jnp.sin(x) @ jnp.cos(x).T)
    x = jnp.ones((17, 23))
    with CompileClock.measure() as first:
        f(x).block_until_ready()
    with CompileClock.measure() as second:
        f(x).block_until_ready()
    assert first.compile_s > 0.0
    assert second.compile_s == 0.0 and second.compute_s >= 0.0


def test_compile_clock_blocks_nest() -> None:
    """An inner block's compile seconds count in the outer block too."""
    g = jax.jit(lambda x: jnp.tanh(x) * 3.0)
    with CompileClock.measure() as outer:
        with CompileClock.measure() as inner:
            g(jnp.ones((5, 7))).block_until_ready()
    assert inner.compile_s > 0.0 and outer.compile_s >= inner.compile_s


def test_cache_size_of_a_missing_directory_is_zero(tmp_path: Path) -> None:
    assert cache_size(tmp_path / "nowhere") == (0, 0)
    assert describe_cache(None) == "compilation cache: off"


def _ntksim(*args: str | Path, cwd: Path) -> subprocess.Popen[str]:
    env = without_scheduler(dict(os.environ, JAX_PLATFORMS="cpu", JAX_NUMPY_RANK_PROMOTION="raise"))
    return subprocess.Popen(
        [sys.executable, "-m", "ntksim", *map(str, args)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.cli
def test_two_processes_sharing_a_cache_directory_both_finish_with_the_same_numbers(tmp_path: Path) -> None:
    """Two runs started at once write one cache directory; both finish, their numbers are those of
    a run without any cache, and a third run loads every program from the cache instead of
    compiling it, with the same numbers again. `status` reports compile/compute totals and the size."""
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    cache = tmp_path / "shared-cache"
    procs = [
        _ntksim("run", config, "--out", name, "--no-progress", "--compile-cache", cache, cwd=tmp_path)
        for name in ("a", "b")
    ]
    plain = _ntksim("run", config, "--out", "plain", "--no-progress", "--no-compile-cache", cwd=tmp_path)
    for proc in [*procs, plain]:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        assert "Error reading persistent compilation cache" not in err
    entries, size = cache_size(cache)
    assert entries > 0 and size > 0
    assert not (tmp_path / "plain" / "jax-cache").exists()

    third = _ntksim("run", config, "--out", "c", "--no-progress", "--compile-cache", cache, cwd=tmp_path)
    out, err = third.communicate(timeout=600)
    assert third.returncode == 0, err
    expected = pd.read_csv(tmp_path / "plain" / "results.csv")[NUMBERS]
    for name in ("a", "b", "c"):
        got = pd.read_csv(tmp_path / name / "results.csv")[NUMBERS]
        pd.testing.assert_frame_equal(got, expected, check_exact=True)
    timings = pd.concat(
        pd.read_json(p, typ="series").to_frame().T for p in (tmp_path / "c" / "timings").iterdir()
    )
    assert len(timings) == 4
    assert timings["cache_hits"].sum() > 0 and timings["cache_misses"].sum() == 0
    assert "programs loaded from the cache" in out and str(cache) in out

    status = subprocess.run(
        [sys.executable, "-m", "ntksim", "status", "c"], cwd=tmp_path, capture_output=True, text=True,
        env=without_scheduler(dict(os.environ, JAX_PLATFORMS="cpu")),
    )  # fmt: skip
    assert status.returncode == 0, status.stderr
    assert "s compiling" in status.stdout and "MiB" in status.stdout
    assert "Time: 4 cells" in (tmp_path / "c" / "summary.md").read_text()
