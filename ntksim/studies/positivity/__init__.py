"""Positivity: is the limit NTK (and NNGP) Gram matrix strictly positive definite?

science.md, "Positivity" (Carvalho et al.): for non-polynomial φ at depth ≥ 2 the Gram matrix
[Θ^l(x_i, x_j)] of pairwise non-parallel inputs has λ_min > 0; polynomial φ give bounded rank
(linear: m₀, m₀ + 1 with bias; degree p, depth l: at most the dimension C(m₀ + p^{l−1}, m₀) of
polynomials of degree p^{l−1} in m₀ variables); antipodal pairs {x, −x} are singular for even φ
(and odd φ) without bias.

Cells:
- limit: for one (activation, depth, σ_b, antipodal, kernel) the Gram matrices of the first n
  points of one draw, for every n in `ns` (nested sets): λ_min, λ_max, the floor, rank;
- finite: λ_min of the empirical NTK Gram at width m (per seed) beside the limit's on the same
  n points, and |Δλ_min| ≤ ‖K − K∞‖₂ (Weyl).

Gram matrices are reported without the 1/n of the NTK matrix K: λ(Gram) = n · λ(K).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from pydantic import Field, field_validator, model_validator

from ntksim.activations import Activation, AnyActivation
from ntksim.activations.eoc import resolve_sigmas
from ntksim.analysis.metrics import gram_spectrum
from ntksim.analysis.tables import markdown_table
from ntksim.engine.cells import content_id
from ntksim.engine.config import PositiveInt, RunConfig, Strict, StrictFloat, as_list
from ntksim.engine.packing import CellCost
from ntksim.engine.study import Memo, Study
from ntksim.kernels.limits import Kernel, family_moments, kernel_recursion, quadrature_moments
from ntksim.nets.empirical import empirical_ntk_seeds
from ntksim.nets.model import MLP
from ntksim.studies._costs import kernel_cost, limit_cost
from ntksim.studies._sections import (
    ActivationSpec,
    DataConfig,
    cell_content,
    check_eoc_exists,
    check_sigma_w,
    data_identity,
    load_data,
)

COLUMNS = (
    "part",
    "activation",
    "degree",
    "depth",
    "sigma_w",
    "sigma_b",
    "antipodal",
    "kernel",
    "n",
    "in_dim",
    "lambda_min",
    "lambda_max",
    "floor",
    "at_floor",
    "rank",
    "rank_bound",
    "width",
    "seed",
    "lambda_min_limit",
    "abs_diff",
    "err_op",
)
SigmaB = Annotated[float, Field(ge=0, strict=True, allow_inf_nan=False)]
NumPoints = Annotated[int, Field(ge=2, le=4096, strict=True)]


def _sorted_unique(values: list[Any]) -> list[Any]:
    return sorted(set(values))


class FiniteConfig(Strict):
    """λ_min of the empirical NTK at these widths (constant schedule), on the first n points."""

    widths: Annotated[list[PositiveInt], Field(min_length=1)]
    n: PositiveInt = 16
    seeds: PositiveInt = 4
    method: Literal["structured", "jacobian"] = "structured"
    dtype: Literal["float32", "float64"] = "float64"

    _listify = field_validator("widths", mode="before")(as_list)


BOTH_KERNELS: tuple[Kernel, ...] = ("ntk", "nngp")  # the default, typed


class PositivityConfig(RunConfig):
    """λ_min and rank of limit (and empirical) NTK/NNGP Gram matrices against n."""

    study: Literal["positivity"] = "positivity"
    activations: Annotated[list[ActivationSpec], Field(min_length=1)]
    depths: Annotated[list[Annotated[int, Field(ge=1, le=100, strict=True)]], Field(min_length=1)] = Field(
        default_factory=lambda: [2, 3]
    )
    sigma_w: StrictFloat | None = None
    sigma_b: Annotated[list[SigmaB], Field(min_length=1)] = Field(default_factory=lambda: [0.0, 0.1])
    ns: Annotated[list[NumPoints], Field(min_length=1)] = Field(default_factory=lambda: [4, 8, 16, 32, 64])
    antipodal: Annotated[list[bool], Field(min_length=1)] = Field(default_factory=lambda: [False])
    kernels: Annotated[list[Kernel], Field(min_length=1)] = Field(default_factory=lambda: list(BOTH_KERNELS))
    floor_factor: Annotated[float, Field(ge=1, strict=True, allow_inf_nan=False)] = 10.0
    data: DataConfig = DataConfig(dim=3)
    finite: FiniteConfig | None = None

    _listify = field_validator(
        "activations", "depths", "sigma_b", "ns", "antipodal", "kernels", mode="before"
    )(as_list)
    _sigma_w = field_validator("sigma_w")(check_sigma_w)
    # Each setting once, n ascending: a repeated value would repeat cells and table columns.
    _unique = field_validator("depths", "sigma_b", "ns", "antipodal", "kernels", mode="after")(_sorted_unique)

    @model_validator(mode="after")
    def _check(self) -> PositivityConfig:
        if self.data.kind == "file":
            raise ValueError("data.kind: positivity draws nested point sets; use sphere or gaussian")
        if self.data.n is not None:
            raise ValueError("data.n: the numbers of points are `ns`")
        if self.data.dimension < 2:
            raise ValueError(
                "data.dim: must be at least 2 (on S⁰ = {−1, 1} distinct points repeat: the Gram is singular)"
            )
        if True in self.antipodal and any(n % 2 for n in self.ns):
            raise ValueError("ns: antipodal sets {x, −x} need even n")
        if self.finite is not None and True in self.antipodal and self.finite.n % 2:
            raise ValueError("finite.n: antipodal sets {x, −x} need an even n")
        if self.finite is not None and self.finite.n > max(self.ns):
            raise ValueError(f"finite.n: must be at most max(ns) = {max(self.ns)}")
        if self.sigma_w is None:
            check_eoc_exists(self.activations, list(self.sigma_b))
        return self


def points(data: DataConfig, n: int, antipodal: bool, n_max: int) -> np.ndarray:
    """The first n points of one draw of n_max (so sets are nested in n); antipodal: the first
    n/2 points and their negatives, (n, dim) float64."""
    x = load_data(data, n_max)
    if not antipodal:
        return x[:n]
    half = x[: n // 2]
    return np.concatenate([half, -half])


def rank_bound(act: AnyActivation, depth: int, in_dim: int, bias: bool, kernel: str) -> float:
    """science.md's bound on the rank of a polynomial φ's Gram matrix: the dimension
    C(m₀ + D, m₀) of polynomials of degree D = p^{l−1} in m₀ variables; for degree 1, m₀ (a
    linear kernel ⟨x, x'⟩) plus 1 when a constant enters (bias, or φ(0) ≠ 0, which acts as one);
    nan for a non-polynomial φ. The NNGP Σ^l has the same degree."""
    degree = act.degree if not isinstance(act, Activation) else (1 if act.b == 0 else None)
    if degree is None:
        return math.nan
    if degree == 1:
        constant = bias or float(np.asarray(act(jnp.zeros(1)))[0]) != 0.0
        return float(in_dim + (1 if constant else 0))
    return float(math.comb(in_dim + degree ** (depth - 1), in_dim))


@dataclass(frozen=True)
class LimitCell:
    activation: AnyActivation
    depth: int
    sigma_w: float | None
    sigma_b: float
    antipodal: bool
    kernel: Kernel
    ns: tuple[int, ...]
    data: tuple[tuple[str, Any], ...]
    floor_factor: float

    @property
    def rows(self) -> int:
        return len(self.ns)

    @property
    def cell_id(self) -> str:
        return content_id(cell_content(self, "positivity", part="limit"))

    def label(self) -> str:
        anti = " antipodal" if self.antipodal else ""
        return f"positivity {self.kernel} {self.activation.name} l={self.depth} σ_b={self.sigma_b:g}{anti}"


@dataclass(frozen=True)
class FiniteCell:
    limit: LimitCell  # the setting (its kernel is the NTK)
    width: int
    n: int
    seeds: int
    method: str
    dtype: str

    @property
    def rows(self) -> int:
        return self.seeds

    @property
    def cell_id(self) -> str:
        return content_id(cell_content(self, "positivity", part="finite"))

    def label(self) -> str:
        return f"{self.limit.label()} m={self.width} n={self.n}"


PositivityCell = LimitCell | FiniteCell


def expand(config: PositivityConfig) -> list[PositivityCell]:
    data = data_identity(config.data)
    limit_cells = [
        LimitCell(
            spec.build(), depth, config.sigma_w, b, anti, kernel, tuple(config.ns), data, config.floor_factor
        )
        for spec in config.activations
        for depth in config.depths
        for b in config.sigma_b
        for anti in config.antipodal
        for kernel in config.kernels
    ]
    cells: list[PositivityCell] = list(limit_cells)
    if config.finite is not None:
        fin = config.finite
        for cell in limit_cells:
            if cell.kernel == "ntk":
                cells += [FiniteCell(cell, m, fin.n, fin.seeds, fin.method, fin.dtype) for m in fin.widths]
    return cells


def _net(cell: LimitCell, width: int = 1, dtype: str = "float64") -> MLP:
    sigma_w, sigma_b = resolve_sigmas(cell.activation, cell.sigma_w, cell.sigma_b)
    return MLP(
        activation=cell.activation,
        depth=cell.depth,
        width=width,
        schedule="constant",
        sigma_w=sigma_w,
        sigma_b=sigma_b,
        dtype=dtype,
    )


def limit_gram(cell: LimitCell, x: np.ndarray) -> np.ndarray:
    """[Θ^l(x_i, x_j)] (ntk) or [Σ^l(x_i, x_j)] (nngp), (n, n) float64, every pair integrated."""
    sigma_w, sigma_b = _net(cell).sigmas
    act, depth = cell.activation, cell.depth
    with jax.ensure_compile_time_eval():
        if isinstance(act, Activation):
            sigma, theta = kernel_recursion(jnp.asarray(x), act, depth, sigma_w, sigma_b, family_moments)
        else:
            expect = functools.partial(quadrature_moments, interpolate=False)
            sigma, theta = kernel_recursion(jnp.asarray(x), act, depth, sigma_w, sigma_b, expect)
    return np.asarray(theta if cell.kernel == "ntk" else sigma, np.float64)


def _base(cell: LimitCell, memo: Memo) -> dict[str, Any]:
    sigma_w, sigma_b = _net(cell).sigmas
    act = cell.activation
    degree = act.degree if not isinstance(act, Activation) else (1 if act.b == 0 else None)
    dim = memo.config.data.dimension
    return {
        "activation": act.name,
        "degree": degree if degree is not None else math.nan,
        "depth": cell.depth,
        "sigma_w": sigma_w,
        "sigma_b": sigma_b,
        "antipodal": cell.antipodal,
        "kernel": cell.kernel,
        "in_dim": dim,
        "rank_bound": rank_bound(act, cell.depth, dim, sigma_b > 0, cell.kernel),
    }


def _limit_rows(cell: LimitCell, memo: Memo) -> list[dict[str, Any]]:
    config: PositivityConfig = memo.config
    x_all = points(config.data, max(cell.ns), cell.antipodal, max(config.ns))
    gram_all = memo.get(("gram", cell), lambda: limit_gram(cell, x_all))
    base = _base(cell, memo)
    rows = []
    for n in cell.ns:
        # Nested sets: the first n points (antipodal sets are rebuilt, so their pairs stay pairs).
        if cell.antipodal:
            half, full = n // 2, max(cell.ns) // 2
            index = np.r_[0:half, full : full + half]
        else:
            index = np.arange(n)
        gram = gram_all[np.ix_(index, index)]
        rows.append(base | {"part": "limit", "n": n} | gram_spectrum(gram, cell.floor_factor))
    return rows


def _finite_rows(cell: FiniteCell, memo: Memo) -> list[dict[str, Any]]:
    config: PositivityConfig = memo.config
    lim = cell.limit
    x_all = points(config.data, max(lim.ns), lim.antipodal, max(config.ns))
    half, full = cell.n // 2, max(lim.ns) // 2
    index = np.r_[0:half, full : full + half] if lim.antipodal else np.arange(cell.n)
    x = x_all[index]
    gram_limit = memo.get(("gram", lim), lambda: limit_gram(lim, x_all))[np.ix_(index, index)]
    limit_spectrum = gram_spectrum(gram_limit, lim.floor_factor)
    net = _net(lim, cell.width, cell.dtype)
    keys = jnp.stack([jax.random.PRNGKey(s) for s in range(cell.seeds)])
    grams = np.asarray(empirical_ntk_seeds(net, keys, jnp.asarray(x), cell.method), np.float64) * cell.n
    rows = []
    for seed, gram in enumerate(grams):
        # the empirical Gram's floor is that of its own dtype
        spectrum = gram_spectrum(
            gram.astype(np.float32) if cell.dtype == "float32" else gram, lim.floor_factor
        )
        err = float(np.max(np.abs(np.linalg.eigvalsh(gram - gram_limit))))
        rows.append(
            _base(lim, memo)
            | spectrum
            | {
                "part": "finite",
                "n": cell.n,
                "width": cell.width,
                "seed": seed,
                "lambda_min_limit": limit_spectrum["lambda_min"],
                "abs_diff": abs(spectrum["lambda_min"] - limit_spectrum["lambda_min"]),
                "err_op": err,
            }
        )
    return rows


def compute(cell: PositivityCell, memo: Memo) -> list[dict[str, Any]]:
    return _limit_rows(cell, memo) if isinstance(cell, LimitCell) else _finite_rows(cell, memo)


def _lambda_text(row: Any) -> str:
    if bool(row.at_floor):
        return f"≤ floor ({row.floor:.1e})"
    return f"{row.lambda_min:.4g}"


def summarize(table: pd.DataFrame, config: PositivityConfig, fits: None = None) -> str:
    lines = [
        f"# {config.name}",
        "",
        'Positivity study (science.md, "Positivity"): λ_min and numerical rank of the Gram matrix '
        "[K(x_i, x_j)] (no 1/n). floor = floor_factor · n · eps · λ_max; a λ_min at or below it is "
        'printed as "≤ floor", not as a value, and the rank counts eigenvalues above it.',
        "",
    ]
    limit = table[table["part"] == "limit"]
    for kernel in [k for k in ("ntk", "nngp") if k in set(limit["kernel"])]:
        sub = limit[limit["kernel"] == kernel]
        ns = sorted(sub["n"].unique())
        lines += [
            f"## Limit {kernel.upper()}: λ_min (rank) against n",
            "",
        ]
        rows = []
        for key, g in sub.groupby(["activation", "depth", "sigma_b", "antipodal"], sort=False):
            g = g.set_index("n")
            bound = g["rank_bound"].iloc[0]
            bound_text = "—" if not np.isfinite(bound) else f"{bound:.0f}"
            cells = [f"{_lambda_text(g.loc[n])} ({int(g.loc[n, 'rank'])})" for n in ns]
            rows.append([key[0], key[1], f"{key[2]:g}", key[3], bound_text, *cells])
        columns = ["activation", "depth", "σ_b", "antipodal", "rank bound", *(f"n={n}" for n in ns)]
        lines += markdown_table(columns, rows)
        lines.append("")
    finite = table[table["part"] == "finite"]
    if len(finite):
        lines += [
            "## Empirical NTK at finite width: λ_min against the limit's",
            "",
            "Median over seeds; |Δλ_min| ≤ ‖K − K∞‖₂ by Weyl's inequality.",
            "",
        ]
        rows = []
        keys = ["activation", "depth", "sigma_b", "antipodal", "n", "width"]
        for key, g in finite.groupby(keys, sort=False):
            # a median of values at the floor is noise: say so, as for the limit
            at_floor = g["at_floor"].astype(bool).mean() >= 0.5
            median = f"≤ floor ({g['floor'].median():.1e})" if at_floor else f"{g['lambda_min'].median():.4g}"
            limit_row = limit[
                (limit["activation"] == key[0])
                & (limit["depth"] == key[1])
                & (limit["kernel"] == "ntk")
                & (limit["sigma_b"] == key[2])
                & (limit["antipodal"] == key[3])
                & (limit["n"] == key[4])
            ]
            limit_text = (
                _lambda_text(next(limit_row.itertuples()))
                if len(limit_row)
                else f"{g['lambda_min_limit'].iloc[0]:.4g}"
            )
            rows.append(
                [
                    key[0],
                    f"{key[1]:.0f}",
                    f"{key[2]:g}",
                    key[3],
                    f"{key[4]:.0f}",
                    f"{key[5]:.0f}",
                    median,
                    limit_text,
                    f"{g['abs_diff'].median():.3g}",
                    f"{g['err_op'].median():.3g}",
                ]
            )
        columns = [
            "activation",
            "depth",
            "σ_b",
            "antipodal",
            "n",
            "m",
            "median λ_min",
            "limit λ_min",
            "median |Δλ_min|",
            "median ‖Gram − Gram∞‖₂",
        ]
        lines += markdown_table(columns, rows)
    return "\n".join(lines) + "\n"


def figures(table: pd.DataFrame, config: PositivityConfig, directory: Path, fits: None = None) -> list[Path]:
    from ntksim.analysis.figures import draw_figures
    from ntksim.studies.positivity.plots import plot_lambda_min, plot_positivity_finite, plot_rank

    limit = table[table["part"] == "limit"]
    return draw_figures(
        directory,
        [
            *(
                (f"lambda_min_{kernel}.png", plot_lambda_min, limit[limit["kernel"] == kernel])
                for kernel in sorted(limit["kernel"].unique())
            ),
            ("rank_polynomial.png", plot_rank, limit[limit["rank_bound"].notna()]),
            ("lambda_min_finite.png", plot_positivity_finite, table[table["part"] == "finite"]),
        ],
    )


def cost(cells: list[PositivityCell], config: PositivityConfig) -> list[CellCost]:
    """`Study.cost`: a limit cell's Gram of max(ns) points (every pair) and its spectra; a finite
    cell's kernels (float64 on the host as well), the limit Gram and their difference."""
    n_max = max(config.ns)
    estimates = []
    for cell in cells:
        if isinstance(cell, LimitCell):
            quadrature = not isinstance(cell.activation, Activation)
            estimates.append(limit_cost(n_max * n_max, cell.depth, quadrature))
            continue
        net = _net(cell.limit, cell.width, cell.dtype)
        kernels = kernel_cost(net, cell.n, config.data.dimension, cell.seeds, cell.method)
        host = (cell.seeds + 4) * cell.n**2 * 8 + 12 * n_max**2 * 8
        estimates.append(CellCost(kernels.seconds, kernels.peak_bytes + host))
    return estimates


STUDY = Study("positivity", PositivityConfig, COLUMNS, expand, compute, summarize, figures, cost=cost)
