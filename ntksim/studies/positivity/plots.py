"""Figures of the positivity study: λ_min against n, numerical ranks, and the empirical NTK's
λ_min against the width."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from ntksim.analysis.figures import activation_colors, save_figure

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
