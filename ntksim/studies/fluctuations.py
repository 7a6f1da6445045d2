"""Fluctuations: the finite-width NTK/NNGP measured against its first-order (1/m) theory.

science.md, "Finite width": E[K] = K∞ + Σ_k M_k/m_k and Cov K = Σ_k C_k/m_k to first order
(`ntksim.finite_width`). A cell is one network (activation, σ_b, depth, width, schedule, kernel,
m_l) and a block of seeds of ntksim's structured eNTK (or eNNGP) in float64 on fixed inputs: x_0
and partners at the configured cosines to it (norms optionally unequal). Its rows carry power sums
Σ_s e_s^k (k = 1 … 4) of each entry's deviation e = K − K∞ and of ‖K − K∞‖²_F and err_op, so
blocks of seeds merge exactly; each row also carries the prediction (mean shift, variance, and
E‖K − K∞‖²_F). The summary gives measured ± standard error against predicted, and how the
difference shrinks with m (like 1/m², where resolved).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from pydantic import Field, field_validator, model_validator

from ntksim.activations import AnyActivation
from ntksim.activations.eoc import NoEOCPoint, resolve_sigmas
from ntksim.analysis.tables import markdown_table
from ntksim.engine.cells import content_id
from ntksim.engine.config import PositiveInt, RunConfig, Strict, as_list
from ntksim.engine.packing import CellCost
from ntksim.engine.study import Memo, Study
from ntksim.kernels.finite_width import ERR_OP_MAX_INPUTS, Kernel, finite_width, x64
from ntksim.nets.empirical import empirical_nngp_seeds, empirical_ntk_seeds
from ntksim.nets.model import MLP, sample_widths
from ntksim.nets.widths import hidden_widths
from ntksim.studies._costs import kernel_cost
from ntksim.studies._sections import ActivationSpec, cell_content

COLUMNS = (
    "activation", "sigma_w", "sigma_b", "depth", "width", "widths", "schedule", "kernel", "out_dim",
    "n", "seed_start", "seeds", "beta", "quantity", "i", "a", "j", "b", "cosine", "limit",
    "s1", "s2", "s3", "s4", "pred_mean", "pred_var",
)  # fmt: skip
SETTING = ["activation", "sigma_b", "depth", "schedule", "kernel", "out_dim"]
SETTING_HEADER = ["activation", "σ_b", "kernel", "depth", "schedule"]  # the summary's first columns


def _setting_cells(r: Any) -> list[Any]:
    """A summary row's first cells, in SETTING_HEADER's order."""
    return [r.activation, f"{r.sigma_b:g}", r.kernel, r.depth, r.schedule]


ENTRY = ["quantity", "i", "a", "j", "b"]
Cosine = Annotated[float, Field(ge=-1, le=1, strict=False, allow_inf_nan=False)]
Norm = Annotated[float, Field(gt=0, strict=False, allow_inf_nan=False)]


Schedule = Literal["constant", "quadratic"]
CONSTANT: tuple[Schedule, ...] = ("constant",)  # the defaults, typed (a bare list literal is list[str])
NTK: tuple[Kernel, ...] = ("ntk",)


class NetSpec(Strict):
    """One network's activation and σ_b (σ_w: the EOC's at that σ_b). YAML: a bare activation
    name, or {activation: elu, sigma_b: 0.2}."""

    activation: ActivationSpec
    sigma_b: Annotated[float, Field(ge=0, strict=False, allow_inf_nan=False)] = 0.0

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        return {"activation": value} if isinstance(value, str) else value


class FluctuationsConfig(RunConfig):
    """Monte Carlo of the eNTK against the first-order theory, over nets × depths × widths ×
    schedules × kernels, `seeds` draws each (in blocks of `seeds_per_cell`)."""

    study: Literal["fluctuations"] = "fluctuations"
    nets: Annotated[list[NetSpec], Field(min_length=1)]
    depths: Annotated[list[Annotated[int, Field(ge=2, le=50, strict=True)]], Field(min_length=1)]
    widths: Annotated[list[PositiveInt], Field(min_length=1)]
    schedules: Annotated[list[Schedule], Field(min_length=1)] = Field(default_factory=lambda: list(CONSTANT))
    kernels: Annotated[list[Kernel], Field(min_length=1)] = Field(default_factory=lambda: list(NTK))
    seeds: PositiveInt = 2000
    seeds_per_cell: PositiveInt | None = None
    cosines: Annotated[list[Cosine], Field(min_length=1, max_length=16)] = Field(
        default_factory=lambda: [-1.0, -0.5, 0.0, 0.5, 0.99]
    )
    norms: Annotated[list[Norm], Field(min_length=2)] | None = None
    dim: Annotated[int, Field(ge=3, le=64, strict=True)] = 3
    out_dim: Annotated[int, Field(ge=1, le=8, strict=True)] = 1

    _listify = field_validator("nets", "depths", "widths", "schedules", "kernels", "cosines", mode="before")(
        as_list
    )

    @model_validator(mode="after")
    def _check(self) -> FluctuationsConfig:
        if self.norms is not None and len(self.norms) != len(self.cosines) + 1:
            raise ValueError(f"norms: one per input, i.e. {len(self.cosines) + 1} (x_0 and one per cosine)")
        for i, net in enumerate(self.nets):
            try:
                resolve_sigmas(net.activation.build(), None, net.sigma_b)
            except NoEOCPoint as err:
                raise ValueError(f"nets.{i}: {err}; give a sigma_b where it has one") from None
        return self


KERNELS: tuple[Kernel, ...] = ("ntk", "nngp")


def inputs(cosines: Sequence[float], norms: Sequence[float] | None, dim: int) -> np.ndarray:
    """x_0 = √dim·e_1 and x_k at cosine c_k to it, in the plane of e_1 and e_{2 + k mod (dim−1)};
    each scaled by its norm factor → (1 + len(cosines), dim) float64."""
    points = [np.eye(dim)[0]]
    for k, c in enumerate(cosines):
        other = np.eye(dim)[1 + k % (dim - 1)]
        points.append(c * np.eye(dim)[0] + math.sqrt(max(0.0, 1.0 - c * c)) * other)
    x = np.stack(points) * math.sqrt(dim)
    return x if norms is None else x * np.asarray(norms)[:, None]


@dataclass(frozen=True)
class Cell:
    activation: AnyActivation
    sigma_b: float
    depth: int
    width: int
    schedule: str
    kernel: Kernel
    out_dim: int
    seed_start: int
    seed_count: int
    inputs: tuple[tuple[float, ...], tuple[float, ...] | None, int]

    @property
    def rows(self) -> int:
        size = (len(self.inputs[0]) + 1) * self.out_dim
        return size * (size + 1) // 2 + 2

    @property
    def cell_id(self) -> str:
        return content_id(cell_content(self, "fluctuations"))

    def net(self) -> MLP:
        return MLP(self.activation, depth=self.depth, width=self.width, schedule=self.schedule,
                   out_dim=self.out_dim, sigma_b=self.sigma_b or None, dtype=jnp.float64)  # fmt: skip

    def label(self) -> str:
        seeds = f"seeds {self.seed_start}–{self.seed_start + self.seed_count - 1}"
        return (f"fluctuations {self.kernel} {self.activation.name} σ_b={self.sigma_b:g} l={self.depth} "
                f"m={self.width} {self.schedule} {seeds}")  # fmt: skip


def expand(config: FluctuationsConfig) -> list[Cell]:
    block = config.seeds_per_cell or config.seeds
    starts = range(0, config.seeds, block)
    points = (tuple(config.cosines), None if config.norms is None else tuple(config.norms), config.dim)
    return [
        Cell(
            net.activation.build(),
            net.sigma_b,
            depth,
            width,
            schedule,
            kernel,
            config.out_dim,
            start,
            min(block, config.seeds - start),
            points,
        )
        for net in config.nets
        for depth in config.depths
        for schedule in config.schedules
        for kernel in config.kernels
        for width in config.widths
        for start in starts
    ]


def _sums(values: np.ndarray) -> dict[str, float]:
    """Σ v^k over the seeds (axis 0), k = 1 … 4."""
    return {f"s{k}": float(np.sum(values**k)) for k in range(1, 5)}


def compute(cell: Cell, memo: Memo) -> list[dict[str, Any]]:
    x = memo.get("inputs", lambda: inputs(*cell.inputs))
    hidden = hidden_widths(cell.depth, cell.width, cell.schedule)
    with x64():  # float64 draws whatever the caller's flag (the CLI sets it anyway)
        net = cell.net()
        # one recursion serves both kernels (and every width: the coefficients do not depend on m)
        theory_key = ("theory", cell.activation, cell.sigma_b, cell.depth, cell.schedule, cell.out_dim)
        both = memo.get(theory_key, lambda: dict(zip(KERNELS, finite_width(net, x, KERNELS), strict=True)))
        theory = both[cell.kernel].at(hidden)
        keys = jnp.stack(
            [jax.random.PRNGKey(s) for s in range(cell.seed_start, cell.seed_start + cell.seed_count)]
        )
        fn = empirical_ntk_seeds if cell.kernel == "ntk" else empirical_nngp_seeds
        k = np.asarray(fn(net, keys, jnp.asarray(x, jnp.float64)), np.float64)
    n, out = x.shape[0], cell.out_dim
    limit = np.kron(theory.limit, np.eye(out)) / n
    e = k - limit
    if not np.all(np.isfinite(e)):
        raise FloatingPointError(f"{cell.label()}: the eNTK has non-finite entries")
    sigma_w, _ = net.sigmas
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    base = {
        "activation": cell.activation.name, "sigma_w": sigma_w, "sigma_b": cell.sigma_b,
        "depth": cell.depth, "width": cell.width, "widths": sample_widths(hidden), "schedule": cell.schedule,
        "kernel": cell.kernel,
        "out_dim": out, "n": n, "seed_start": cell.seed_start, "seeds": cell.seed_count,
        "beta": float(np.sum(1.0 / np.asarray(hidden, np.float64))),
    }  # fmt: skip
    rows = []
    mean, variance = theory.mean_shift, theory.variance
    for row in range(n * out):
        for col in range(row, n * out):
            (i, a), (j, b) = divmod(row, out), divmod(col, out)
            rows.append(base | {"quantity": "entry", "i": i, "a": a, "j": j, "b": b,
                                "cosine": float(np.clip(unit[i] @ unit[j], -1, 1)), "limit": limit[row, col],
                                **_sums(e[:, row, col]), "pred_mean": mean[row, col],
                                "pred_var": variance[row, col]})  # fmt: skip
    fro_sq = np.sum(e**2, axis=(1, 2))
    err_op = np.max(np.abs(np.linalg.eigvalsh(e)), axis=1)
    nothing = {
        "i": -1,
        "a": -1,
        "j": -1,
        "b": -1,
        "cosine": math.nan,
        "limit": math.nan,
        "pred_var": math.nan,
    }
    rows.append(base | nothing | {"quantity": "fro_sq", **_sums(fro_sq), "pred_mean": theory.expected_fro_sq})
    # err_op's prediction: the mean over the Gaussian surrogate's draws (science.md, "Finite width");
    # its joint covariances cost C(n, 4) four-input integrals per layer (n = 8, depth 4: ~30 s)
    predict_op = n <= ERR_OP_MAX_INPUTS and theory.deferred_joint is not None
    surrogate = theory.err_op_draws() if predict_op else np.array([math.nan])
    predicted_op = float(surrogate.mean())
    rows.append(base | nothing | {"quantity": "err_op", **_sums(err_op), "pred_mean": predicted_op})
    return rows


# --- the summary -------------------------------------------------------------------------------
def merged(table: pd.DataFrame) -> pd.DataFrame:
    """One row per setting, width and quantity: seeds N, measured mean and variance with their
    standard errors (from the merged power sums), and the prediction."""
    keys = [*SETTING, "width", "beta", *ENTRY]
    sums = table.groupby(keys, sort=False, dropna=False).agg(
        N=("seeds", "sum"), s1=("s1", "sum"), s2=("s2", "sum"), s3=("s3", "sum"), s4=("s4", "sum"),
        cosine=("cosine", "first"), limit=("limit", "first"), pred_mean=("pred_mean", "first"),
        pred_var=("pred_var", "first"),
    ).reset_index()  # fmt: skip
    N = sums["N"].to_numpy(float)
    m1, m2, m3, m4 = (sums[f"s{k}"].to_numpy(float) / N for k in range(1, 5))
    var = m2 - m1**2
    central4 = m4 - 4 * m1 * m3 + 6 * m1**2 * m2 - 3 * m1**4
    with np.errstate(invalid="ignore", divide="ignore"):
        sums["mean"] = m1
        sums["se_mean"] = np.sqrt(np.maximum(var, 0) / N)
        sums["var"] = var
        sums["se_var"] = np.sqrt(np.maximum(central4 - var**2, 0) / N)
        sums["ms"] = m2  # E[v²]: for fro_sq and err_op rows
    return sums


def convergence(stats: pd.DataFrame) -> pd.DataFrame:
    """Per setting: log–log slope of |measured − predicted| variance of the diagonal entry K_00
    against m, over the widths where the difference exceeds 2 standard errors (−2 expected)."""
    diag = stats[(stats["quantity"] == "entry") & (stats["i"] == 0) & (stats["j"] == 0) & (stats["a"] == 0)
                 & (stats["b"] == 0)]  # fmt: skip
    rows = []
    for key, group in diag.groupby(SETTING, sort=False):
        diff = np.abs(group["var"] - group["pred_var"]).to_numpy()
        resolved = diff > 2 * group["se_var"].to_numpy()
        widths = group["width"].to_numpy(float)
        slope = math.nan
        if resolved.sum() >= 2 and np.ptp(widths[resolved]) > 0:
            slope = float(np.polyfit(np.log(widths[resolved]), np.log(diff[resolved]), 1)[0])
        rows.append(dict(zip(SETTING, key, strict=True)) | {"slope": slope, "resolved": int(resolved.sum()),
                                                           "widths": len(widths)})  # fmt: skip
    return pd.DataFrame(rows)


def _fmt(value: float, se: float) -> str:
    return f"{value:.4g} ± {se:.2g}"


def summarize(table: pd.DataFrame, config: FluctuationsConfig, fits: None = None) -> str:
    stats = merged(table)
    entries = stats[stats["quantity"] == "entry"]
    first = entries[(entries["i"] == 0) & (entries["a"] == 0) & (entries["b"] == 0)]
    first = first.sort_values([*SETTING, "width", "j"])
    lines = [
        f"# {config.name}",
        "",
        'Fluctuations study (science.md, "Finite width"): ntksim\'s eNTK/eNNGP in float64 over '
        f"{config.seeds} seeds against the first-order theory `ntksim.finite_width` (no fit). "
        "K = Θ/n; "
        "entries K(x_0, x_j) of output 0, x_j at the cosine shown (j = 0: the diagonal); ± one standard "
        "error; z = (measured − predicted)/se, where a |z| of a few is the O(1/m²) remainder at small m.",
        "",
        "## Variance and mean shift of K(x_0, x_j)",
        "",
    ]
    rows = []
    for r in first.itertuples():
        z = (r.var - r.pred_var) / r.se_var if r.se_var > 0 else math.nan
        rows.append(
            [
                *_setting_cells(r),
                r.width,
                f"{r.cosine:.2f}",
                _fmt(r.var, r.se_var),
                f"{r.pred_var:.4g}",
                f"{z:+.1f}",
                _fmt(r.mean, r.se_mean),
                f"{r.pred_mean:.3g}",
            ]
        )
    columns = [
        *SETTING_HEADER,
        "m",
        "cos",
        "Var measured",
        "Var predicted",
        "z",
        "E K − K∞ measured",
        "predicted",
    ]
    lines += markdown_table(columns, rows)
    fro = stats[stats["quantity"] == "fro_sq"].merge(
        stats[stats["quantity"] == "err_op"][[*SETTING, "width", "mean", "se_mean", "pred_mean"]].rename(
            columns={"mean": "op", "se_mean": "se_op", "pred_mean": "pred_op"}
        ),
        on=[*SETTING, "width"],
    )
    lines += [
        "",
        "## E‖K − K∞‖²_F and err_op",
        "",
        "Predicted: E‖K − K∞‖²_F is the sum of the entries' first-order variances; err_op = ‖K − K∞‖₂ "
        "is the mean of ‖M + G‖₂ over 20 000 draws of the Gaussian surrogate (G with the first-order "
        f"covariances of all entries, 3- and 4-input ones included; M the mean shift), for up to "
        f"{ERR_OP_MAX_INPUTS} inputs.",
        "",
    ]
    columns = [
        *SETTING_HEADER,
        "m",
        "E‖K−K∞‖²_F measured",
        "predicted",
        "ratio",
        "mean err_op",
        "predicted",
        "ratio",
    ]
    lines += markdown_table(
        columns,
        (
            [
                *_setting_cells(r),
                r.width,
                _fmt(r.mean, r.se_mean),
                f"{r.pred_mean:.4g}",
                f"{r.mean / r.pred_mean:.3f}",
                _fmt(r.op, r.se_op),
                f"{r.pred_op:.4g}",
                f"{r.op / r.pred_op:.3f}",
            ]
            for r in fro.sort_values([*SETTING, "width"]).itertuples()
        ),
    )
    slopes = convergence(stats)
    lines += [
        "",
        "## How the first-order error shrinks",
        "",
        "Log–log slope of |measured − predicted| Var K(x_0, x_0) against m over the widths where the",
        "difference exceeds two standard errors (first order exact up to O(1/m²): slope −2).",
        "",
    ]
    lines += markdown_table(
        [*SETTING_HEADER, "slope", "widths resolved / all"],
        (
            [
                *_setting_cells(r),
                "—" if not np.isfinite(r.slope) else f"{r.slope:.2f}",
                f"{r.resolved} / {r.widths}",
            ]
            for r in slopes.itertuples()
        ),
    )
    return "\n".join(lines) + "\n"


def _variance_figure(frame: pd.DataFrame, path: Path) -> None:
    """Var K(x_0, x_j) against m, measured (±2 se) and predicted, a panel per (φ, σ_b, depth), for
    the rows of one (kernel, schedule)."""
    from matplotlib.lines import Line2D

    from ntksim.analysis.figures import panel_grid, save_figure

    kernel, schedule = frame["kernel"].iloc[0], frame["schedule"].iloc[0]
    panels = list(frame.groupby(["activation", "sigma_b", "depth"], sort=False))
    fig, axes = panel_grid(len(panels))
    # one colour per partner x_j in every panel, and one legend for the figure
    cosines = frame.groupby("j")["cosine"].first()
    colours = dict(zip(cosines.index, plt_colormap(len(cosines)), strict=True))
    for ax, ((name, sigma_b, depth), group) in zip(axes.flat, panels, strict=False):
        tiny = 1e-12 * group["pred_var"].abs().max()
        for j, line in group.groupby("j"):
            line = line.sort_values("width")
            if line["pred_var"].abs().max() <= tiny and line["var"].abs().max() <= tiny:
                continue  # does not fluctuate (ReLU's K(x, −c·x) at depth 2): no log axis for it
            m = line["width"].to_numpy(float)
            ax.errorbar(m, line["var"], yerr=2 * line["se_var"], fmt="o", ms=3, color=colours[j])
            ax.plot(m, line["pred_var"], "--", color=colours[j], lw=1)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(f"{name}, σ_b={sigma_b:g}, depth {depth}", fontsize=9)
        ax.set_xlabel("base width m")
        ax.set_ylabel("Var K(x_0, x_j)")
        ax.grid(True, which="both", alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    handles = [
        Line2D([], [], color=colours[j], marker="o", ls="--", ms=4, label=f"cos(x_0, x_j) = {c:.2f}")
        for j, c in cosines.items()
    ]
    handles.append(Line2D([], [], color="gray", marker="o", ls="none", label="measured (±2 se)"))
    handles.append(Line2D([], [], color="gray", ls="--", label="first-order theory"))
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 4), fontsize=8)
    fig.suptitle(f"{kernel.upper()} fluctuations, {schedule} widths: Monte Carlo against the 1/m theory",
                 fontsize=10)  # fmt: skip
    save_figure(fig, path)


def figures(
    table: pd.DataFrame, config: FluctuationsConfig, directory: Path, fits: None = None
) -> list[Path]:
    from ntksim.analysis.figures import draw_figures

    stats = merged(table)
    entries = stats[
        (stats["quantity"] == "entry") & (stats["i"] == 0) & (stats["a"] == 0) & (stats["b"] == 0)
    ]
    groups = entries.groupby(["kernel", "schedule"], sort=False)
    return draw_figures(
        directory,
        [
            (f"variance_{kernel}_{schedule}.png", _variance_figure, frame)
            for (kernel, schedule), frame in groups
        ],
    )


def plt_colormap(count: int) -> list[tuple]:
    import matplotlib.pyplot as plt

    return [plt.get_cmap("viridis")(t) for t in np.linspace(0, 0.9, max(count, 1))]


def cost(cells: list[Cell], config: FluctuationsConfig) -> list[CellCost]:
    """`Study.cost`: the cell's float64 kernels (structured NTK or NNGP) on its few inputs, their
    deviations and eigenvalues on the host; the first-order theory once per network (seconds; its
    joint covariances for err_op up to ~30 s at 8 inputs, depth 4, not counted here)."""
    estimates = []
    for cell in cells:
        n = len(cell.inputs[0]) + 1
        kernels = kernel_cost(cell.net(), n, cell.inputs[2], cell.seed_count, "structured", cell.kernel)
        host = 3 * cell.seed_count * (n * cell.out_dim) ** 2 * 8
        estimates.append(CellCost(kernels.seconds, kernels.peak_bytes + host))
    return estimates


STUDY = Study(
    name="fluctuations",
    config=FluctuationsConfig,
    columns=COLUMNS,
    expand=expand,
    compute=compute,
    summarize=summarize,
    figures=figures,
    cost=cost,
)
