"""Figures of the concentration study: err_op and err_fro against m per depth, with the
fitted and the predicted (first-order theory) lines, and the theory prefactor plot."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import FuncFormatter
from pandas.api.typing import SeriesGroupBy

from ntksim.analysis.figures import Figure, activation_colors, draw_figures, save_figure
from ntksim.analysis.fit import fit_rate, slope_text


def theory_prefactor(delta: float, kappa: float, out_dim: int, depth: int) -> float:
    """(Δ_φ^{-2} + √m_l·l)·κ_φ², the bound's shape (its constant is unknown); inf when Δ = 0."""
    if delta == 0.0:
        return math.inf
    return (delta**-2 + math.sqrt(out_dim) * depth) * kappa**2


def _curve_fit(
    fits: pd.DataFrame | None, name: str, depth: int, out_dim: int, widths: np.ndarray, stats: SeriesGroupBy
) -> tuple[float, float, float]:
    """(slope, low, high) of one drawn curve: the run's fits.csv row where exactly one matches (the
    numbers summary.md prints), else fitted here (no fits, or a table whose curves share a name)."""
    if fits is not None:
        match = fits[(fits["activation"] == name) & (fits["depth"] == depth) & (fits["out_dim"] == out_dim)]
        if len(match) == 1:
            row = match.iloc[0]
            return float(row["slope"]), float(row["ci_low"]), float(row["ci_high"])
    fit = fit_rate(widths, [stats.get_group(w).to_numpy() for w in widths])
    return fit.slope, fit.low, fit.high


def plot_concentration(
    results: pd.DataFrame,
    depth: int,
    out_dim: int,
    path: Path,
    theory: pd.DataFrame | None = None,
    fits: pd.DataFrame | None = None,
) -> None:
    """err_op vs m (log2–log2): median over seeds, 10–90% band, fitted slope (from `fits`, the
    study's fit table, where given), m^{-1/2} guide; with `theory` (rows of the curve's
    predicted_fro per width) a second panel: err_fro measured (median, band) against the
    first-order prediction (dashed)."""
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
        seeds = int(group["seed"].nunique())
        fitted = _curve_fit(fits, name, depth, out_dim, widths, stats)
        slope, interval = slope_text(*fitted, len(widths), seeds)
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


def plot_all(
    results: pd.DataFrame,
    figures_dir: Path,
    theory: pd.DataFrame | None = None,
    fits: pd.DataFrame | None = None,
) -> list[Path]:
    """Every figure of a run into figures_dir (with the first-order err_fro of `theory` and the
    slopes of `fits` where given); returns their paths."""
    out_dims = sorted(results["out_dim"].unique())

    def panel(depth: int, out_dim: int) -> Figure:
        def draw(rows: pd.DataFrame, path: Path) -> None:
            plot_concentration(rows, depth, out_dim, path, theory, fits)

        suffix = "" if len(out_dims) == 1 else f"_out{out_dim}"
        return f"err_op_depth{depth}{suffix}.png", draw, results

    depths = sorted(results["depth"].unique())
    panels = [panel(int(depth), int(out_dim)) for depth in depths for out_dim in out_dims]
    return draw_figures(figures_dir, [*panels, ("theory_prefactor.png", plot_theory, results)])
