"""Figures from a results table: err_op vs m per depth, and the theory prefactor plot."""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter

from ntksim.engine.store import atomic_write
from ntksim.fit import fit_rate, slope_text


def theory_prefactor(delta: float, kappa: float, out_dim: int, depth: int) -> float:
    """(Δ_φ^{-2} + √m_l·l)·κ_φ², the bound's shape (its constant is unknown); inf when Δ = 0."""
    if delta == 0.0:
        return math.inf
    return (delta**-2 + math.sqrt(out_dim) * depth) * kappa**2


def activation_colors(results: pd.DataFrame) -> dict[str, tuple]:
    names = list(dict.fromkeys(results["activation"]))
    cmap = plt.get_cmap("tab10")
    return {name: cmap(i % 10) for i, name in enumerate(names)}


def panel_grid(count: int, width: float = 4.2, height: float = 3.6) -> tuple[plt.Figure, np.ndarray]:
    """A figure with `count` panels, 3 or 4 a row (whichever leaves fewer empty slots; 4 on a
    tie), the unused ones hidden: (fig, axes 2-D)."""
    cols = count if count <= 4 else min((4, 3), key=lambda c: (-count % c, -c))
    rows = -(-count // cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(width * cols, height * rows), squeeze=False, constrained_layout=True
    )
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return fig, axes


FIGURE_FORMATS = ("png", "pdf", "svg")  # PNG for reading, PDF and SVG (vector) for papers
_FORMATS: ContextVar[tuple[str, ...]] = ContextVar("figure_formats", default=("png",))
# no creation dates: the same table gives the same file, byte for byte
_NO_DATE = {"png": None, "pdf": {"CreationDate": None}, "svg": {"Date": None}}


@contextlib.contextmanager
def figure_formats(formats: Sequence[str]) -> Iterator[None]:
    """Every figure saved inside is written once per format (each beside the others: x.png,
    x.pdf); `ntksim run/plot/eoc --format pdf,png` sets it."""
    unknown = [f for f in formats if f not in FIGURE_FORMATS]
    if unknown or not formats:
        named = ", ".join(unknown) or "(none)"
        raise ValueError(f"figure format {named}: choose from {', '.join(FIGURE_FORMATS)}")
    # PNG first, always: a figure saved once more re-runs its layout, and the PNG of
    # `--format pdf,png` must equal that of a plain run
    token = _FORMATS.set(tuple(f for f in FIGURE_FORMATS if f in formats))
    try:
        yield
    finally:
        _FORMATS.reset(token)


def as_written(paths: Sequence[Path]) -> list[Path]:
    """The files `save_figure` wrote for figures named `paths` (whatever their suffix)."""
    return [path.with_suffix(f".{fmt}") for path in paths for fmt in _FORMATS.get()]


def save_figure(fig: plt.Figure, path: Path) -> None:
    """The figure in every current format (`figure_formats`; PNG by default) beside `path`, each
    written atomically: two runs finishing together never leave a torn figure."""
    for fmt in _FORMATS.get():
        buffer = io.BytesIO()
        fig.savefig(buffer, format=fmt, dpi=150, metadata=_NO_DATE[fmt])
        atomic_write(path.with_suffix(f".{fmt}"), buffer.getvalue())
    plt.close(fig)


