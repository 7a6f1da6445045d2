"""Shared test setup.

The suite runs twice (see Makefile): with JAX's default float32 and with JAX_ENABLE_X64=1.
Numeric tests read `tol` to use tolerances that fit the active dtype.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator

import jax
import pytest

from ntksim.kernels.limits import neural_tangents_available

# The concentration study's first-order theory costs one ~5 s compilation per run; the many
# runs that test the engine's mechanics leave it out (its own tests switch it back on).
os.environ.setdefault("NTKSIM_THEORY", "0")

# Implicit rank promotion hides shape bugs; make it an error everywhere (as equinox does).
jax.config.update("jax_numpy_rank_promotion", "raise")

X64 = bool(jax.config.jax_enable_x64)
REFERENCE = neural_tangents_available()  # the reference profile (jax 0.5.3 + neural-tangents)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--one-case-each",
        action="store_true",
        help="run one case of each parametrized test (all of those marked reference): the "
        "reference profile's check that the code runs alike on its older JAX",
    )


def _one_case_each(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep the first case of each parametrized test function, and every case marked reference."""
    seen: set[str] = set()
    kept, dropped = [], []
    for item in items:
        function = item.nodeid.split("[", 1)[0]  # file::[Class::]function, without the case's id
        if "reference" in item.keywords or function not in seen:
            kept.append(item)
        else:
            dropped.append(item)
        seen.add(function)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.hookimpl(trylast=True)  # after `-m` deselected: the case kept is one that runs
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`--one-case-each` keeps one case of each parametrized test (`_one_case_each`).
    Tests marked `reference` compare against neural-tangents, which only the reference profile
    has; in the current profile they are skipped with that reason (and run by `make test-reference`).
    Tests marked `slurm` run on a real one-node cluster only when asked for (`-m slurm`: `make
    test-slurm`), as they start SLURM's daemons."""
    if config.getoption("one_case_each"):
        _one_case_each(config, items)
    if "slurm" not in (config.getoption("markexpr") or ""):
        real = pytest.mark.skip(reason="needs a real one-node SLURM: make test-slurm")
        for item in items:
            if "slurm" in item.keywords:
                item.add_marker(real)
    if REFERENCE:
        return
    skip = pytest.mark.skip(reason="needs the reference profile (neural-tangents): make test-reference")
    for item in items:
        if "reference" in item.keywords:
            item.add_marker(skip)


class Tolerance:
    """rtol/atol for comparisons between two computations of the same quantity."""

    def __init__(self, x64: bool) -> None:
        self.x64 = x64
        self.rtol = 1e-10 if x64 else 2e-4
        self.atol = 1e-12 if x64 else 1e-5


SCHEDULER_TOOLS = frozenset(  # slurm-client's programs (submitit's watcher calls sacct)
    "sacct sacctmgr salloc sattach sbatch sbcast scancel scontrol scrontab sdiag sinfo sprio squeue "
    "sreport srun sshare sstat strigger".split()
)


def without_scheduler(env: dict[str, str]) -> dict[str, str]:
    """env whose PATH reaches no SLURM command: a test never reaches a real scheduler (a login
    node, or `make test-slurm`'s cluster, would run the job) unless it put a fake one there.
    A PATH directory holding sbatch or srun is replaced by a copy of it made of links to all of
    its other programs (Debian's slurm-client lives in /usr/bin, beside python3 and sh)."""
    import os

    directories = env.get("PATH", "").split(os.pathsep)
    return {**env, "PATH": os.pathsep.join(_without_scheduler_dir(d) for d in directories)}


@functools.cache
def _without_scheduler_dir(directory: str) -> str:
    import os
    import tempfile
    from pathlib import Path

    path = Path(directory)
    if not any((path / t).exists() for t in ("sbatch", "srun")):
        return directory
    shadow = Path(tempfile.mkdtemp(prefix="ntksim-path-"))
    atexit.register(shutil.rmtree, shadow, ignore_errors=True)
    for entry in path.iterdir():
        if entry.name not in SCHEDULER_TOOLS:
            os.symlink(entry, shadow / entry.name)
    return str(shadow)


def assert_matches_neural_tangents(ours, nt, tol: Tolerance, out_dim: int = 1) -> None:
    """ntksim's limit kernel (n·m_l, n·m_l) against neural-tangents', scale-relative.

    In float32 the entries of an input with itself get 2·√(2·eps) instead: neural-tangents computes
    ρ there from float32 products, ρ = 1 − 1 ulp, and arcsin turns that into √(2·eps), which the
    recursion carries on (measured: 3.3e-4 and 3.9e-4 relative for abs at depth 3, σ_w = 1 and 1.7,
    where ntksim, with ρ = 1 exactly, matched float64 to 2e-8).
    `test_family_diagonal_is_exact_in_float32` holds ntksim's own diagonal to the tight tolerance."""
    import numpy as np

    ours, nt = np.asarray(ours, np.float64), np.asarray(nt, np.float64)
    scale = float(np.max(np.abs(nt)))
    index = np.arange(ours.shape[0]) // out_dim
    same = index[:, None] == index[None, :]
    np.testing.assert_allclose(ours[~same], nt[~same], rtol=0, atol=tol.rtol * scale)
    diagonal_tol = tol.rtol if tol.x64 else 2 * float(np.sqrt(2 * np.finfo(np.float32).eps))
    np.testing.assert_allclose(ours[same], nt[same], rtol=0, atol=diagonal_tol * scale)


@pytest.fixture
def dead_pid() -> int:
    """A pid of this host that no process has: a finished (and reaped) child's."""
    code = "import os; print(os.getpid())"
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(child.stdout)


@pytest.fixture
def tol() -> Tolerance:
    return Tolerance(X64)


@pytest.fixture
def x64() -> bool:
    return X64


@pytest.fixture(autouse=True)
def _compile_cache_per_test() -> Iterator[None]:
    """An inline `ntksim run` switches JAX's persistent cache (and ntksim's program store) on in
    its run directory for the rest of the process; the next test must neither compile into a
    directory pytest is about to delete nor have its programs come from there."""
    before = jax.config.jax_compilation_cache_dir
    yield
    if jax.config.jax_compilation_cache_dir != before:
        from ntksim.engine.compilation import disable_persistent_cache, enable_persistent_cache
        from ntksim.nets import program_store

        program_store.flush()

        disable_persistent_cache() if before is None else enable_persistent_cache(before)
