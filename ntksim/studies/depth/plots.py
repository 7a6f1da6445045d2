"""Figures of the depth study: the limit kernel along depth, the empirical error against depth,
and the phase diagram with the EOC curves."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ntksim.analysis.figures import activation_colors, save_figure

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
