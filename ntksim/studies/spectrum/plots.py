"""Figures of the spectrum study: μ_k against k with the fitted power laws, the fitted exponents
against depth, and polynomial φ's non-zero counts."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import LogLocator

from ntksim.analysis.figures import activation_colors, panel_grid, plain_minor_ticks, save_figure
from ntksim.kernels.mercer import polynomial_count

_PARITY_STYLE = {"even": ("-", "o"), "odd": ("--", "^")}


def _few_eigenvalues(ax: plt.Axes, shown: pd.DataFrame) -> None:
    """A panel with at most three nonzero μ_k (a polynomial φ of low degree; `linear` has only
    μ_1): a y-range of two decades around them, not the degenerate one a log axis picks for a
    single value (no ticks, a frame running into the next row), and a note naming them."""
    degrees = sorted(int(k) for k in shown["k"].unique())
    if not 0 < len(degrees) <= 3:
        return
    values = (shown["mu"] / shown["trace"]).to_numpy(float)
    values = values[values > 0]
    if not len(values):
        return
    ax.set_ylim(values.min() / 10, values.max() * 10)
    ax.yaxis.set_major_locator(LogLocator(base=10))
    named = ", ".join(map(str, degrees))
    ax.text(0.97, 0.95, f"μ_k ≠ 0 only for k = {named}", transform=ax.transAxes, ha="right", va="top",
            fontsize=8)  # fmt: skip


def plot_eigenvalues(
    table: pd.DataFrame, fitted: pd.DataFrame, fit_range: tuple[int, int], path: Path
) -> None:
    """μ_k against k (log–log) for one kernel and dimension: a panel per (activation, σ_b), a
    colour per depth, even k solid and odd k dashed; exact zeros are left out; the fitted power
    laws (black, dotted) over the fit range."""
    kernel, dim = table["kernel"].iloc[0], int(table["dim"].iloc[0])
    panels = list(table.groupby(["activation", "sigma_b"], sort=False))
    fig, axes = panel_grid(len(panels))
    depths = sorted(table["depth"].unique())
    cmap = plt.get_cmap("viridis")
    colors = {d: cmap(i / max(len(depths) - 1, 1) * 0.85) for i, d in enumerate(depths)}
    shift = (dim - 2) / 2
    for ((name, sigma_b), panel), ax in zip(panels, axes.flat, strict=False):
        theory = panel["s_theory"].iloc[0]
        shown = panel[~panel["zero"].astype(bool) & (panel["k"] > 0)]
        for depth, g in panel.groupby("depth"):
            g = g.sort_values("k")
            trace = float(g["trace"].iloc[0])
            for parity, (ls, marker) in _PARITY_STYLE.items():
                part = g[(g["k"] % 2 == (parity == "odd")) & ~g["zero"].astype(bool) & (g["k"] > 0)]
                few = len(part) < 25  # a polynomial's few eigenvalues: show each one
                ax.plot(
                    part["k"],
                    part["mu"] / trace,
                    ls=ls,
                    color=colors[depth],
                    lw=1.1,
                    marker=marker if few else None,
                    ms=3,
                    label=f"depth {depth}" if parity == "even" else None,
                )
            sel = fitted[
                (fitted["activation"] == name)
                & (fitted["sigma_b"] == sigma_b)
                & (fitted["depth"] == depth)
                & (fitted["kernel"] == kernel)
                & (fitted["dim"] == dim)
            ]
            for row in sel.itertuples():
                # fitted lines only where science.md predicts a power law
                if np.isfinite(theory) and row.points >= 3 and np.isfinite(row.log_c):
                    k = np.arange(fit_range[0], fit_range[1] + 1)
                    ax.plot(k, np.exp(row.log_c) * (k + shift) ** (-row.s) / trace, ":", color="k", lw=0.8)
        title = f"{name}, σ_b={sigma_b:g}" + (f" (theory s = {theory:g})" if np.isfinite(theory) else "")
        ax.set_title(title, fontsize=9)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("degree k")
        ax.grid(True, which="major", alpha=0.3)
        ax.axvspan(*fit_range, color="0.93", zorder=0)
        _few_eigenvalues(ax, shown)
    axes.flat[0].set_ylabel(f"μ_k / κ(1) of the limit {kernel.upper()}")
    axes.flat[0].legend(fontsize=7, title="solid: even k, dashed: odd k", title_fontsize=7)
    fig.suptitle(
        f"Mercer eigenvalues on S^{dim - 1} (shaded: fit range; dotted: fitted power laws; "
        "μ_k at or below the floor, and negative round-off, omitted)",
        fontsize=10,
    )
    plain_minor_ticks(axes)
    save_figure(fig, path)


def plot_exponents(fitted: pd.DataFrame, fit_range: tuple[int, int], path: Path) -> None:
    """Fitted s against depth: a panel per (kernel, d), a colour per activation, circles for even
    and triangles for odd k; science.md's prediction dashed."""
    colors = activation_colors(fitted)
    panels = list(fitted.groupby(["kernel", "dim"], sort=True))
    fig, axes = panel_grid(len(panels))
    for ((kernel, dim), panel), ax in zip(panels, axes.flat, strict=False):
        for (name, sigma_b), g in panel.groupby(["activation", "sigma_b"], sort=False):
            label = name if panel["sigma_b"].nunique() == 1 else f"{name} σ_b={sigma_b:g}"
            for parity, (ls, marker) in _PARITY_STYLE.items():
                part = g[(g["parity"] == parity) & (g["points"] >= 3)].sort_values("depth")
                ax.plot(
                    part["depth"],
                    part["s"],
                    marker=marker,
                    ls=ls,
                    color=colors[name],
                    lw=1,
                    ms=4,
                    label=label if parity == "even" else None,
                )
            theory = g["s_theory"].iloc[0]
            if np.isfinite(theory):
                ax.axhline(theory, color=colors[name], ls=":", lw=1)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("depth l")
        ax.set_title(f"{kernel.upper()} on S^{dim - 1}", fontsize=9)
        ax.grid(True, alpha=0.3)
    axes.flat[0].set_ylabel(f"fitted s (μ_k ~ k^−s, k ∈ [{fit_range[0]}, {fit_range[1]}])")
    axes.flat[0].legend(fontsize=7, title="o even k, △ odd k; dotted: theory", title_fontsize=7)
    fig.suptitle(
        "decay exponent against depth for φ with a kink at 0: fixed by the kink, not by depth "
        "(depth 2 without bias: one parity decays faster)",
        fontsize=10,
    )
    plain_minor_ticks(axes)
    save_figure(fig, path)