def plot_concentration(
    results: pd.DataFrame, depth: int, out_dim: int, path: Path, theory: pd.DataFrame | None = None
) -> None:
    """err_op vs m (log2–log2): median over seeds, 10–90% band, fitted slope, m^{-1/2} guide; with
    `theory` (rows of the curve's predicted_fro per width) a second panel: err_fro measured
    (median, band) against the first-order prediction (dashed)."""
    colors = activation_colors(results)
    subset = results[(results["depth"] == depth) & (results["out_dim"] == out_dim)]
    predicted = None
    if theory is not None and len(theory):
        predicted = theory[(theory["depth"] == depth) & (theory["out_dim"] == out_dim)]
        predicted = predicted if len(predicted) else None
    if predicted is None:
        fig, ax = plt.subplots(figsize=(5.5, 4.2), constrained_layout=True)
    else:
        fig, (ax, ax_fro) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
        _plot_fro(subset, predicted, colors, ax_fro)
    anchor = None
    for name, group in subset.groupby("activation", sort=False):
        stats = group.groupby("width")["err_op"]
        widths = np.array(sorted(group["width"].unique()), dtype=float)
        med = stats.median().loc[widths].to_numpy()
        lo = stats.quantile(0.1).loc[widths].to_numpy()
        hi = stats.quantile(0.9).loc[widths].to_numpy()
        fit = fit_rate(widths, [stats.get_group(w).to_numpy() for w in widths])
        seeds = int(group["seed"].nunique())
        slope, interval = slope_text(fit.slope, fit.low, fit.high, len(widths), seeds)
        label = name if slope == "—" else f"{name}: slope {slope} {interval}"
        ax.plot(widths, med, "o-", color=colors[name], label=label, lw=1.6, ms=4)
        ax.fill_between(widths, lo, hi, color=colors[name], alpha=0.2, lw=0)
        if predicted is not None and "predicted_op" in predicted.columns:
            line = predicted[predicted["activation"] == name].sort_values("width")
            line = line[np.isfinite(line["predicted_op"].to_numpy(float))]
            if len(line):
                ax.plot(line["width"].to_numpy(float), line["predicted_op"].to_numpy(float), "--",
                        color=colors[name], lw=1.4, label=f"{name}: first-order theory")  # fmt: skip
        if anchor is None or med[0] > anchor[1]:
            anchor = (widths[0], med[0])
    if anchor is not None:
        guide_m = np.array(sorted(subset["width"].unique()), dtype=float)
        ax.plot(guide_m, anchor[1] * (guide_m / anchor[0]) ** -0.5, "k--", lw=1, label=r"$\propto m^{-1/2}$")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.set_xlabel(
        "base width m  (hidden widths $m_k = k^2 m$)"
        if (subset["schedule"] == "quadratic").all()
        else "base width m"
    )
    nngp = "kernel" in subset.columns and (subset["kernel"] == "nngp").all()
    ax.set_ylabel(r"NNGP $\|K(\theta) - K_\infty\|_2$" if nngp else r"NTK $\|K(\theta) - K_\infty\|_2$")
    n = int(subset["n"].iloc[0]) if len(subset) else 0
    seeds = int(subset["seed"].nunique()) if len(subset) else 0
    ax.set_title(f"depth {depth}, $m_l$={out_dim}, n={n}, {seeds} seeds (median, 10–90%)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def _plot_fro(subset: pd.DataFrame, predicted: pd.DataFrame, colors: dict, ax: plt.Axes) -> None:
    """err_fro per activation: median over seeds and 10–90% band, and the first-order
    √E‖K − K∞‖²_F of ntksim.finite_width as a dashed line of the same colour."""
    for name, group in subset.groupby("activation", sort=False):
        stats = group.groupby("width")["err_fro"]
        widths = np.array(sorted(group["width"].unique()), dtype=float)
        ax.plot(widths, stats.median().loc[widths].to_numpy(), "o", color=colors[name], ms=4,
                label=f"{name}: measured")  # fmt: skip
        lo, hi = (stats.quantile(q).loc[widths].to_numpy() for q in (0.1, 0.9))
        ax.fill_between(widths, lo, hi, color=colors[name], alpha=0.2, lw=0)
        line = predicted[predicted["activation"] == name].sort_values("width")
        if len(line):
            ax.plot(line["width"].to_numpy(float), line["predicted_fro"].to_numpy(), "--", color=colors[name],
                    lw=1.4, label=f"{name}: first-order theory")  # fmt: skip
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.set_xlabel("base width m")
    kernel = "NNGP" if "kernel" in subset.columns and (subset["kernel"] == "nngp").all() else "NTK"
    ax.set_ylabel(kernel + r" $\|K(\theta) - K_\infty\|_F$")
    ax.set_title(
        r"err$_F$: measured (median, 10–90%) and $\sqrt{E\|K-K_\infty\|_F^2}$ to first order", fontsize=10
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)


def measured_constant(group: pd.DataFrame) -> float:
    """C of err_op ≈ C·m^{-1/2} for one curve: the median over its widths of median_seeds(err_op)·√m
    (every width counts, not only the largest)."""
    medians = group.groupby("width")["err_op"].median()
    return float(np.median(medians.to_numpy() * np.sqrt(medians.index.to_numpy(float))))


def theory_points(results: pd.DataFrame) -> pd.DataFrame:
    """One row per curve of the family with Δ > 0 and depth > 1: its theory prefactor
    (Δ^{-2} + √m_l·l)κ² and measured constant C; `omitted` lists the activations with Δ = 0."""
    rows = []
    # Depth 1 is linear in its parameters: its eNTK is the limit and its err_op round-off.
    for (name, a, b, depth, out_dim), group in results[results["depth"] > 1].groupby(
        ["activation", "a", "b", "depth", "out_dim"], sort=False
    ):
        second = a * a + b * b
        prefactor = theory_prefactor(b * b / second, (abs(a) + abs(b)) / math.sqrt(second), out_dim, depth)
        rows.append(
            {
                "activation": name,
                "depth": depth,
                "out_dim": out_dim,
                "prefactor": prefactor,
                "constant": measured_constant(group),
                "widths": group["width"].nunique(),
            }
        )
    return pd.DataFrame(rows, columns=["activation", "depth", "out_dim", "prefactor", "constant", "widths"])


def plot_theory(results: pd.DataFrame, path: Path) -> bool:
    """The bound's shape against the measurement: per curve, the measured constant C (err_op ≈
    C·m^{-1/2}, from every width) against the prefactor (Δ^{-2} + √m_l·l)κ²; one panel per m_l,
    a colour per activation, a marker per depth, and the log–log slope of C against the prefactor
    where three or more points allow one (the bound predicts at most proportionality).

    Only the family has the bound (a, b given, Δ > 0): without such a curve nothing is drawn and
    False is returned (e.g. a run of linear φ only, or of tanh)."""
    points = theory_points(results)
    if not len(points):
        return False
    omitted = sorted(set(points[~np.isfinite(points["prefactor"].to_numpy(float))]["activation"]))
    points = points[np.isfinite(points["prefactor"].to_numpy(float))]
    if not len(points):
        return False
    colors = activation_colors(results)
    markers = "osD^v<>ph*"
    depths = sorted(points["depth"].unique())
    out_dims = sorted(points["out_dim"].unique())
    fig, axes = plt.subplots(
        1, len(out_dims), figsize=(5.2 * len(out_dims), 4.2), squeeze=False, constrained_layout=True
    )
    for out_dim, ax in zip(out_dims, axes.flat, strict=True):
        panel = points[points["out_dim"] == out_dim]
        for row in panel.itertuples():
            ax.scatter(
                row.prefactor,
                row.constant,
                color=colors[row.activation],
                marker=markers[depths.index(row.depth) % len(markers)],
                s=40,
            )
        px, py = panel["prefactor"].to_numpy(float), panel["constant"].to_numpy(float)
        if len(panel) >= 3 and px.min() < px.max():
            slope, intercept = np.polyfit(np.log(px), np.log(py), 1)
            grid = np.geomspace(px.min(), px.max(), 20)
            ax.plot(
                grid, np.exp(intercept) * grid**slope, "k--", lw=1, label=f"fit: C ∝ prefactor^{slope:.2f}"
            )
        else:
            ax.plot([], [], " ", label=f"{len(panel)} point(s): no slope")
        for name in dict.fromkeys(panel["activation"]):
            ax.scatter([], [], color=colors[name], label=name)
        for depth in sorted(panel["depth"].unique()):
            ax.scatter(
                [],
                [],
                color="gray",
                marker=markers[depths.index(depth) % len(markers)],
                label=f"depth {depth}",
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        plain = FuncFormatter(lambda v, _: f"{v:g}")  # 3, 4, 6, 10 rather than 3×10⁰
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_formatter(plain)
            axis.set_minor_formatter(plain)
        ax.set_xlabel(r"theory prefactor $(\Delta_\varphi^{-2} + \sqrt{m_l}\,l)\,\kappa_\varphi^2$")
        ax.set_title(f"$m_l$ = {out_dim}", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    axes.flat[0].set_ylabel(r"measured C: median over m of err_op$\cdot\sqrt{m}$")
    widths = sorted(results["width"].unique())
    note = f"; omitted (Δ = 0): {', '.join(omitted)}" if omitted else ""
    fig.suptitle(
        f"bound shape against measurement\nC from every width m ∈ {{{', '.join(map(str, widths))}}}{note}",
        fontsize=9,
    )
    save_figure(fig, path)
    return True


def plot_all(results: pd.DataFrame, figures_dir: Path, theory: pd.DataFrame | None = None) -> list[Path]:
    """Every figure of a run into figures_dir (with the first-order err_fro of `theory` where
    given); returns their paths."""
    figures_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    out_dims = sorted(results["out_dim"].unique())
    for depth in sorted(results["depth"].unique()):
        for out_dim in out_dims:
            suffix = "" if len(out_dims) == 1 else f"_out{out_dim}"
            path = figures_dir / f"err_op_depth{depth}{suffix}.png"
            plot_concentration(results, int(depth), int(out_dim), path, theory)
            paths.append(path)
    path = figures_dir / "theory_prefactor.png"
    if plot_theory(results, path):
        paths.append(path)
    return paths


def plot_phase_diagram(curves: dict[str, tuple[np.ndarray, ...]], path: Path) -> None:
    """EOC curves σ_w(σ_b) on the (σ_b, σ_w) plane; below a curve χ < 1 (ordered), above χ > 1
    (chaotic), each for its own activation. curves: name → (σ_b values, σ_w of stable EOC points;
    NaN where there is none) and optionally σ_w where χ = 1 holds only at an unstable fixed
    point (drawn thin and dotted: no EOC there, the variance runs away)."""
    fig, ax = plt.subplots(figsize=(7.0, 4.4), constrained_layout=True)
    cmap = plt.get_cmap("tab10")
    top = 0.0
    any_unstable = False
    for i, (name, (sigma_b, sigma_w, *rest)) in enumerate(curves.items()):
        color = cmap(i % 10)
        label = name if np.isfinite(sigma_w).any() else f"{name}: no EOC point for σ_b ≤ {np.max(sigma_b):g}"
        ax.plot(sigma_b, sigma_w, "-", color=color, lw=1.8, label=label)
        values = [sigma_w, *rest]
        if rest and np.isfinite(rest[0]).any():
            ax.plot(sigma_b, rest[0], ":", color=color, lw=1.0)
            any_unstable = True
        for v in values:
            if np.isfinite(v).any():
                top = max(top, float(np.nanmax(v)))
    if any_unstable:
        ax.plot([], [], ":", color="0.4", lw=1.0, label="χ = 1 at an unstable q* (no EOC)")
    ax.set_ylim(0, 1.15 * top if top else 1)
    grids = [np.asarray(c[0], float) for c in curves.values() if len(c[0])]
    ax.set_xlim(0, max((float(np.max(g)) for g in grids), default=1.0) or 1.0)  # the σ_b searched
    if not top:  # nothing to draw (softplus has no EOC point anywhere): say so in the frame
        names = ", ".join(curves)
        ax.text(0.5, 0.5, f"no Edge-of-Chaos point on this σ_b range:\n{names}", transform=ax.transAxes,
                ha="center", va="center", fontsize=10, color="0.3")  # fmt: skip
    ax.set_xlabel(r"$\sigma_b$")
    ax.set_ylabel(r"$\sigma_w$ on the Edge of Chaos ($\chi = 1$)")
    ax.set_title("χ < 1 (ordered) below a curve, χ > 1 (chaotic) above", fontsize=9)
    ax.grid(True, alpha=0.3)
    # Outside the axes: the legend never covers the curves' ends.
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    save_figure(fig, path)


_PHASE_STYLE = {"eoc": "-", "ordered": "--", "chaotic": ":"}


def _curve_label(row: pd.Series) -> str:
    factor = "" if row["sigma_w_factor"] == 1.0 else f" σ_w×{row['sigma_w_factor']:g}"
    return f"{row['activation']}{factor} ({row['phase']})"


def plot_depth_limit(limit: pd.DataFrame, path: Path) -> None:
    """Four panels against depth l (log x) for one σ_b, first pair of each curve: 1 − ρ^l (log),
    the normalised NTK Θ^l(x,x')/Θ^l(x,x) (linear: it lies in [−1, 1]), Θ^l(x,x)/l on the EOC
    (where it settles to a constant), and Θ^l(x,x) in every phase (log: off the EOC it grows or
    decays exponentially, over hundreds of decades, which would flatten the EOC curves beside
    it). Colour: activation; line: phase; the legend beside the panels."""
    colors = activation_colors(limit)
    fig, axes = plt.subplots(1, 4, figsize=(18, 4.2), constrained_layout=True)
    pair = limit["pair"].iloc[0]
    subset = limit[limit["pair"] == pair]
    for _, curve in subset.groupby(["activation", "sigma_w_factor"], sort=False):
        curve = curve.sort_values("depth")
        first = curve.iloc[0]
        style = dict(color=colors[first["activation"]], ls=_PHASE_STYLE.get(first["phase"], "-"), lw=1.5)
        axes[0].plot(curve["depth"], curve["one_minus_rho"], label=_curve_label(first), **style)
        axes[1].plot(curve["depth"], curve["normalized"], **style)
        if first["phase"] == "eoc":
            axes[2].plot(curve["depth"], curve["theta_diag_over_l"], **style)
        axes[3].plot(curve["depth"], curve["theta_diag_over_l"] * curve["depth"], **style)
    titles = (
        r"$1 - \rho^l$",
        r"normalised NTK $\Theta^l(x,x')/\Theta^l(x,x)$",
        r"$\Theta^l(x,x)/l$ on the EOC",
        r"$\Theta^l(x,x)$, every phase",
    )
    for ax, title in zip(axes, titles, strict=True):
        ax.set_xscale("log")
        ax.set_xlabel("depth l")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
    for ax in (axes[0], axes[2], axes[3]):  # on the EOC Θ/l settles (relu) or decays like a power (tanh)
        ax.set_yscale("log")
    axes[1].set_ylim(-1.05, 1.05)
    if not axes[2].lines:
        axes[2].text(0.5, 0.5, "no curve on the EOC", transform=axes[2].transAxes, ha="center")
    fig.legend(loc="outside right upper", fontsize=7)
    sigma_b = limit["sigma_b"].iloc[0]
    fig.suptitle(
        f"limit kernels along depth, σ_b = {sigma_b:g}, pair {pair} "
        "(solid: EOC, dashed: ordered, dotted: chaotic)",
        fontsize=10,
    )
    save_figure(fig, path)


def plot_depth_finite(finite: pd.DataFrame, path: Path) -> None:
    """err_op and rel_op of the empirical NTK against depth at fixed m: median over seeds, 10–90%
    band; colour per activation, line style per phase, one row of panels per σ_b."""
    colors = activation_colors(finite)
    sigma_bs = sorted(finite["sigma_b"].unique())
    fig, axes = plt.subplots(
        len(sigma_bs), 2, figsize=(10, 3.8 * len(sigma_bs)), squeeze=False, constrained_layout=True
    )
    for row, sigma_b in zip(axes, sigma_bs, strict=True):
        panel = finite[finite["sigma_b"] == sigma_b]
        for ax, metric in zip(row, ("err_op", "rel_op"), strict=True):
            for _, group in panel.groupby(["activation", "sigma_w_factor"], sort=False):
                first = group.iloc[0]
                stats = group.groupby("depth")[metric]
                depths = np.array(sorted(group["depth"].unique()))
                med, lo, hi = (stats.quantile(q).loc[depths].to_numpy() for q in (0.5, 0.1, 0.9))
                ls = _PHASE_STYLE.get(first["phase"], "-")
                color = colors[first["activation"]]
                ax.plot(depths, med, "o", ls=ls, color=color, label=_curve_label(first), lw=1.4, ms=3)
                ax.fill_between(depths, lo, hi, color=color, alpha=0.12, lw=0)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("depth l")
            ax.set_title(f"{metric}, σ_b = {sigma_b:g}", fontsize=9)
            ax.grid(True, which="both", alpha=0.3)
        row[0].set_ylabel(r"$\|K(\theta) - K_\infty\|_2$")
        row[1].set_ylabel(r"$\|K(\theta) - K_\infty\|_2 / \|K_\infty\|_2$")
    axes[0, 1].legend(fontsize=7)
    width = int(finite["width"].iloc[0])
    fig.suptitle(
        f"finite-width NTK error against depth, m = {width} (median, 10–90%; solid EOC, "
        "dashed ordered, dotted chaotic)",
        fontsize=10,
    )
    save_figure(fig, path)


def plot_depth_phase_diagram(curves: pd.DataFrame, limit: pd.DataFrame, path: Path) -> None:
    """EOC curves σ_w(σ_b) and the studied (σ_b, σ_w) points, each marked with its |ξ_c| (the
    family's EOC is σ_w = 1/√(a²+b²) at every σ_b: dashed; with σ_b > 0 it has no fixed point)."""
    colors = activation_colors(pd.concat([limit, curves]))
    fig, ax = plt.subplots(figsize=(8, 4.8), constrained_layout=True)
    for name, curve in curves.groupby("activation", sort=False):
        ax.plot(curve["sigma_b"], curve["sigma_w"], "-", color=colors[name], lw=1.6, label=f"{name}: EOC")
    on_eoc = limit[limit["sigma_w_factor"] == 1.0].drop_duplicates(["activation", "sigma_b"])
    for name, rows in on_eoc.groupby("activation", sort=False):
        if name not in set(curves["activation"]):  # the family: no curve was computed
            ax.axhline(rows["sigma_w"].iloc[0], color=colors[name], ls="--", lw=1.2, label=f"{name}: χ = 1")
    points = limit.drop_duplicates(["activation", "sigma_b", "sigma_w_factor"])
    studied = [n for n in dict.fromkeys(points["activation"])]
    # activations share σ_b (and often nearly σ_w): each is dodged sideways by its own step, so
    # no marker hides another; the labels go to the marker's right, one row per activation
    sigma_bs = [*points["sigma_b"].dropna(), *curves["sigma_b"].dropna()]
    span = max([0.2, *map(float, sigma_bs)])
    step = 0.05 * span
    for row in points.itertuples():
        marker = {"eoc": "o", "ordered": "v", "chaotic": "^"}.get(row.phase, "s")
        index = studied.index(row.activation)
        x = row.sigma_b + (index - (len(studied) - 1) / 2) * step
        ax.scatter(x, row.sigma_w, color=colors[row.activation], marker=marker, s=30, zorder=3)
        if row.phase == "eoc":
            continue
        text = "q→∞" if not np.isfinite(row.xi_c) else f"{abs(row.xi_c):.3g}"
        # labels away from the neighbours: left of the left markers, right of the right ones,
        # under the middle one
        side = np.sign(index - (len(studied) - 1) / 2)
        offset, align = {-1.0: ((-4, -2), "right"), 1.0: ((4, -2), "left"), 0.0: ((0, -9), "center")}[side]
        ax.annotate(text, (x, row.sigma_w), fontsize=6, color=colors[row.activation], xytext=offset,
                    textcoords="offset points", ha=align, annotation_clip=False)  # fmt: skip
    ax.set_xlabel(r"$\sigma_b$ (points dodged sideways per activation)")
    ax.set_ylabel(r"$\sigma_w$")
    ax.set_xlim(-step * (len(studied) + 1) - 0.06 * span, span + step * (len(studied) + 1) + 0.08 * span)
    ax.set_title("phase diagram: EOC (○), ordered (▽) and chaotic (△) points, labelled |ξ_c|", fontsize=9)
    ax.grid(True, alpha=0.3)
    fig.legend(loc="outside right upper", fontsize=7)
    save_figure(fig, path)


_BIAS_STYLE = ("-", "--", ":", "-.")


def _style_legend(ax: plt.Axes, colors: dict, sigma_bs: list[float]) -> None:
    """One legend entry per activation (colour) and per σ_b (line style), not per line, beside
    the panels on the right (inside one it covered the curves)."""
    handles = [Line2D([], [], color=color, lw=1.5, label=name) for name, color in colors.items()]
    handles += [
        Line2D([], [], color="gray", ls=_BIAS_STYLE[i % 4],
               label=f"σ_b = {sigma_b:g}" + (" (no bias)" if sigma_b == 0 else ""))
        for i, sigma_b in enumerate(sigma_bs)
    ]  # fmt: skip
    ax.figure.legend(handles=handles, loc="outside right upper", fontsize=8)


def _facets(frame: pd.DataFrame, rows: str | None, cols: str) -> tuple[plt.Figure, np.ndarray, list, list]:
    row_values = sorted(frame[rows].unique()) if rows else [None]
    col_values = sorted(frame[cols].unique())
    size = (4.6 * len(col_values), 3.8 * len(row_values))
    fig, axes = plt.subplots(
        len(row_values), len(col_values), figsize=size, squeeze=False, constrained_layout=True, sharex=True
    )
    return fig, axes, row_values, col_values


def plot_lambda_min(limit: pd.DataFrame, path: Path) -> None:
    """λ_min of the limit Gram against n (log–log): one panel per (antipodal, depth), colour per
    activation, line style per σ_b; values at the floating-point floor are drawn at the floor
    with open markers (they say only "≤ floor")."""
    colors = activation_colors(limit)
    sigma_bs = sorted(limit["sigma_b"].unique())
    fig, axes, antis, depths = _facets(limit, "antipodal", "depth")
    for (anti, depth), ax in zip([(a, d) for a in antis for d in depths], axes.flat, strict=True):
        panel = limit[(limit["antipodal"] == anti) & (limit["depth"] == depth)]
        for (name, sigma_b), g in panel.groupby(["activation", "sigma_b"], sort=False):
            g = g.sort_values("n")
            floor = g["at_floor"].astype(bool).to_numpy()
            value = np.where(floor, g["floor"], g["lambda_min"])
            ls = _BIAS_STYLE[sigma_bs.index(sigma_b) % 4]
            ax.plot(g["n"], value, ls=ls, color=colors[name], lw=1.3)
            ax.scatter(g["n"][~floor], value[~floor], color=colors[name], s=12)
            ax.scatter(g["n"][floor], value[floor], facecolors="none", edgecolors=colors[name], s=20)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(
            f"depth {depth}, " + ("antipodal sets {x, −x}" if anti else "distinct sphere points"), fontsize=9
        )
        ax.grid(True, which="both", alpha=0.3)
        ax.set_xlabel("number of points n")
    kernel = str(limit["kernel"].iloc[0]).upper()
    for ax in axes[:, 0]:
        ax.set_ylabel(f"λ_min of the limit {kernel} Gram")
    _style_legend(axes.flat[0], colors, sigma_bs)
    fig.suptitle(
        "λ_min against n; open markers: at the floating-point floor (drawn at the floor)", fontsize=10
    )
    save_figure(fig, path)


def plot_rank(polynomial: pd.DataFrame, path: Path) -> None:
    """Numerical rank of polynomial φ's limit NTK Gram against n on distinct points, one panel per
    depth, beside min(n, science.md's bound) (dotted)."""
    data = polynomial[
        (polynomial["kernel"] == polynomial["kernel"].iloc[0]) & ~polynomial["antipodal"].astype(bool)
    ]
    colors = activation_colors(data)
    sigma_bs = sorted(data["sigma_b"].unique())
    fig, axes, _, depths = _facets(data, None, "depth")
    for depth, ax in zip(depths, axes.flat, strict=True):
        for (name, sigma_b), g in data[data["depth"] == depth].groupby(["activation", "sigma_b"], sort=False):
            g = g.sort_values("n")
            ls = _BIAS_STYLE[sigma_bs.index(sigma_b) % 4]
            ax.plot(g["n"], g["rank"], "o", ls=ls, color=colors[name], lw=1.3, ms=3)
            ax.plot(g["n"], np.minimum(g["n"], g["rank_bound"]), ":", color=colors[name], lw=1)
        ax.plot(g["n"], g["n"], color="0.6", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log", base=2)
        ax.set_xlabel("number of points n")
        ax.set_title(f"depth {depth} (grey: full rank n; dotted: min(n, bound))", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
    axes.flat[0].set_ylabel(f"numerical rank of the limit {str(data['kernel'].iloc[0]).upper()} Gram")
    _style_legend(axes.flat[0], colors, sigma_bs)
    fig.suptitle("polynomial φ: bounded rank; bound C(m₀ + p^(l−1), m₀)", fontsize=10)
    save_figure(fig, path)


def plot_positivity_finite(finite: pd.DataFrame, path: Path) -> bool:
    """|λ_min(empirical) − λ_min(limit)| / λ_min(limit) against width m on distinct points where the
    limit's λ_min is above the floor: median over seeds and 10–90% band, one panel per depth,
    with the m^{-1/2} guide."""
    data = finite[~finite["antipodal"].astype(bool) & (finite["lambda_min_limit"] > finite["floor"])]
    if data.empty:
        return False
    data = data.assign(abs_diff=data["abs_diff"] / data["lambda_min_limit"])
    colors = activation_colors(data)
    sigma_bs = sorted(data["sigma_b"].unique())
    fig, axes, _, depths = _facets(data, None, "depth")
    for depth, ax in zip(depths, axes.flat, strict=True):
        for (name, sigma_b), g in data[data["depth"] == depth].groupby(["activation", "sigma_b"], sort=False):
            stats = g.groupby("width")["abs_diff"]
            widths = np.array(sorted(g["width"].unique()))
            med, lo, hi = (stats.quantile(q).loc[widths].to_numpy() for q in (0.5, 0.1, 0.9))
            ls = _BIAS_STYLE[sigma_bs.index(sigma_b) % 4]
            ax.plot(widths, med, "o", ls=ls, color=colors[name], lw=1.3, ms=3)
            ax.fill_between(widths, lo, hi, color=colors[name], alpha=0.12, lw=0)
        guide = np.array(sorted(data["width"].unique()), dtype=float)
        ax.plot(guide, (guide / guide[0]) ** -0.5, "k--", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("width m")
        ax.set_title(f"depth {depth}", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
    axes.flat[0].set_ylabel(
        r"$|\lambda_{min}(\mathrm{emp.}) - \lambda_{min}(\infty)|\, /\, \lambda_{min}(\infty)$"
    )
    _style_legend(axes.flat[0], colors, sigma_bs)
    n = int(data["n"].iloc[0])
    fig.suptitle(
        f"empirical NTK λ_min approaching the limit's (n = {n}, distinct points; median, 10–90%)", fontsize=10
    )
    save_figure(fig, path)
    return True
