"""Depth: the limit NTK along depth at and off the Edge of Chaos (science.md, "Depth").

For each activation, σ_b and σ_w = factor × σ_w^EOC(σ_b) (factor 1: on the EOC; < 1 usually
ordered, > 1 chaotic; the phase is decided by χ, not by the factor), three kinds of cells:

- limit: for each input pair (given by its cosine on the sphere, or every pair of a data set)
  ρ^l, Θ^l(x,x), Θ^l(x,x'), Θ^l/l and the normalised NTK Θ^l(x,x')/Θ^l(x,x) for l = 1 … max_depth;
- finite: err_op and rel_op of the empirical NTK against its limit at fixed width m, depth by
  depth, over seeds (the concentration measurement, reused);
- eoc: the EOC curve σ_w(σ_b) of each activation, for the phase diagram.

One tidy table (column `part` says which), rates fitted in the summary: exponential (per-layer
log-rate, compared with 1/ξ_c = −ln χ) off the EOC, power law in l on it.
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
from ntksim.activations.eoc import chi, eoc_curve, eoc_sigma_w, fixed_point
from ntksim.analysis.tables import markdown_table
from ntksim.engine.cells import content_id
from ntksim.engine.config import ConfigError, PositiveInt, RunConfig, Strict, as_list
from ntksim.engine.packing import CellCost
from ntksim.engine.study import Memo, Study
from ntksim.kernels.limits import limit_kernel, pair_recursion
from ntksim.studies import _concentration_cells as concentration
from ntksim.studies._costs import limit_cost
from ntksim.studies._sections import (
    ActivationSpec,
    DataConfig,
    NTKConfig,
    activation_identity,
    cell_content,
    check_eoc_exists,
    data_identity,
    load_data,
)

MAX_DEPTH = 100_000
EOC_CURVE_SIGMA_B = tuple(float(v) for v in np.linspace(0.0, 1.0, 41) ** 2)

COLUMNS = (
    "part",
    "activation",
    "sigma_b",
    "sigma_w_factor",
    "sigma_w",
    "phase",
    "chi",
    "xi_c",
    "q_star",
    "remark",
    "pair",
    "cosine",
    "depth",
    "rho",
    "one_minus_rho",
    "theta_diag",
    "theta_off",
    "theta_diag_over_l",
    "theta_off_over_l",
    "normalized",
    "width",
    "schedule",
    "seed",
    "err_op",
    "rel_op",
    "kinf_op",
)
Factor = Annotated[float, Field(gt=0, strict=True, allow_inf_nan=False)]


class FiniteConfig(Strict):
    """The finite-width part: err_op, rel_op of the empirical NTK against depth at fixed m."""

    depths: Annotated[list[PositiveInt], Field(min_length=1)]
    width: PositiveInt = 256
    schedule: Literal["constant", "quadratic"] = "constant"
    seeds: PositiveInt = 4
    data: DataConfig = DataConfig(n=8, dim=8)
    ntk: NTKConfig = NTKConfig()

    _listify = field_validator("depths", mode="before")(as_list)


class DepthConfig(RunConfig):
    """Limit quantities along depth, on and off the EOC, and finite-width error against depth."""

    study: Literal["depth"] = "depth"
    activations: Annotated[list[ActivationSpec], Field(min_length=1)]
    sigma_b: Annotated[
        list[Annotated[float, Field(ge=0, strict=True, allow_inf_nan=False)]], Field(min_length=1)
    ] = Field(default_factory=lambda: [0.0])
    sigma_w_factors: Annotated[list[Factor], Field(min_length=1)] = Field(default_factory=lambda: [1.0])
    max_depth: Annotated[int, Field(ge=2, le=MAX_DEPTH, strict=True)] = 1000
    cosines: list[Annotated[float, Field(ge=-1, lt=1, strict=True)]] = Field(
        default_factory=lambda: [0.0, 0.5, 0.9]
    )
    data: DataConfig | None = None
    finite: FiniteConfig | None = None

    _listify = field_validator("activations", "sigma_b", "sigma_w_factors", "cosines", mode="before")(as_list)
    # each setting once (a repeated value would repeat cells and pair names)
    _unique = field_validator("sigma_b", "sigma_w_factors", "cosines", mode="after")(
        lambda v: list(dict.fromkeys(v))
    )

    @model_validator(mode="after")
    def _check(self) -> DepthConfig:
        check_eoc_exists(self.activations, list(self.sigma_b))
        if not self.cosines and self.data is None:
            raise ValueError("cosines: give input pairs by their cosines, or a data section")
        if self.data is not None and self.data.kind != "file" and self.data.num_points < 2:
            raise ValueError("data.n: needs at least 2 points to form a pair")
        if self.data is not None and self.data.kind != "file" and self.data.dimension < 2:
            raise ValueError(
                "data.dim: must be at least 2 (points on S⁰ = {−1, 1} repeat: pairs with 1 − ρ = 0)"
            )
        return self


@dataclass(frozen=True)
class Setting:
    """One network family along depth: φ, σ_b and σ_w = factor · σ_w^EOC(σ_b)."""

    activation: AnyActivation
    sigma_b: float
    factor: float

    @property
    def sigma_w(self) -> float:
        return self.factor * eoc_sigma_w(self.activation, self.sigma_b)

    def identity(self) -> dict[str, Any]:
        return {
            "activation": activation_identity(self.activation),
            "sigma_b": self.sigma_b,
            "factor": self.factor,
        }

    def phase(self) -> tuple[str, float, float]:
        """(phase, χ, ξ_c). χ at the variance map's stable fixed point (the family: at every q);
        nan where the variance diverges (no fixed point), which is chaotic."""
        if self.factor == 1.0:
            return "eoc", 1.0, math.inf
        try:
            value = chi(self.activation, self.sigma_w, self.sigma_b)
        except ValueError:  # no fixed point: the variance grows without bound
            return "chaotic", math.nan, math.nan
        phase = "ordered" if value < 1 else "chaotic"
        return phase, value, -1.0 / math.log(value)

    def q_star(self) -> float:
        """The variance map's stable fixed point; inf where the variance diverges; nan for the
        family without bias (on the EOC every q is fixed, off it q scales by χ per layer)."""
        act = self.activation
        if isinstance(act, Activation):
            value = chi(act, self.sigma_w, self.sigma_b)
            if self.sigma_b == 0.0:
                return math.nan
            return self.sigma_b**2 / (1 - value) if value < 1 else math.inf
        try:
            return fixed_point(act, self.sigma_w, self.sigma_b)
        except ValueError:
            return math.inf

    def remark(self) -> str:
        """What makes this setting behave otherwise than science.md's generic picture (or "")."""
        act, phase, q = self.activation, self.phase()[0], self.q_star()
        if isinstance(act, Activation) and self.sigma_b == 0.0 and self.factor != 1.0:
            return "homogeneous φ without bias: ρ and N as on the EOC, only the scale changes"
        if isinstance(act, Activation) and self.sigma_b > 0.0 and phase == "eoc":
            return "χ = 1 but no fixed point: q grows by σ_b² per layer"
        if math.isinf(q):
            return "no fixed point: q diverges and σ_b becomes negligible"
        if q == 0.0:
            return "q* = 0: the variance vanishes along depth and ρ stays frozen"
        if getattr(act, "parity", None) == "odd" and self.sigma_b == 0.0 and phase == "chaotic":
            return "odd φ without bias: ρ → 0, so Θ(x,x') decays too (rate ln χ − ln Σ̇(ρ=0))"
        return ""

    def base_row(self) -> dict[str, Any]:
        phase, value, xi = self.phase()
        return {
            "activation": self.activation.name,
            "sigma_b": self.sigma_b,
            "sigma_w_factor": self.factor,
            "sigma_w": self.sigma_w,
            "phase": phase,
            "chi": value,
            "xi_c": xi,
            "q_star": self.q_star(),
            "remark": self.remark(),
        }


