"""Sweep engine: compute cells, write each as a shard the moment it finishes, assemble the table.

K∞ does not depend on m or on the seed, so each process computes it once per
(activation, depth, out_dim, …) and reuses it. A cell that raises, or whose numbers are not
finite, is recorded as failed with its reason, and the sweep goes on.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from ntksim.cells import Cell
from ntksim.config import Config, ConfigError
from ntksim.data import gaussian, load_points, sphere
from ntksim.empirical import empirical_ntk_seeds
from ntksim.limits import backend_version, limit_kernel
from ntksim.metrics import concentration
from ntksim.model import sample_widths
from ntksim.store import COLUMNS, RunStore

__all__ = ["COLUMNS", "CellFailure", "SweepReport", "compute_cell", "load_data", "run_cells"]


class CellFailure(RuntimeError):
    """A cell produced unusable numbers (NaN or Inf)."""


def load_data(config: Config) -> np.ndarray:
    """The inputs x, float64 (n, dim); ConfigError on a bad data file."""
    data = config.data
    if data.kind == "file":
        try:
            x = load_points(data.path, data.key)
        except ValueError as err:
            raise ConfigError(f"data.path: {err}") from None
        for name, want, got in (("n", data.n, x.shape[0]), ("dim", data.dim, x.shape[1])):
            if want is not None and want != got:
                raise ConfigError(f"data.{name}: is {want} but the file has {got}")
        return x
    key = jax.random.PRNGKey(data.seed)
    make = sphere if data.kind == "sphere" else gaussian
    return np.asarray(make(key, data.num_points, data.dimension), dtype=np.float64)


def compute_cell(cell: Cell, x: np.ndarray, kinf: jax.Array, chunk: int | None = None) -> list[dict]:
    """One results row per seed of the cell; CellFailure if any number is not finite."""
    net = cell.net()
    sigma_w, sigma_b = net.sigmas
    keys = jnp.stack([jax.random.PRNGKey(int(s)) for s in cell.seeds])
    start = time.perf_counter()
    how = cell.method if cell.kernel == "ntk" else "nngp"  # the NNGP is one Gram, whatever the method
    ks = empirical_ntk_seeds(net, keys, jnp.asarray(x), how, chunk)
    metrics = concentration(ks, kinf)
    seconds = (time.perf_counter() - start) / cell.seed_count
    bad = [name for name, values in metrics.items() if not np.all(np.isfinite(values))]
    if bad or not np.all(np.isfinite(np.asarray(kinf))):
        what = ", ".join(bad) if bad else "K∞"
        raise CellFailure(f"non-finite {what} (σ_w={sigma_w:g}, depth {cell.depth}: over- or underflow)")
    base = {
        "activation": cell.activation.name,
        # a and b are the family's coefficients; empty (NaN) for any other φ
        "a": getattr(cell.activation, "a", math.nan),
        "b": getattr(cell.activation, "b", math.nan),
        "depth": cell.depth,
        "width": cell.width if cell.width is not None else (net.hidden[0] if net.hidden else 0),
        "widths": sample_widths(net.hidden),
        "schedule": cell.schedule if isinstance(cell.schedule, str) else "explicit",
        "n": x.shape[0],
        "in_dim": x.shape[1],
        "out_dim": cell.out_dim,
        "sigma_w": sigma_w,
        "sigma_b": sigma_b,
        "method": cell.method,
        "kernel": cell.kernel,
        "dtype": cell.dtype,
        "limit_backend": cell.backend,
        "limit_version": backend_version(cell.backend),
        "jax_version": jax.__version__,
    }
    rows = []
    for i, seed in enumerate(cell.seeds):
        row = dict(base, seed=int(seed), seconds=seconds)
        row.update({name: float(values[i]) for name, values in metrics.items()})
        rows.append(row)
    return rows


class Interrupts:
    """Ctrl-C that cannot be lost.

    Python raises KeyboardInterrupt in whatever Python code runs when SIGINT arrives; if that is
    a garbage-collector callback (JAX registers one), the exception is printed as "ignored" and
    the run would go on (seen under load: the sweep then finished with exit 0, or waited forever
    for a peer). The handler also records the request, and the sweep checks it between cells.
    """

    def __init__(self) -> None:
        self.requested = False

    def _handler(self, signum: int, frame: object) -> None:
        self.requested = True
        raise KeyboardInterrupt

    def check(self) -> None:
        if self.requested:
            raise KeyboardInterrupt

    def _unraisable(self, previous: Callable[[Any], None]) -> Callable[[Any], None]:
        """An unraisable-exception hook that takes a swallowed KeyboardInterrupt as the request it
        is (instead of printing "Exception ignored in …" with a traceback) and passes the rest on."""

        def hook(unraisable: Any) -> None:
            if unraisable.exc_type is not None and issubclass(unraisable.exc_type, KeyboardInterrupt):
                self.requested = True
                return
            previous(unraisable)

        return hook

    @contextlib.contextmanager
    def installed(self) -> Iterator[Interrupts]:
        """Install the handler for the duration: in the main thread, unless SIGINT is ignored (a
        process started in the background by a shell script, which must stay deaf to it)."""
        if threading.current_thread() is not threading.main_thread() or (
            signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        ):
            yield self
            return
        previous = signal.signal(signal.SIGINT, self._handler)
        previous_hook = sys.unraisablehook
        sys.unraisablehook = self._unraisable(previous_hook)
        try:
            yield self
        finally:
            sys.unraisablehook = previous_hook
            if previous is not None:  # None: a handler installed from C, which cannot be restored
                signal.signal(signal.SIGINT, previous)


@dataclass
class SweepReport:
    """What one process did: cells computed, failed, skipped (done before or claimed elsewhere)."""

    computed: list[Cell] = field(default_factory=list)
    failed: list[Cell] = field(default_factory=list)
    skipped: list[Cell] = field(default_factory=list)


def run_cells(
    cells: Iterable[Cell],
    x: np.ndarray,
    store: RunStore,
    chunk: int | None = None,
    progress: bool | None = None,
    poll_s: float = 1.0,
) -> SweepReport:
    """Compute every cell that has no shard yet.

    Cells claimed by another live process are left to it; once the rest are done, this process
    waits for them and takes over any whose claim goes stale (its owner died), so it returns
    only when every cell is done or failed; then it removes the claims and temp files that dead
    processes left. progress: tqdm bar with ETA; None shows it only on
    an interactive terminal. KeyboardInterrupt propagates after releasing the current claim;
    shards already written stay.
    """
    cells = list(cells)
    report = SweepReport()
    limits: dict[tuple, jax.Array] = {}
    total = sum(c.seed_count for c in cells)
    bar = tqdm(total=total, unit="seed", disable=None if progress is None else not progress, smoothing=0.1)

    def attempt(cell: Cell) -> bool:
        """Compute the cell unless another process holds it; True when it needs no more work."""
        if store.is_done(cell):
            report.skipped.append(cell)
            return True
        if not store.claim(cell):
            return False
        bar.set_postfix_str(cell.label(), refresh=False)
        try:
            if store.is_done(cell):  # finished by another process between check and claim
                report.skipped.append(cell)
                return True
            if cell.limit_key not in limits:
                limits[cell.limit_key] = limit_kernel(cell.net(), x, cell.kernel, cell.backend)
            store.write_shard(cell, compute_cell(cell, x, limits[cell.limit_key], chunk))
            report.computed.append(cell)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as err:  # recorded, and the sweep goes on
            message = str(err).splitlines()[0] if str(err) else ""
            store.write_failure(cell, f"{type(err).__name__}: {message}")
            report.failed.append(cell)
        finally:
            store.release(cell)
        return True

    store.reap()
    with Interrupts().installed() as interrupts, bar:
        waiting = []
        for cell in cells:
            interrupts.check()
            if attempt(cell):
                bar.update(cell.seed_count)
            else:
                waiting.append(cell)
        while waiting:  # cells other processes are computing
            time.sleep(poll_s)
            interrupts.check()
            still = []
            for cell in waiting:
                if store.failure_path(cell).exists() and not store.claim_is_live(cell):
                    report.skipped.append(cell)  # another process recorded its failure
                    bar.update(cell.seed_count)
                elif attempt(cell):
                    bar.update(cell.seed_count)
                else:
                    still.append(cell)
            waiting = still
    store.reap()  # claims of processes that died after writing their shard
    return report