def plot_polynomial_counts(polynomial: pd.DataFrame, path: Path) -> None:
    """Non-zero μ_k against depth for polynomial φ (log scale), beside p^(l−1) + 1 (dotted)."""
    colors = activation_colors(polynomial)
    panels = list(polynomial.groupby(["kernel", "dim"], sort=True))
    fig, axes = panel_grid(len(panels))
    for ((kernel, dim), panel), ax in zip(panels, axes.flat, strict=False):
        for (name, sigma_b), g in panel.groupby(["activation", "sigma_b"], sort=False):
            g = g.sort_values("depth")
            ls = "-" if sigma_b == 0 else "--"
            ax.plot(
                g["depth"],
                g["nonzero_all_k"],
                marker="o",
                ls=ls,
                color=colors[name],
                lw=1.2,
                ms=4,
                label=f"{name} σ_b={sigma_b:g}",
            )
            most = [
                polynomial_count(r.degree ** (r.depth - 1), r.sigma_b > 0, r.phi_parity)
                for r in g.itertuples()
            ]
            ax.plot(g["depth"], most, ":", color=colors[name], lw=1)
        ax.set_yscale("log")
        ax.set_xlabel("depth l")
        ax.set_title(f"{kernel.upper()} on S^{dim - 1}", fontsize=9)
        ax.grid(True, alpha=0.3)
    axes.flat[0].set_ylabel("number of non-zero μ_k")
    axes.flat[0].legend(
        fontsize=7, title="dotted: at most (D = p^(l−1): D + 1, ⌊D/2⌋ + 1 by parity)", title_fontsize=7
    )
    fig.suptitle("polynomial φ: finitely many eigenvalues, more with depth", fontsize=10)
    plain_minor_ticks(axes)
    save_figure(fig, path)