@dataclass(frozen=True)
class LimitCell:
    setting: Setting
    max_depth: int
    cosines: tuple[float, ...]
    data: tuple[tuple[str, Any], ...] | None  # data identity: its points' pairs too
    num_pairs: int

    @property
    def rows(self) -> int:
        return self.max_depth * self.num_pairs

    @property
    def cell_id(self) -> str:
        # What defines the pairs, not their Gram values: those depend in the last bits on the
        # BLAS and device that computed x·xᵀ, which may differ between a login node and a worker.
        data = dict(self.data) if self.data is not None else None
        return content_id(
            {
                "study": "depth",
                "part": "limit",
                **self.setting.identity(),
                "max_depth": self.max_depth,
                "cosines": list(self.cosines),
                "data": data,
            }
        )

    def label(self) -> str:
        s = self.setting
        return f"depth limit {s.activation.name} σ_b={s.sigma_b:g} σ_w×{s.factor:g} l≤{self.max_depth}"


@dataclass(frozen=True)
class FiniteCell:
    setting: Setting
    inner: concentration.Cell  # the concentration cell at this depth and width

    @property
    def rows(self) -> int:
        return self.inner.seed_count

    @property
    def cell_id(self) -> str:
        # σ_w by its definition (factor × EOC), not its value: the EOC solve's last bits depend on
        # the float precision of the process that expands the config (status, plot, workers).
        inner = self.inner.canonical() | {"sigma_w": None}
        return content_id({"study": "depth", "part": "finite", **self.setting.identity(), "inner": inner})

    def label(self) -> str:
        return f"depth finite σ_b={self.setting.sigma_b:g} σ_w×{self.setting.factor:g} {self.inner.label()}"


