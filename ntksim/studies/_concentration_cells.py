"""The eNTK-against-limit cell that the concentration and depth studies both compute: a network,
its inputs and a block of seeds, and one results row per seed of err_op, err_fro and the rest."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ntksim.activations import AnyActivation
from ntksim.analysis.metrics import concentration
from ntksim.engine.cells import content_id
from ntksim.engine.packing import CellCost
from ntksim.kernels.limits import Kernel, backend_version
from ntksim.nets.empirical import (
    empirical_ntk_seeds,
    empirical_ntk_seeds_together,
)
from ntksim.nets.model import MLP, sample_widths
from ntksim.studies._costs import kernel_cost
from ntksim.studies._sections import (
    activation_identity,
)


class CellFailure(RuntimeError):
    """A cell produced unusable numbers (NaN or Inf)."""


@dataclass(frozen=True)
class Cell:
    """One unit of work: a network, a data set, and seeds [seed_start, seed_start + seed_count).

    Its id hashes its canonical content, so a re-run finds its finished cells and a changed
    setting gives new ids; settings at their default that older cells did not have (kernel
    "ntk") are left out, so cells made before they existed keep their ids.
    """

    activation: AnyActivation
    depth: int
    width: int | None
    out_dim: int
    seed_start: int
    seed_count: int
    schedule: str | tuple[int, ...]
    sigma_w: float | None
    sigma_b: float | None
    method: str
    dtype: str
    backend: str
    data: tuple[tuple[str, Any], ...]
    kernel: Kernel = "ntk"
    traced: bool = False  # ntk.traced: equal to the default path to round-off, not bit for bit
    fast_compile: bool = False  # ntk.fast_compile: likewise (ntksim.nets.cpu_compile)

    def net(self) -> MLP:
        return MLP(
            activation=self.activation,
            depth=self.depth,
            width=self.width,
            out_dim=self.out_dim,
            schedule=self.schedule,
            sigma_w=self.sigma_w,
            sigma_b=self.sigma_b,
            dtype=self.dtype,
        )

    @property
    def seeds(self) -> range:
        return range(self.seed_start, self.seed_start + self.seed_count)

    @property
    def rows(self) -> int:
        """Rows of its shard: one per seed."""
        return self.seed_count

    @property
    def limit_key(self) -> tuple:
        """Cells with equal keys share K∞ (it depends on neither m nor the seed)."""
        return (
            self.activation,
            self.depth,
            self.out_dim,
            self.sigma_w,
            self.sigma_b,
            self.backend,
            self.data,
            self.kernel,
        )

    def canonical(self) -> dict[str, Any]:
        """What the id hashes."""
        content = asdict(self)
        content["activation"] = activation_identity(self.activation)
        content["data"] = dict(self.data)
        if self.kernel == "ntk":
            del content["kernel"]
        for option in ("traced", "fast_compile"):
            if not content[option]:  # the default path: ids as before the option existed
                del content[option]
        return content

    @property
    def cell_id(self) -> str:
        return content_id(self.canonical())

    def label(self) -> str:
        seeds = f"seeds {self.seed_start}–{self.seed_start + self.seed_count - 1}"
        kernel = "" if self.kernel == "ntk" else f" {self.kernel}"
        return f"{self.activation.name}{kernel} l={self.depth} m={self.width} m_l={self.out_dim} {seeds}"


def data_label(data: tuple[tuple[str, Any], ...]) -> str:
    """The inputs in one table cell: "sphere n=32 dim=8 seed=0" or "file sha256=… key=…"."""
    return " ".join(
        f"{key}={value}" if key != "kind" else str(value) for key, value in data if value is not None
    )


def compute_cell(
    cell: Cell,
    x: np.ndarray,
    kinf: jax.Array,
    chunk: int | None = None,
    traced: bool = False,
    pad_to: int | None = None,
) -> list[dict]:
    """One results row per seed of the cell; CellFailure if any number is not finite.

    traced: one compilation per shape (`empirical_ntk_seeds`); pad_to: the run's seed block, to
    which a short last block is padded when that at most doubles its work (one program fewer)."""
    keys = _keys(cell)
    start = time.perf_counter()
    how = cell.method if cell.kernel == "ntk" else "nngp"  # the NNGP is one Gram, whatever the method
    net, pad = cell.net(), _pad(cell, pad_to)
    ks = empirical_ntk_seeds(
        net, keys, jnp.asarray(x), how, chunk, pad_to=pad, traced=traced, fast_compile=cell.fast_compile
    )
    metrics = concentration(ks, kinf)
    return cell_rows(cell, x, kinf, metrics, (time.perf_counter() - start) / cell.seed_count)


def compute_together(
    cells: list[Cell], x: np.ndarray, kinfs: list[jax.Array], chunk: int | None = None
) -> list[list[dict] | CellFailure]:
    """`compute_cell` of cells that draw the same parameters (`draw_key`: they differ only in φ,
    σ_w, σ_b), from one draw per seed in one compiled program; each cell's rows are bit-identical
    to `compute_cell`'s. Per cell: its rows, or the CellFailure of its non-finite numbers.
    `seconds` (per seed) is the batch's time shared out evenly."""
    cell = cells[0]
    start = time.perf_counter()
    how = cell.method if cell.kernel == "ntk" else "nngp"
    nets = [c.net() for c in cells]
    ks = empirical_ntk_seeds_together(
        nets, _keys(cell), jnp.asarray(x), how, chunk, fast_compile=cell.fast_compile
    )
    metrics = [concentration(k, kinf) for k, kinf in zip(ks, kinfs, strict=True)]
    seconds = (time.perf_counter() - start) / (len(cells) * cell.seed_count)
    outcomes: list[list[dict] | CellFailure] = []
    for one, kinf, values in zip(cells, kinfs, metrics, strict=True):
        try:
            outcomes.append(cell_rows(one, x, kinf, values, seconds))
        except CellFailure as err:
            outcomes.append(err)
    return outcomes


