"""Spectrum: Mercer eigenvalues of the limit NTK and NNGP on the sphere, and their decay.

science.md, "Spectrum and smoothness on the sphere" (Holzmüller & Schölpple): μ_k ~ k^{−s} with s
fixed by the order of φ's non-smoothness at 0, the same at every depth (φ' jumps: NTK s = d, NNGP
d + 2; φ'' jumps: two more); smooth φ decay faster than any power; polynomial φ have finitely many
non-zero μ_k, more with depth; without bias parity zeroes some μ_k (abs: every odd k; depth 2:
odd k ≥ 3 for the family).

One cell per (activation, depth, kernel, dim, σ_b): the rows k = 0 … kmax of `mercer_eigenvalues`
with their multiplicity N(d, k), the trace κ(1) and the floor below which μ_k is reported as an
exact zero. The summary fits log μ_k against log(k + (d − 2)/2) over [fit.k_min, fit.k_max],
even and odd k apart, on the non-zero μ_k only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, field_validator, model_validator

from ntksim.activations import Activation, AnyActivation
from ntksim.activations.eoc import resolve_sigmas
from ntksim.analysis.tables import markdown_table
from ntksim.engine.cells import content_id
from ntksim.engine.config import RunConfig, Strict, as_list
from ntksim.engine.packing import CellCost
from ntksim.engine.study import Memo, Study
from ntksim.kernels.limits import Kernel
from ntksim.kernels.mercer import (
    MAX_DIM,
    MAX_K,
    angular_layers,
    default_nodes,
    funk_hecke,
    multiplicities,
    polynomial_count,
    predicted_decay,
    theta_rule,
)
from ntksim.studies._sections import (
    ActivationSpec,
    SigmaWChoice,
    cell_content,
    check_sigma_w_choice,
    sigma_w_for,
)

COLUMNS = (
    "activation",
    "degree",
    "phi_parity",
    "depth",
    "kernel",
    "dim",
    "sigma_w",
    "sigma_b",
    "k",
    "multiplicity",
    "mu",
    "zero",
    "floor",
    "trace",
    "s_theory",
    "nodes",
)
EPS = float(np.finfo(np.float64).eps)
SigmaB = Annotated[float, Field(ge=0, strict=True, allow_inf_nan=False)]
Dim = Annotated[int, Field(ge=2, le=MAX_DIM, strict=True)]


class FitRange(Strict):
    """The k over which μ_k ~ k^{−s} is fitted (against k + (d − 2)/2); k_max null: kmax.

    min_relative: μ_k / κ(1) below this are left out of the fit. Quadrature-based kernels (every φ
    outside the family) carry errors of about 1e-14 · κ(1), which bend a tail fitted down there."""

    k_min: Annotated[int, Field(ge=1, strict=True)] | None = None  # null: min(20, kmax // 5), at least 1
    k_max: Annotated[int, Field(ge=2, strict=True)] | None = None
    min_relative: Annotated[float, Field(gt=0, lt=1, strict=True)] = 1e-12


BOTH_KERNELS: tuple[Kernel, ...] = ("ntk", "nngp")  # the default, typed


class SpectrumConfig(RunConfig):
    """Funk–Hecke eigenvalues of Θ^l and Σ^l on S^{d−1} across activations, depths and d.

    sigma_w: null (every φ at its Edge of Chaos), a number for all, or a mapping from activation
    names to numbers (the others at the EOC): polynomial φ such as s² have no EOC point."""

    study: Literal["spectrum"] = "spectrum"
    activations: Annotated[list[ActivationSpec], Field(min_length=1)]
    depths: Annotated[list[Annotated[int, Field(ge=1, le=1000, strict=True)]], Field(min_length=1)] = Field(
        default_factory=lambda: [2, 3, 5, 10]
    )
    kernels: Annotated[list[Kernel], Field(min_length=1)] = Field(default_factory=lambda: list(BOTH_KERNELS))
    dims: Annotated[list[Dim], Field(min_length=1)] = Field(default_factory=lambda: [3])
    kmax: Annotated[int, Field(ge=1, le=MAX_K, strict=True)] = 200  # ≥ 1: a spectrum needs two μ_k
    fit: FitRange = FitRange()
    sigma_w: SigmaWChoice = None
    sigma_b: Annotated[list[SigmaB], Field(min_length=1)] = Field(default_factory=lambda: [0.0])
    nodes: Annotated[int, Field(ge=8, le=100_000, strict=True)] | None = None
    floor_factor: Annotated[float, Field(ge=1, strict=True, allow_inf_nan=False)] = 100.0

    _listify = field_validator("activations", "depths", "kernels", "dims", "sigma_b", mode="before")(as_list)
    _unique = field_validator("depths", "kernels", "dims", "sigma_b", mode="after")(lambda v: sorted(set(v)))

    @model_validator(mode="after")
    def _check(self) -> SpectrumConfig:
        if self.fit.k_max is not None and self.fit.k_max > self.kmax:
            raise ValueError(f"fit.k_max: must be at most kmax = {self.kmax}")
        k_min, k_max = self.fit_range
        if self.fit.k_min is not None and k_min > k_max:
            raise ValueError(f"fit.k_min: {k_min} is above the fit's k_max = {k_max}")
        if self.nodes is not None:
            least = max(default_nodes(self.kmax, dim) for dim in self.dims)
            if self.nodes < least:
                raise ValueError(
                    f"nodes: {self.nodes} cannot resolve k ≤ {self.kmax}; give at least {least} (or null)"
                )
        check_sigma_w_choice(self.sigma_w, self.activations, list(self.sigma_b))
        return self

    def sigma_w_of(self, name: str) -> float | None:
        """σ_w of one activation: the number given, its entry in the mapping, or None (its EOC)."""
        return sigma_w_for(self.sigma_w, name)

    @property
    def fit_range(self) -> tuple[int, int]:
        k_min = self.fit.k_min if self.fit.k_min is not None else max(1, min(20, self.kmax // 5))
        return k_min, self.fit.k_max if self.fit.k_max is not None else self.kmax


@dataclass(frozen=True)
class Cell:
    activation: AnyActivation
    depth: int
    kernel: Kernel
    dim: int
    sigma_w: float | None
    sigma_b: float
    kmax: int
    nodes: int
    floor_factor: float

    @property
    def rows(self) -> int:
        return self.kmax + 1

    @property
    def cell_id(self) -> str:
        return content_id(cell_content(self, "spectrum"))

    def label(self) -> str:
        return (
            f"spectrum {self.kernel} {self.activation.name} l={self.depth} d={self.dim} σ_b={self.sigma_b:g}"
        )


def beyond_kmax(act: AnyActivation, depth: int, kmax: int) -> bool:
    """A polynomial φ whose kernel has degree p^(l−1) > kmax: its μ_k reach beyond what is
    computed, and the θ rule sized for kmax cannot integrate it; such cells are not run."""
    degree = degree_of(act)
    return bool(np.isfinite(degree) and degree ** (depth - 1) > kmax)


def expand(config: SpectrumConfig) -> list[Cell]:
    nodes = {
        dim: config.nodes if config.nodes is not None else default_nodes(config.kmax, dim)
        for dim in config.dims
    }
    return [
        Cell(
            act,
            depth,
            kernel,
            dim,
            config.sigma_w_of(act.name),
            b,
            config.kmax,
            nodes[dim],
            config.floor_factor,
        )
        for act in (spec.build() for spec in config.activations)
        for b in config.sigma_b
        for dim in config.dims
        for kernel in config.kernels
        for depth in config.depths
        if not beyond_kmax(act, depth, config.kmax)
    ]


def degree_of(act: AnyActivation) -> float:
    """φ's polynomial degree (the family's linear member: 1), nan for any other φ."""
    if isinstance(act, Activation):
        return 1.0 if act.b == 0 else math.nan
    return float(act.degree) if act.degree is not None else math.nan


def parity_of(act: AnyActivation) -> str:
    """ "odd", "even" or "" (neither): what zeroes every other μ_k without bias."""
    if isinstance(act, Activation):
        return "odd" if act.b == 0 else "even" if act.a == 0 else ""
    return act.parity or ""


def compute(cell: Cell, memo: Memo) -> list[dict[str, Any]]:
    config: SpectrumConfig = memo.config
    sigma_w, sigma_b = resolve_sigmas(cell.activation, cell.sigma_w, cell.sigma_b)
    # Every depth of the config from one recursion (the layers are the same for each depth).
    max_depth = max(config.depths) if cell.depth in config.depths else cell.depth

    def layers() -> list[tuple[np.ndarray, np.ndarray]]:
        nodes, _ = theta_rule(cell.nodes)
        t = np.r_[np.cos(nodes), 1.0]  # and t = 1: the trace κ(1)
        return angular_layers(cell.activation, max_depth, sigma_w, sigma_b, t)

    sigma, theta = memo.get(("layers", cell.activation, sigma_w, sigma_b, cell.nodes, max_depth), layers)[
        cell.depth - 1
    ]
    values = theta if cell.kernel == "ntk" else sigma
    mu = funk_hecke(values[:-1], cell.dim, cell.kmax)
    trace = float(values[-1])
    floor = cell.floor_factor * EPS * trace
    base = {
        "activation": cell.activation.name,
        "degree": degree_of(cell.activation),
        "phi_parity": parity_of(cell.activation),
        "depth": cell.depth,
        "kernel": cell.kernel,
        "dim": cell.dim,
        "sigma_w": sigma_w,
        "sigma_b": sigma_b,
        "floor": floor,
        "trace": trace,
        "s_theory": predicted_decay(cell.activation, cell.kernel, cell.dim, cell.depth),
        "nodes": cell.nodes,
    }
    counts = multiplicities(cell.dim, cell.kmax)
    return [
        base | {"k": k, "multiplicity": counts[k], "mu": float(mu[k]), "zero": bool(abs(mu[k]) <= floor)}
        for k in range(cell.kmax + 1)
    ]


@dataclass(frozen=True)
class DecayFit:
    """s of μ_k ~ (k + (d−2)/2)^{−s} over the non-zero μ_k of one parity in the range, and the
    local exponents over its first and last thirds (equal for a power law, growing for a
    super-polynomial decay)."""

    s: float
    s_low: float
    s_high: float
    points: int
    log_c: float = math.nan  # μ_k ≈ exp(log_c) · (k + (d−2)/2)^{−s}


def _slope(k: np.ndarray, mu: np.ndarray, shift: float) -> float:
    return float(-np.polyfit(np.log(k + shift), np.log(mu), 1)[0])


def fit_decay(k: np.ndarray, mu: np.ndarray, zero: np.ndarray, dim: int, cutoff: float = 0.0) -> DecayFit:
    """k, mu, zero: (K,) of one parity inside the fit range; μ_k ≤ cutoff are left out."""
    keep = ~zero & (mu > cutoff)
    k, mu = k[keep], mu[keep]
    if len(k) < 3:
        return DecayFit(math.nan, math.nan, math.nan, len(k))
    shift = (dim - 2) / 2
    third = max(3, len(k) // 3)
    slope, log_c = np.polyfit(np.log(k + shift), np.log(mu), 1)
    return DecayFit(
        float(-slope),
        _slope(k[:third], mu[:third], shift),
        _slope(k[-third:], mu[-third:], shift),
        len(k),
        float(log_c),
    )


SETTING = ["activation", "sigma_b", "dim", "kernel", "depth"]


def fits(table: pd.DataFrame, k_min: int, k_max: int, min_relative: float = 1e-12) -> pd.DataFrame:
    """One row per setting and parity (even, odd): s, s_low, s_high, points, non-zero μ_k in
    range, s_theory; and per setting the number of non-zero μ_k over all k."""
    rows = []
    for key, g in table.groupby(SETTING, sort=False):
        g = g.sort_values("k")
        in_range = g[(g["k"] >= k_min) & (g["k"] <= k_max)]
        nonzero = int((~g["zero"].astype(bool)).sum())
        for parity, name in ((0, "even"), (1, "odd")):
            part = in_range[in_range["k"] % 2 == parity]
            fit = fit_decay(
                part["k"].to_numpy(float),
                part["mu"].to_numpy(float),
                part["zero"].astype(bool).to_numpy(),
                key[2],
                min_relative * float(g["trace"].iloc[0]),
            )
            rows.append(
                dict(zip(SETTING, key, strict=True))
                | {
                    "parity": name,
                    "s": fit.s,
                    "s_low": fit.s_low,
                    "s_high": fit.s_high,
                    "points": fit.points,
                    "k_last": float(part["k"][part["mu"] > min_relative * float(g["trace"].iloc[0])].max())
                    if fit.points
                    else math.nan,
                    "log_c": fit.log_c,
                    "candidates": len(part),
                    "all_zero": bool(part["zero"].astype(bool).all()),
                    "k_range_end": float(k_max),
                    "nonzero_all_k": nonzero,
                    "s_theory": float(g["s_theory"].iloc[0]),
                    "degree": float(g["degree"].iloc[0]),
                    "phi_parity": str(g["phi_parity"].iloc[0]) if pd.notna(g["phi_parity"].iloc[0]) else "",
                }
            )
    return pd.DataFrame(rows)


def _s_text(row: Any) -> str:
    if row.points == 0:
        # exact zeros (parity, polynomials) or merely below the fit's lower bound
        return "all zero" if row.all_zero else "below fit.min_relative"
    if row.points < 3:
        return f"{row.points} non-zero"
    text = f"{row.s:.2f}"
    if np.isfinite(row.k_last) and row.k_last < row.k_range_end - 1:
        text += f" (k ≤ {row.k_last:.0f})"
    if row.s_high - row.s_low > 0.15 * max(abs(row.s), 1.0):
        text += f" (local {row.s_low:.1f} → {row.s_high:.1f}: faster than a power)"
    return text


def summarize(table: pd.DataFrame, config: SpectrumConfig, fitted: pd.DataFrame | None = None) -> str:
    k_min, k_max = config.fit_range
    fitted = fits_csv(table, config) if fitted is None else fitted
    lines = [
        f"# {config.name}",
        "",
        'Spectrum study (science.md, "Spectrum and smoothness on the sphere"): Funk–Hecke eigenvalues '
        f"μ_k of the limit kernels on S^(d−1) (inputs of norm √d), k = 0 … {config.kmax}. s: the slope "
        f"of −log μ_k against log(k + (d − 2)/2) over k ∈ [{k_min}, {k_max}], even and odd k apart, on "
        f"the μ_k above {config.fit.min_relative:g} · κ(1) (fit.min_relative); μ_k below the floor "
        "(floor_factor · eps · κ(1)) count as exact zeros. When μ_k reaches the fit's lower bound "
        "before k_max, '(k ≤ K)' gives the last k fitted. "
        "s theory: science.md's d (+2 for the NNGP, +2 per smoother kink), blank where it predicts "
        "no power law.",
        "",
    ]
    rows = []
    for key, g in fitted.groupby(SETTING, sort=False):
        even, odd = (next(g[g["parity"] == p].itertuples()) for p in ("even", "odd"))
        theory = "" if not np.isfinite(even.s_theory) else f"{even.s_theory:g}"
        rows.append(
            [
                key[0],
                f"{key[1]:g}",
                key[2],
                key[3],
                key[4],
                _s_text(even),
                _s_text(odd),
                theory,
                even.nonzero_all_k,
            ]
        )
    columns = [
        "activation",
        "σ_b",
        "d",
        "kernel",
        "depth",
        "s (even k)",
        "s (odd k)",
        "s theory",
        "non-zero μ_k",
    ]
    lines += markdown_table(columns, rows)
    skipped = sorted(
        {
            (act.name, depth)
            for act in (spec.build() for spec in config.activations)
            for depth in config.depths
            if beyond_kmax(act, depth, config.kmax)
        }
    )
    polynomial = fitted[np.isfinite(fitted["degree"]) & (fitted["parity"] == "even")]
    if skipped:
        listed = ", ".join(f"{name} at depth {depth}" for name, depth in skipped)
        lines += ["", f"Not computed (kernel degree p^(l−1) above kmax = {config.kmax}): {listed}."]
    if len(polynomial):
        lines += [
            "",
            "## Polynomial φ: non-zero μ_k against depth",
            "",
            "The kernels are polynomials of degree D = p^(l−1) in t, so at most D + 1 of the μ_k are "
            "non-zero; for an even or odd φ without bias only those with the parity of D (⌊D/2⌋ + 1). "
            "Counted above the "
            "floor: the top coefficients of a high-degree kernel can fall below it, and then fewer "
            "show than exist.",
            "",
        ]
        rows = []
        for row in polynomial.itertuples():
            top = row.degree ** (row.depth - 1)
            most = polynomial_count(top, row.sigma_b > 0, row.phi_parity)
            rows.append(
                [
                    row.activation,
                    f"{row.sigma_b:g}",
                    row.dim,
                    row.kernel,
                    row.depth,
                    f"{top:.0f}",
                    f"{most:.0f}",
                    row.nonzero_all_k,
                ]
            )
        columns = ["activation", "σ_b", "d", "kernel", "depth", "D = p^(l−1)", "at most", "non-zero μ_k"]
        lines += markdown_table(columns, rows)
    return "\n".join(lines) + "\n"


def figures(
    table: pd.DataFrame, config: SpectrumConfig, directory: Path, fitted: pd.DataFrame | None = None
) -> list[Path]:
    from ntksim.analysis.figures import draw_figures
    from ntksim.studies.spectrum.plots import plot_eigenvalues, plot_exponents, plot_polynomial_counts

    fit_range = config.fit_range
    fitted = fits_csv(table, config) if fitted is None else fitted

    def eigenvalues(rows: pd.DataFrame, path: Path) -> None:
        plot_eigenvalues(rows, fitted, fit_range, path)

    def exponents(rows: pd.DataFrame, path: Path) -> None:
        plot_exponents(rows, fit_range, path)

    # φ with a predicted power law (a kink at 0): a smooth φ's "exponent" is only a local slope
    power_law = fitted[np.isfinite(fitted["s_theory"])]
    return draw_figures(
        directory,
        [
            *(
                (f"eigenvalues_{kernel}_d{dim}.png", eigenvalues, rows)
                for (kernel, dim), rows in table.groupby(["kernel", "dim"], sort=True)
            ),
            (
                "exponents.png",
                exponents,
                power_law if power_law["depth"].nunique() > 1 else power_law.iloc[:0],
            ),
            (
                "polynomial_counts.png",
                plot_polynomial_counts,
                fitted[np.isfinite(fitted["degree"]) & (fitted["parity"] == "even")],
            ),
        ],
    )


def fits_csv(table: pd.DataFrame, config: SpectrumConfig) -> pd.DataFrame:
    """fits.csv: every fitted decay exponent (and the power law's log-prefactor, log_c), its fit
    range and science.md's value; summary.md and the figures read it."""
    k_min, k_max = config.fit_range
    return fits(table, k_min, k_max, config.fit.min_relative).assign(k_min=k_min, k_max=k_max)


def cost(cells: list[Cell], config: SpectrumConfig) -> list[CellCost]:
    """`Study.cost`: the layer recursion at the θ rule's nodes for every depth of the config
    (NNGP and NTK per layer kept), and the Funk–Hecke projection's Gegenbauer table,
    (kmax + 1, nodes) float64. Seconds: rough (≈ 2e-5 s a node and layer with quadrature)."""
    max_depth = max(config.depths)
    estimates = []
    for cell in cells:
        quadrature = not isinstance(cell.activation, Activation)
        per_node = 2e-5 if quadrature else 1e-7
        nodes = cell.nodes + 1
        peak = 2 * nodes * max_depth * 8 + 12 * nodes * 8 + 2 * (cell.kmax + 1) * nodes * 8 + 2**20
        estimates.append(CellCost(0.05 + per_node * nodes * max_depth, int(peak)))
    return estimates


STUDY = Study(
    "spectrum", SpectrumConfig, COLUMNS, expand, compute, summarize, figures, fits=fits_csv, cost=cost
)