@dataclass(frozen=True)
class CurveCell:
    activation: AnyActivation

    @property
    def cell_id(self) -> str:
        return content_id(cell_content(self, "depth", part="eoc", sigma_b=list(EOC_CURVE_SIGMA_B)))

    def label(self) -> str:
        return f"depth EOC curve {self.activation.name}"


DepthCell = LimitCell | FiniteCell | CurveCell  # the three parts of a depth run


def pairs(cosines: tuple[float, ...], data: DataConfig | None) -> list[tuple[str, float, float, float]]:
    """(name, ⟨x,x⟩/m₀, ⟨x',x'⟩/m₀, ⟨x,x'⟩/m₀) of every input pair: unit-norm pairs of the given
    cosines, then every pair i < j of the data's points."""
    out = [(f"cos {c:g}", 1.0, 1.0, float(c)) for c in cosines]
    if data is not None:
        x = load_data(data)
        gram = x @ x.T / x.shape[1]
        n = len(x)
        index = [(i, j) for i in range(n) for j in range(i + 1, n)]
        out += [(f"{i}-{j}", float(gram[i, i]), float(gram[j, j]), float(gram[i, j])) for i, j in index]
    return out


def expand(config: DepthConfig) -> list[DepthCell]:
    """Limit cells (one per setting), finite cells (per setting and depth), EOC-curve cells.
    Reads the data once: a bad or too small data file is a ConfigError here."""
    num_pairs = len(pairs(tuple(config.cosines), config.data))
    if num_pairs == 0:
        raise ConfigError(
            "data: the data file has fewer than 2 points, so no pair; give cosines or more points"
        )
    data = data_identity(config.data) if config.data is not None else None
    cells: list[DepthCell] = []
    acts = [spec.build() for spec in config.activations]
    settings = [Setting(a, b, f) for a in acts for b in config.sigma_b for f in config.sigma_w_factors]
    cells += [LimitCell(s, config.max_depth, tuple(config.cosines), data, num_pairs) for s in settings]
    if config.finite is not None:
        fin = config.finite
        load_data(fin.data)  # a bad data file is a config error now, not a failed cell later
        for s in settings:
            for depth in fin.depths:
                inner = concentration.Cell(
                    activation=s.activation,
                    depth=depth,
                    width=fin.width,
                    out_dim=1,
                    seed_start=0,
                    seed_count=fin.seeds,
                    schedule=fin.schedule,
                    sigma_w=s.sigma_w,
                    sigma_b=s.sigma_b,
                    method=fin.ntk.method,
                    dtype=fin.ntk.dtype,
                    backend="auto",
                    data=data_identity(fin.data),
                    fast_compile=bool(fin.ntk.fast_compile),
                )
                cells.append(FiniteCell(s, inner))
    cells += [CurveCell(a) for a in acts if not isinstance(a, Activation)]
    return cells