def _keys(cell: Cell) -> jax.Array:
    """(S, 2): the PRNG keys of the cell's seeds."""
    return jnp.stack([jax.random.PRNGKey(int(s)) for s in cell.seeds])


def cell_rows(
    cell: Cell, x: np.ndarray, kinf: jax.Array, metrics: dict[str, Any], seconds: float
) -> list[dict]:
    """The cell's results rows from its metrics (each (S,)); CellFailure if any is not finite."""
    net = cell.net()
    sigma_w, sigma_b = net.sigmas
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
        "data": data_label(cell.data),
    }
    rows = []
    for i, seed in enumerate(cell.seeds):
        row = dict(base, seed=int(seed), seconds=seconds)
        row.update({name: float(values[i]) for name, values in metrics.items()})
        rows.append(row)
    return rows


def _pad(cell: Cell, pad_to: int | None) -> int | None:
    """The padded seed count of a short last block (at most doubling its work), else None."""
    return pad_to if pad_to is not None and cell.seed_count < pad_to <= 2 * cell.seed_count else None


# The cost model (ntksim.studies._costs): a cell's seconds = fixed + seeds × (flops / rate), from its
# shapes alone. Fitted (least squares) on measured cell times of ONE machine — DIR/timings of
# configs/paper_cpu.yaml, 96 cells, static path, cold cache, a 2-core CPU: compile_s ≈ 0.30 +
# 0.155·depth and compute_s ≈ 0.07 + flops / 4.1e10; the two intercepts are summed (0.37) and the
# rate rounded to 4.0e10. Elsewhere (a GPU, a bigger CPU) the seconds are wrong in absolute terms;
# the packing needs only their ratios, and `--dry-run` says the model was fitted on that CPU. The
# fit predates computing the cells of one draw together: a process that gets a whole group (an
# inline run) now takes ~1/3 of the estimate for four activations (less with ntk.fast_compile:
# ~40% less compilation); the packing spreads a group over tasks (balance first).
def cell_cost(cell: Cell, n: int, in_dim: int) -> CellCost:
    """Estimated seconds and peak bytes of one cell (one device): its kernels, and K∞ with the
    metrics' float64 copy of one kernel."""
    size = n * cell.out_dim
    estimate = kernel_cost(cell.net(), n, in_dim, cell.seed_count, cell.method, cell.kernel)
    return CellCost(estimate.seconds, estimate.peak_bytes + 3 * size**2 * 8)
