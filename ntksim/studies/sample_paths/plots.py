"""Figures of the sample-path study: paths on the circle, their power spectra, and increments."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ntksim.analysis.figures import panel_grid, plain_minor_ticks, save_figure


def plot_paths(paths: pd.DataFrame, path: Path) -> None:
    """Random networks on the circle: a panel per activation (its largest width and first depth),
    each path against the angle."""
    panels = []
    for name, g in paths.groupby("activation", sort=False):
        g = g[
            (g["width"] == g["width"].max())
            & (g["depth"] == g["depth"].min())
            & (g["sigma_b"] == g["sigma_b"].min())
        ]
        panels.append((name, g))
    fig, axes = panel_grid(len(panels), width=4.4, height=3.0)
    for (name, g), ax in zip(panels, axes.flat, strict=False):
        for output, line in g.groupby("output"):
            line = line.sort_values("angle")
            number = int(output)
            ax.plot(line["angle"], line["value"], lw=0.9, color=f"C{number}", label=f"output {number + 1}")
        ax.set_title(f"{name}: depth {g['depth'].iloc[0]:.0f}, m = {g['width'].iloc[0]:.0f}", fontsize=9)
        ax.set_xlabel("angle θ of x = √2 (cos θ, sin θ) (radians)")
        ax.set_xlim(0, 2 * np.pi)
        ax.set_xticks(np.arange(5) * np.pi / 2, ["0", "π/2", "π", "3π/2", "2π"])
        ax.grid(True, alpha=0.3)
    axes.flat[0].set_ylabel("network output f(x)")
    # the outputs are independent draws of one Gaussian process (the readout's rows): one legend
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=8, title="seed 0", title_fontsize=8)
    fig.suptitle("random networks at initialization on S¹ (each output is an independent path)", fontsize=10)
    plain_minor_ticks(axes)
    save_figure(fig, path)


def plot_power_spectra(spectrum: pd.DataFrame, path: Path) -> None:
    """Power p_k of the paths (mean ± 2 SE over seeds, a colour per width) against k (log–log),
    with the NNGP's μ_k (black) and its mean on the grid (grey, dashed); a panel per activation."""
    dim = int(spectrum["dim"].iloc[0])
    panels = list(spectrum.groupby(["activation", "depth", "sigma_b"], sort=False))
    fig, axes = panel_grid(len(panels))
    widths = sorted(spectrum["width"].unique())
    cmap = plt.get_cmap("plasma")
    colors = {m: cmap(i / max(len(widths) - 1, 1) * 0.8) for i, m in enumerate(widths)}
    for ((name, depth, sigma_b), panel), ax in zip(panels, axes.flat, strict=False):
        top = panel["grid_mu"].abs().max()
        for width, g in panel.groupby("width"):
            g = g[(g["k"] > 0) & (g["grid_mu"].abs() > 1e-11 * top)].sort_values("k")
            ax.errorbar(
                g["k"],
                g["power"],
                yerr=2 * g["power_se"],
                fmt="o",
                ms=2.5,
                lw=0.8,
                color=colors[width],
                label=f"m = {width:.0f}",
            )
        theory = panel[panel["width"] == widths[-1]]
        theory = theory[(theory["k"] > 0) & (theory["mu"].abs() > 1e-11 * top)].sort_values("k")
        ax.plot(theory["k"], theory["mu"], color="k", lw=1.1, label="μ_k (NNGP)")
        ax.plot(theory["k"], theory["grid_mu"], color="0.5", lw=1, ls="--", label="NNGP on this grid")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("degree k")
        ax.set_title(f"{name}, depth {depth:.0f}, σ_b={sigma_b:g}", fontsize=9)
        ax.grid(True, alpha=0.3)
    axes.flat[0].set_ylabel("power ‖proj_k f‖² / N(d, k)")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(
        f"power spectra of random networks on S^{dim - 1} (± 2 SE over seeds) against the NNGP", fontsize=10
    )
    plain_minor_ticks(axes)
    save_figure(fig, path)


def plot_increments(increments: pd.DataFrame, path: Path) -> None:
    """E|Δ_h^r f|² against h (log–log) for r = 1, 2, 3 at the largest width (markers ± 2 SE) and
    from the kernel (lines); a panel per activation, slopes in the legend."""
    panels = list(increments.groupby(["activation", "depth", "sigma_b"], sort=False))
    fig, axes = panel_grid(len(panels))
    cmap = plt.get_cmap("tab10")
    for ((name, depth, _), panel), ax in zip(panels, axes.flat, strict=False):
        width = panel["width"].max()
        panel = panel[panel["width"] == width]
        for i, (order, g) in enumerate(panel.groupby("order")):
            g = g.sort_values("h")
            slope = np.polyfit(np.log(g["h"]), np.log(g["increment"]), 1)[0]
            ax.errorbar(
                g["h"],
                g["increment"],
                yerr=2 * g["increment_se"],
                fmt="o",
                ms=3,
                color=cmap(i),
                label=f"r = {order:.0f}: slope {slope:.2f} (theory {g['exponent_theory'].iloc[0]:g})",
            )
            ax.plot(g["h"], g["increment_kernel"], color=cmap(i), lw=1)  # nan below round-off: not drawn
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("step h (radians)")
        ax.set_title(f"{name}, depth {depth:.0f}, m = {width:.0f}", fontsize=9)
        ax.legend(fontsize=7)
        ax.grid(True, alpha=0.3)
    axes.flat[0].set_ylabel("E|Δ_h^r f|² (lines: from the NNGP)")
    fig.suptitle("smoothness of the paths: r-th differences on the circle", fontsize=10)
    plain_minor_ticks(axes)
    save_figure(fig, path)