def _limit_rows(cell: LimitCell, memo: Memo) -> list[dict[str, Any]]:
    s = cell.setting
    config: DepthConfig = memo.config
    names, g11, g22, g12 = zip(*memo.get("pairs", lambda: pairs(cell.cosines, config.data)), strict=True)
    out = pair_recursion(s.activation, s.sigma_w, s.sigma_b, g11, g22, g12, cell.max_depth)
    depth = np.arange(1, cell.max_depth + 1)[:, None]
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        # √a·√b, not √(ab): deep in the ordered or chaotic phase ab under- or overflows first
        root = np.sqrt(out["s11"]) * np.sqrt(out["s22"])
        rho = out["s12"] / root
        one_minus = 2 * np.sin(out["angle"] / 2) ** 2  # 1 − ρ from the carried angle: no floor at eps
        normalized = out["t12"] / (np.sqrt(out["t11"]) * np.sqrt(out["t22"]))
    base = s.base_row()
    rows = []
    for p, name in enumerate(names):
        cosine = g12[p] / math.sqrt(g11[p] * g22[p])
        for i in range(cell.max_depth):
            rows.append(
                base
                | {
                    "part": "limit",
                    "pair": name,
                    "cosine": cosine,
                    "depth": int(depth[i, 0]),
                    "rho": rho[i, p],
                    "one_minus_rho": one_minus[i, p],
                    "theta_diag": out["t11"][i, p],
                    "theta_off": out["t12"][i, p],
                    "theta_diag_over_l": out["t11"][i, p] / depth[i, 0],
                    "theta_off_over_l": out["t12"][i, p] / depth[i, 0],
                    "normalized": normalized[i, p],
                }
            )
    return rows


def _finite_rows(cell: FiniteCell, memo: Memo) -> list[dict[str, Any]]:
    fin = memo.config.finite
    inner = cell.inner
    x = memo.get(("finite data",), lambda: load_data(fin.data))
    kinf = memo.get(("kinf", inner.limit_key), lambda: limit_kernel(inner.net(), x, "ntk", inner.backend))
    base = cell.setting.base_row()
    return [
        base
        | {
            "part": "finite",
            "depth": r["depth"],
            "width": r["width"],
            "schedule": r["schedule"],
            "seed": r["seed"],
            "err_op": r["err_op"],
            "rel_op": r["rel_op"],
            "kinf_op": r["kinf_op"],
        }
        for r in concentration.compute_cell(inner, x, kinf, fin.ntk.chunk)
    ]


def _curve_rows(cell: CurveCell) -> list[dict[str, Any]]:
    points = eoc_curve(cell.activation, np.array(EOC_CURVE_SIGMA_B))
    return [
        {
            "part": "eoc",
            "activation": cell.activation.name,
            "sigma_b": b,
            "sigma_w_factor": 1.0,
            "sigma_w": p.sigma_w if p else math.nan,
            "phase": "eoc",
            "chi": 1.0,
        }
        for b, p in zip(EOC_CURVE_SIGMA_B, points, strict=True)
    ]


def compute(cell: DepthCell, memo: Memo) -> list[dict[str, Any]]:
    if isinstance(cell, LimitCell):
        return _limit_rows(cell, memo)
    if isinstance(cell, FiniteCell):
        return _finite_rows(cell, memo)
    return _curve_rows(cell)


# --- rates ------------------------------------------------------------------------------------
def _window(curve: pd.DataFrame, column: str, low: float, high: float) -> pd.DataFrame:
    values = curve[column].abs()
    return curve[(values > low) & (values < high)]


