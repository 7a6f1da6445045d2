"""Concentration: how fast the empirical NTK (or NNGP) approaches its infinite-width limit.

A cell is one (activation, depth, m, out_dim) with a block of seeds; its rows are err_op,
err_fro, err_max, rel_op, kinf_op per seed (science.md, "Concentration metrics"). K∞ does not
depend on m or the seed, so each process computes it once per (activation, depth, out_dim, …).
Cells that differ only in φ, σ_w and σ_b draw the same parameters for the same seeds: the default
path computes a process's pending cells of one draw together, in one program (`compute_together`),
with every number bit-identical to computing them one at a time.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Annotated, Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from pydantic import Field, field_validator, model_validator

from ntksim.activations import AnyActivation
from ntksim.analysis.tables import markdown_table
from ntksim.engine.config import MAX_SEED, PositiveInt, RunConfig, StrictFloat, as_list
from ntksim.engine.packing import CellCost
from ntksim.engine.study import Memo, Study
from ntksim.kernels.limits import limit_kernel, resolve_backend
from ntksim.nets.empirical import (
    bytes_per_seed,
    memory_budget,
    parameter_draw,
)
from ntksim.nets.model import MLP
from ntksim.nets.widths import hidden_widths
from ntksim.studies._concentration_cells import Cell, cell_cost, compute_cell, compute_together
from ntksim.studies._sections import (
    ActivationSpec,
    DataConfig,
    LimitConfig,
    NTKConfig,
    check_backend,
    check_eoc_exists,
    check_limit_installed,
    check_sigma_b,
    check_sigma_w,
    data_identity,
    load_data,
)
from ntksim.studies.concentration.rates import fit_table

# The results.csv contract of design.md (columns may be added, none removed).
COLUMNS = (
    "activation", "a", "b", "depth", "width", "widths", "schedule", "n", "in_dim", "out_dim",
    "sigma_w", "sigma_b", "seed", "method", "err_op", "err_fro", "err_max", "rel_op", "kinf_op",
    "seconds",
)  # fmt: skip


# Provenance of every row: the kernel (ntk or nngp), the eNTK dtype, the limit backend and the
# version of the code behind it, and the JAX that computed the eNTK, so rows from two runs (or
# two profiles) can be told apart. Shards written before these columns existed are read with them empty.
PROVENANCE = ("kernel", "dtype", "limit_backend", "limit_version", "jax_version", "data")


TABLE_COLUMNS = (*COLUMNS, *PROVENANCE)


# Headers of shards written before the data identity was recorded (read with `data` empty).
LEGACY_TABLE_COLUMNS = (*COLUMNS, *PROVENANCE[:-1])


class Config(RunConfig):
    """A sweep over activations × depths × widths × out_dims, each with `seeds` parameter draws."""

    study: Literal["concentration"] = "concentration"
    activations: Annotated[list[ActivationSpec], Field(min_length=1)]
    depths: Annotated[list[PositiveInt], Field(min_length=1)]
    widths: Annotated[list[PositiveInt], Field(min_length=1)] | None = None
    schedule: Literal["quadratic", "constant"] | Annotated[list[PositiveInt], Field(min_length=1)] = (
        "quadratic"
    )
    seeds: PositiveInt = 8
    seed_offset: Annotated[int, Field(ge=0, le=MAX_SEED, strict=True)] = 0
    seeds_per_cell: PositiveInt | None = None
    out_dim: PositiveInt | Annotated[list[PositiveInt], Field(min_length=1)] = 1
    sigma_w: StrictFloat | None = None
    sigma_b: StrictFloat | None = None
    kernel: Literal["ntk", "nngp"] = "ntk"
    data: DataConfig = DataConfig()
    ntk: NTKConfig = NTKConfig()
    limit: LimitConfig = LimitConfig()

    _listify = field_validator("activations", "depths", "widths", mode="before")(as_list)
    _sigma_w = field_validator("sigma_w")(check_sigma_w)
    _sigma_b = field_validator("sigma_b")(check_sigma_b)

    @model_validator(mode="after")
    def _check(self) -> Config:
        if self.seed_offset + self.seeds - 1 > MAX_SEED:
            raise ValueError(f"seed_offset: seeds must stay below 2^31 (last seed would be "
                             f"{self.seed_offset + self.seeds - 1})")  # fmt: skip
        if isinstance(self.schedule, list):
            if self.widths is not None:
                raise ValueError("widths: must be omitted when schedule is an explicit list of widths")
            for depth in self.depths:
                try:
                    hidden_widths(depth, None, self.schedule)
                except ValueError as err:
                    raise ValueError(f"schedule: {err}") from None
        elif self.widths is None:
            raise ValueError("widths: required key is missing (the base widths m to sweep)")
        check_backend(self.activations, self.limit.backend)
        if self.sigma_w is None:  # σ_w from the EOC at σ_b: it must exist for every activation
            check_eoc_exists(self.activations, [self.sigma_b])
        return self

    def check_installation(self) -> None:
        check_limit_installed(self.limit)

    @property
    def out_dims(self) -> list[int]:
        return self.out_dim if isinstance(self.out_dim, list) else [self.out_dim]

    @property
    def width_values(self) -> list[int | None]:
        """The swept m values; [None] for an explicit schedule."""
        return list(self.widths) if self.widths is not None else [None]

    def activation_objects(self) -> list[AnyActivation]:
        return [spec.build() for spec in self.activations]


def expand(config: Config) -> list[Cell]:
    """All cells of a config, in a stable order (cells sharing K∞ adjacent). Reads the data once,
    so a bad data file is a ConfigError here, before anything is written."""
    load_data(config.data)
    schedule = config.schedule if isinstance(config.schedule, str) else tuple(config.schedule)
    block = config.seeds_per_cell or config.seeds
    data = data_identity(config.data)
    cells = []
    for act in config.activation_objects():
        for depth in config.depths:
            for out_dim in config.out_dims:
                for width in config.width_values:
                    for start in range(0, config.seeds, block):
                        cells.append(
                            Cell(
                                activation=act,
                                depth=depth,
                                width=width,
                                out_dim=out_dim,
                                seed_start=config.seed_offset + start,
                                seed_count=min(block, config.seeds - start),
                                schedule=schedule,
                                sigma_w=config.sigma_w,
                                sigma_b=config.sigma_b,
                                method=config.ntk.method,
                                dtype=config.ntk.dtype,
                                backend=resolve_backend(act, config.limit.backend),
                                data=data,
                                kernel=config.kernel,
                                traced=bool(config.ntk.traced),
                                fast_compile=bool(config.ntk.fast_compile),
                            )
                        )
    return cells


# Cells that differ only in φ, σ_w and σ_b (a sweep's activations at one depth and width) draw
# the same parameters: the default path computes up to this many of a process's cells in one
# program, from one draw per seed. On one CPU device their numbers are bit-identical to one cell
# at a time (tested); the draw and most of the compilation are shared (configs/paper_cpu.yaml
# without ntk.fast_compile: 90–100 s → 36–40 s). Elsewhere (accelerators, several devices: seeds
# vmapped in chunks that would differ from a lone cell's) cells are computed one at a time.
TOGETHER = 8


def draw_key(cell: Cell) -> tuple[Any, ...]:
    """Equal for cells whose seeds draw the same parameters and whose kernels come from one method
    on the same data: cells that `compute_together` can compute in one program."""
    return (parameter_draw(cell.net()), cell.seed_start, cell.seed_count, cell.method, cell.kernel,
            cell.data, cell.traced, cell.fast_compile)  # fmt: skip


def together_limit(cell: Cell, n: int, in_dim: int, device_bytes: int | None = None) -> int:
    """How many cells of `cell`'s draw to compute together: TOGETHER, fewer where one seed's
    working set (the parameters once; each network's activations, signals and kernels) would
    exceed one batch's memory budget or the device's `device_bytes`; 1 unless the computation
    runs on one CPU device."""
    devices = jax.local_devices()
    if len(devices) != 1 or devices[0].platform != "cpu":
        return 1
    net = cell.net()
    how = cell.method if cell.kernel == "ntk" else "nngp"
    itemsize = jnp.dtype(net.compute_dtype).itemsize
    budget = memory_budget() if device_bytes is None else min(memory_budget(), device_bytes)
    shared = 4 * net.num_params(in_dim) * itemsize  # bytes_per_seed's parameter term
    each = bytes_per_seed(net, n, in_dim, how) - shared + cell.seed_count * (n * cell.out_dim) ** 2 * itemsize
    return max(1, min(TOGETHER, (budget - shared) // each))


def compute(cell: Cell, memo: Memo) -> list[dict]:
    """The cell's rows, with the data and K∞ shared through the per-process memo; on the default
    path computed together with the process's next cells of the same parameter draw."""
    kept = memo.take(cell)  # computed together with an earlier cell
    if kept is not None:
        return kept
    config: Config = memo.config
    x = memo.get("data", lambda: load_data(config.data))

    def kinf_of(c: Cell) -> jax.Array:
        return memo.get(("kinf", c.limit_key), lambda: limit_kernel(c.net(), x, c.kernel, c.backend))

    if config.ntk.traced:
        # padding changes the batch a short block is computed in: bit-identical on CPU (tested),
        # not known to be on a GPU, whose kernels may depend on the batch, so only the opt-in
        # traced path pads
        block = config.seeds_per_cell or config.seeds
        return compute_cell(cell, x, kinf_of(cell), config.ntk.chunk, True, pad_to=block)
    kinf = kinf_of(cell)
    alone: set = memo.get("groups that failed together", set)
    n, in_dim = x.shape
    limit = 1 if draw_key(cell) in alone else together_limit(cell, n, in_dim, memo.device_bytes)
    cells, kinfs, left_out = [cell], [kinf], []
    for other in memo.together(cell, limit)[1:]:
        try:
            kinfs.append(kinf_of(other))
            cells.append(other)
        except memo.interruptions:
            raise
        except Exception:  # left out: it fails alone, with its own reason, when its turn comes
            left_out.append(other)
    memo.give_back(left_out)
    outcomes = None
    if len(cells) > 1:
        try:
            outcomes = compute_together(cells, x, kinfs, config.ntk.chunk)
        except memo.interruptions:
            raise
        except Exception:  # e.g. out of memory with several networks live: each cell alone
            memo.give_back(cells[1:])
            alone.add(draw_key(cell))
    if outcomes is None:  # outside the except block: the failed batch's arrays are freed
        return compute_cell(cell, x, kinf, config.ntk.chunk)
    for other, outcome in zip(cells[1:], outcomes[1:], strict=True):
        memo.keep(other, outcome)
    if isinstance(outcomes[0], Exception):
        raise outcomes[0]
    return outcomes[0]


def cost(cells: list[Cell], config: Config) -> list[CellCost]:
    """`Study.cost`: every cell's estimate (the data's shape read once)."""
    x = load_data(config.data)
    return [cell_cost(cell, x.shape[0], x.shape[1]) for cell in cells]


THEORY_SWITCH = "NTKSIM_THEORY"  # "0": summaries and figures without the first-order theory


THEORY_COLUMNS = ("activation", "kernel", "depth", "out_dim", "width", "predicted_fro", "predicted_op")


_THEORY: dict[str, pd.DataFrame] = {}  # per config: summary and figures share one computation


def theory(table: pd.DataFrame, config: Config | None) -> pd.DataFrame:
    """The first-order prediction √E‖K − K∞‖²_F of `ntksim.finite_width` for every curve of depth
    ≥ 2 in the table and every width of the config (one computation per activation, depth and
    m_l; the coefficients do not depend on m). A curve it cannot predict is left out, and so is
    everything when the config is unknown (`ntksim plot` of a results.csv copied without it) or
    when NTKSIM_THEORY=0 (it costs one ~5 s compilation per run; the test suite's runs of the
    engine's mechanics leave it out)."""
    if config is None or os.environ.get(THEORY_SWITCH, "1") == "0":
        return pd.DataFrame(columns=list(THEORY_COLUMNS))
    key = config.model_dump_json()
    if key in _THEORY:
        return _THEORY[key]
    from ntksim.kernels.finite_width import ERR_OP_MAX_INPUTS, finite_width

    present = set(zip(table["activation"], table["depth"], table["out_dim"], strict=True))
    x = load_data(config.data)
    rows = []
    for act in config.activation_objects():
        for depth in config.depths:
            for out_dim in config.out_dims:
                if depth < 2 or (act.name, depth, out_dim) not in present:
                    continue
                widths = config.width_values
                net = MLP(act, depth=depth, width=widths[0], out_dim=out_dim, schedule=config.schedule,
                          sigma_w=config.sigma_w, sigma_b=config.sigma_b)  # fmt: skip
                try:
                    first_order = finite_width(net, x, config.kernel)
                except Exception as err:  # a prediction must never fail a finished run: say why, go on
                    warnings.warn(f"first-order theory of {act.name} depth {depth}: {err}", stacklevel=1)
                    continue
                for width in widths:
                    hidden = hidden_widths(depth, width, config.schedule)
                    at = first_order.at(hidden)
                    # the median err_op of the Gaussian surrogate, where its joint covariances are cheap
                    op = at.err_op if x.shape[0] <= ERR_OP_MAX_INPUTS else math.nan
                    rows.append((act.name, config.kernel, depth, out_dim, width if width is not None else 0,
                                 at.err_fro, op))  # fmt: skip
    _THEORY[key] = pd.DataFrame(rows, columns=list(THEORY_COLUMNS))
    return _THEORY[key]


CURVE_HEADER = ["activation", "m", "kernel", "depth", "out_dim"]  # the theory tables' first columns


def _curve_cells(r: Any) -> list[Any]:
    """A theory row's first cells, in CURVE_HEADER's order."""
    return [r.activation, r.width, r.kernel, r.depth, r.out_dim]


def theory_markdown(table: pd.DataFrame, predicted: pd.DataFrame) -> str:
    """The prediction beside the measured err_fro (median and root-mean-square over seeds)."""
    if not len(predicted):
        return ""
    measured = table.groupby(["activation", "depth", "out_dim", "width"])["err_fro"]
    merged = predicted.merge(
        measured.median()
        .rename("median")
        .reset_index()
        .merge(measured.apply(lambda e: float(np.sqrt(np.mean(np.square(e))))).rename("rms").reset_index()),
        on=["activation", "depth", "out_dim", "width"],
    )
    keys = ["activation", "depth", "out_dim", "width"]
    ops = merged.merge(table.groupby(keys)["err_op"].median().rename("op").reset_index(), on=keys)
    ops = ops[np.isfinite(ops["predicted_op"].to_numpy(float))]
    lines = [
        "",
        "## First-order theory",
        "",
        "err_fro = ‖K(θ) − K∞‖_F measured against √E‖K − K∞‖²_F from the 1/m expansion",
        "(`ntksim.finite_width`: Σ over entries of their first-order variances; no fit). The",
        "root-mean-square over seeds estimates the same quantity; its ratio to the prediction → 1",
        "as m grows (the remainder is O(1/m) relative).",
        "",
    ]
    columns = [*CURVE_HEADER, "predicted", "measured rms", "median", "rms / predicted"]
    lines += markdown_table(
        columns,
        (
            [
                *_curve_cells(r),
                f"{r.predicted_fro:.4g}",
                f"{r.rms:.4g}",
                f"{r.median:.4g}",
                f"{r.rms / r.predicted_fro:.3f}",
            ]
            for r in merged.itertuples()
        ),
    )
    if len(ops):
        lines += [
            "",
            "err_op = ‖K(θ) − K∞‖₂, median over seeds, against the median of the Gaussian surrogate",
            "(K − K∞ ≈ M + G, G with the first-order covariances of all entries; science.md).",
            "",
        ]
        lines += markdown_table(
            [*CURVE_HEADER, "predicted", "measured median", "measured / predicted"],
            (
                [*_curve_cells(r), f"{r.predicted_op:.4g}", f"{r.op:.4g}", f"{r.op / r.predicted_op:.3f}"]
                for r in ops.itertuples()
            ),
        )
    return "\n".join(lines) + "\n"


def summarize(table: pd.DataFrame, config: Config, fits: pd.DataFrame | None = None) -> str:
    from ntksim.studies.concentration.rates import summary_markdown

    return summary_markdown(table, config.name, fits) + theory_markdown(table, theory(table, config))


def figures(
    table: pd.DataFrame, config: Config, directory: Path, fits: pd.DataFrame | None = None
) -> list[Path]:
    from ntksim.studies.concentration.plots import plot_all

    return plot_all(table, directory, theory(table, config), fit_table(table) if fits is None else fits)


STUDY = Study(
    name="concentration",
    config=Config,
    columns=TABLE_COLUMNS,
    expand=expand,
    compute=compute,
    summarize=summarize,
    figures=figures,
    legacy_columns=(COLUMNS, LEGACY_TABLE_COLUMNS),
    fits=lambda table, config: fit_table(table),
    cost=cost,
    group=draw_key,
)