def rates(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (activation, σ_b, factor, pair) of the limit part: the fitted rates.

    Off the EOC (exponential, per layer; theory |ln χ| = 1/|ξ_c|): ln(1 − ρ^l) against l where
    1e-10 < 1 − ρ < 1e-2
    (ordered), and ln(normalised NTK) against l where it is in (1e-12, 1e-2) (chaotic).
    On the EOC (power of l): ln(1 − ρ^l) against ln l for l ≥ L/10, and ln|N_{l+1} − N_l| against
    ln l (N converges like l^{-p} when its increments fall like l^{-p-1}; nan where the increments
    change sign in the window: N is not monotone there).
    """
    from ntksim.analysis.fit import log_slope

    limit = table[table["part"] == "limit"]
    rows = []
    keys = ["activation", "sigma_b", "sigma_w_factor", "pair"]
    for key, curve in limit.groupby(keys, sort=False):
        curve = curve.sort_values("depth")
        first = curve.iloc[0]
        big_l = int(curve["depth"].max())
        row = dict(zip(keys, key, strict=True)) | {
            "phase": first["phase"],
            "chi": first["chi"],
            "xi_c": first["xi_c"],
            "q_star": first["q_star"],
            "remark": first["remark"] if isinstance(first["remark"], str) else "",
            "max_depth": big_l,
            "one_minus_rho_at_L": curve["one_minus_rho"].iloc[-1],
            "normalized_at_L": curve["normalized"].iloc[-1],
            "theta_diag_over_l_at_L": curve["theta_diag_over_l"].iloc[-1],
        }
        if first["phase"] == "eoc":
            tail = curve[curve["depth"] >= max(2, big_l // 10)]
            row["rho_exponent"] = -log_slope(tail["depth"], tail["one_minus_rho"], log_x=True)
            steps = np.diff(tail["normalized"].to_numpy())
            # increments that change sign: N_l is not monotone there, and no power law fits
            monotone = bool(np.all(steps > 0) or np.all(steps < 0))
            exponent = -log_slope(tail["depth"].to_numpy()[:-1], np.abs(steps), log_x=True) - 1
            row["normalized_exponent"] = exponent if monotone else math.nan
        else:
            win = _window(curve, "one_minus_rho", 1e-10, 1e-2)
            row["rho_rate"] = -log_slope(win["depth"], win["one_minus_rho"], log_x=False)
            win = _window(curve, "normalized", 1e-12, 1e-2)
            row["normalized_rate"] = -log_slope(win["depth"], win["normalized"], log_x=False)
            # |ln χ| is the theory only where a fixed point q* > 0 exists and ρ's map depends on σ_w
            theory = np.isfinite(first["chi"]) and not row["remark"].startswith(
                ("homogeneous", "no fixed", "q* = 0")
            )
            row["rate_theory"] = abs(math.log(first["chi"])) if theory else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def _fmt(value: float, digits: int = 4) -> str:
    return "—" if value is None or not np.isfinite(value) else f"{value:.{digits}g}"


def summarize(table: pd.DataFrame, config: DepthConfig, fits: pd.DataFrame | None = None) -> str:
    lines = [f"# {config.name}", "", 'Depth study: the limit NTK along depth (science.md, "Depth").', ""]
    fits = rates(table) if fits is None else fits
    if len(fits):
        eoc = fits[fits["phase"] == "eoc"]
        off = fits[fits["phase"] != "eoc"]
        if len(eoc):
            lines += [
                "## On the Edge of Chaos: power laws in l",
                "",
                "1 − ρ^l ~ l^(−exponent) (theory: 2 for the ReLU-like family, 1 for smooth φ); the "
                "normalised NTK N_l = Θ^l(x,x')/Θ^l(x,x) converges like l^(−exponent) (Hayou et al.: "
                "1 for ReLU-like, log l / l for tanh and ELU). Fits over l ∈ [L/10, L]; — where N_l is not "
                "monotone there.",
                "",
            ]
            columns = [
                "activation",
                "σ_b",
                "pair",
                "ρ exponent",
                "N exponent",
                "1 − ρ^L",
                "N_L",
                "Θ^L(x,x)/L",
                "remark",
            ]
            lines += markdown_table(
                columns,
                (
                    [
                        r.activation,
                        f"{r.sigma_b:g}",
                        r.pair,
                        _fmt(r.rho_exponent, 3),
                        _fmt(r.normalized_exponent, 3),
                        _fmt(r.one_minus_rho_at_L, 3),
                        _fmt(r.normalized_at_L),
                        _fmt(r.theta_diag_over_l_at_L),
                        r.remark,
                    ]
                    for r in eoc.itertuples()
                ),
            )
            lines.append("")
        if len(off):
            lines += [
                "## Off the Edge of Chaos: exponential rates per layer",
                "",
                "Fitted −d ln(1 − ρ^l)/dl (ordered) and −d ln N_l/dl (chaotic) against |ln χ| = 1/|ξ_c|. "
                "— where the quantity never enters its fitting window (e.g. ρ^l that does not go to 1), and "
                "no theory where the remark says why |ln χ| is not the rate.",
                "",
            ]
            columns = [
                "activation",
                "σ_b",
                "σ_w/σ_w^EOC",
                "phase",
                "χ",
                "ln χ (abs)",
                "rate of 1 − ρ",
                "rate of N",
                "N_L",
                "pair",
                "remark",
            ]
            lines += markdown_table(
                columns,
                (
                    [
                        r.activation,
                        f"{r.sigma_b:g}",
                        f"{r.sigma_w_factor:g}",
                        r.phase,
                        _fmt(r.chi),
                        _fmt(r.rate_theory),
                        _fmt(r.rho_rate),
                        _fmt(r.normalized_rate),
                        _fmt(r.normalized_at_L, 3),
                        r.pair,
                        r.remark,
                    ]
                    for r in off.itertuples()
                ),
            )
            lines.append("")
    finite = table[table["part"] == "finite"]
    if len(finite):
        lines += [
            "## Finite width: error against depth at fixed m",
            "",
        ]
        groups = finite.groupby(["activation", "sigma_b", "sigma_w_factor", "depth", "width"], sort=False)
        lines += markdown_table(
            ["activation", "σ_b", "σ_w/σ_w^EOC", "depth", "m", "seeds", "median err_op", "median rel_op"],
            (
                [
                    key[0],
                    f"{key[1]:g}",
                    f"{key[2]:g}",
                    f"{key[3]:.0f}",
                    f"{key[4]:.0f}",
                    g["seed"].nunique(),
                    f"{g['err_op'].median():.4g}",
                    f"{g['rel_op'].median():.4g}",
                ]
                for key, g in groups
            ),
        )
    return "\n".join(lines) + "\n"


def figures(
    table: pd.DataFrame, config: DepthConfig, directory: Path, fits: pd.DataFrame | None = None
) -> list[Path]:
    from ntksim.analysis.figures import draw_figures
    from ntksim.studies.depth.plots import plot_depth_finite, plot_depth_limit, plot_depth_phase_diagram

    limit = table[table["part"] == "limit"]
    curves = table[table["part"] == "eoc"]
    points = rates(table) if fits is None else fits

    def phase_diagram(rows: pd.DataFrame, path: Path) -> None:
        plot_depth_phase_diagram(curves, limit, path)

    return draw_figures(
        directory,
        [
            *(
                (f"depth_limit_sigma_b{sigma_b:g}.png", plot_depth_limit, limit[limit["sigma_b"] == sigma_b])
                for sigma_b in sorted(limit["sigma_b"].unique())
            ),
            ("depth_finite_error.png", plot_depth_finite, table[table["part"] == "finite"]),
            # drawn where there are EOC curves or fitted rates to mark on it
            ("phase_diagram.png", phase_diagram, curves if len(curves) else points),
        ],
    )


def cost(cells: list[DepthCell], config: DepthConfig) -> list[CellCost]:
    """`Study.cost`: finite cells as concentration's (their kernels, K∞ and the metrics); the
    pair recursion and the EOC curves by `limit_cost` (every layer's row kept)."""
    shape = load_data(config.finite.data).shape if config.finite is not None else None
    estimates = []
    for cell in cells:
        if isinstance(cell, FiniteCell):
            assert shape is not None  # finite cells exist only with a `finite` section
            estimates.append(concentration.cell_cost(cell.inner, *shape))
        elif isinstance(cell, LimitCell):
            quadrature = not isinstance(cell.setting.activation, Activation)
            estimates.append(limit_cost(cell.num_pairs, cell.max_depth, quadrature, cell.max_depth))
        else:  # an EOC curve: one fixed-point solve per σ_b
            estimates.append(limit_cost(len(EOC_CURVE_SIGMA_B), 30, True))  # ~2-3 s measured
    return estimates


STUDY = Study(
    "depth",
    DepthConfig,
    COLUMNS,
    expand,
    compute,
    summarize,
    figures,
    fits=lambda table, config: rates(table),
    cost=cost,
)
