"""Figures of the training study: loss curves of network, linearisation and limit; drift and
distance to the limit against the width; drift against training time."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.artist import Artist

from ntksim.analysis.figures import panel_grid, save_figure
from ntksim.analysis.fit import fit_rate

CURVE = [
    "activation",
    "depth",
    "sigma_b",
    "optimizer",
]  # a panel of the loss figures, a line of the width one


def _panels(table: pd.DataFrame) -> list[tuple[tuple, pd.DataFrame]]:
    return list(table.groupby(CURVE, sort=False))


def _figure_legend(fig: plt.Figure, axes: np.ndarray) -> None:
    """One legend beside the panels for the entries they share (inside a panel it hid curves)."""
    entries: dict[str, Artist] = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    if entries:
        fig.legend(list(entries.values()), list(entries), loc="outside right upper", fontsize=8)


BANDS_UP_TO = 4  # curves in a panel beyond which the 10–90% bands would only overlap into a blur


def _median_curve(g: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray]:
    stats = g.groupby("step")[column].median()
    return stats.index.to_numpy(float), stats.to_numpy(float)


def plot_losses(table: pd.DataFrame, path: Path) -> bool:
    """Test loss (solid) and train loss (dashed) against the step at the largest width: network
    (colour), linearisation (grey) and limit (black); a panel per (activation, depth, optimizer)."""
    panels = _panels(table)
    if not panels:
        return False
    fig, axes = panel_grid(len(panels), width=4.4)
    for ((name, depth, sigma_b, optimizer), g), ax in zip(panels, axes.flat, strict=False):
        width = g["width"].max()
        g = g[(g["width"] == width) & (g["step"] > 0)]
        for column, color, label in (
            ("", "C0", "network"),
            ("lin_", "0.55", "linearised"),
            ("limit_", "k", "limit"),
        ):
            for split, ls in (("test", "-"), ("train", "--")):
                steps, values = _median_curve(g, f"{column}{split}_loss")
                if np.all(np.isnan(values)):
                    continue
                ax.plot(steps, values, ls=ls, color=color, lw=1.3, label=f"{label} ({split})")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("step t")
        ax.set_title(f"{name}, depth {depth}, σ_b = {sigma_b:g}, m = {width}\n{optimizer}", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
    axes.flat[0].set_ylabel("MSE loss (median over seeds)")
    _figure_legend(fig, axes)
    fig.suptitle("training: network against its linearisation and the infinite-width limit", fontsize=10)
    save_figure(fig, path)
    return True


def _fit_row(fits: pd.DataFrame | None, key: tuple) -> pd.Series | None:
    """A curve's row of the run's fits.csv where exactly one matches (the numbers summary.md
    prints), else None (no fits given, or a table whose curves share a key)."""
    if fits is None:
        return None
    match = np.logical_and.reduce([fits[k] == v for k, v in zip(CURVE, key, strict=True)])
    return fits[match].iloc[0] if match.sum() == 1 else None


def _lin_diverged(row: pd.Series | None, median: np.ndarray) -> bool:
    """Whether a curve's linearisation diverged: summary.md's criterion (its train loss 1e3× its
    start, `diverged_widths`) where the fits say, else a median ‖f − f^lin‖ that is not finite
    or above 1e3."""
    if row is not None and isinstance(row["lin_diverged"], str) and row["lin_diverged"]:
        return True
    return not np.all(np.isfinite(median) & (median < 1e3))


def plot_against_width(table: pd.DataFrame, path: Path, fits: pd.DataFrame | None = None) -> bool:
    """At the last step: NTK drift, ‖f − f^∞‖ and ‖f − f^lin‖ against m (log–log), median over seeds
    with a 10–90% band and the fitted slope (from `fits`, the study's fits.csv, where given); a
    colour per (activation, optimizer)."""
    last = table[table["step"] == table["step"].max()]
    if last["width"].nunique() < 2:
        return False
    columns = [c for c in ("drift", "diff_limit", "diff_lin") if last[c].notna().any()]
    titles = {
        "drift": "NTK drift ‖K(θ_t) − K(θ_0)‖₂/‖K(θ_0)‖₂",
        "diff_limit": "test ‖f_t − f_t^∞‖ (rms)",
        "diff_lin": "test ‖f_t − f_t^lin‖ (rms)",
    }
    curves = list(last.groupby(CURVE, sort=False))
    fig, axes = panel_grid(len(columns), width=4.8, height=3.4 + 0.14 * (len(curves) + 1))
    colors = {key: plt.get_cmap("tab10")(i % 10) for i, (key, _) in enumerate(curves)}
    for column, ax in zip(columns, axes.flat, strict=False):
        for key, g in curves:
            stats = g.groupby("width")[column]
            widths = np.array(sorted(g["width"].unique()), float)
            med = stats.median().loc[widths].to_numpy()
            if np.all(np.isnan(med)):
                continue
            row = _fit_row(fits, key)
            if column == "diff_lin" and _lin_diverged(row, med):
                # a diverged linearisation (learning rate beyond its kernel's bound) would flatten the rest
                ax.plot([], [], " ", label=f"{key[0]} {key[3]}: linearisation diverges (not drawn)")
                continue
            if row is not None:
                slope = float(row[f"{column}_slope"])
            else:
                slope = fit_rate(widths, [stats.get_group(w).dropna().to_numpy() for w in widths]).slope
            slope_label = f"{slope:.2f}" if np.isfinite(slope) else "—"
            label = f"{key[0]} l={key[1]} σ_b={key[2]:g} {key[3]}: slope {slope_label}"
            ax.plot(widths, med, "o-", color=colors[key], lw=1.4, ms=4, label=label)
            if len(curves) <= BANDS_UP_TO:
                ax.fill_between(
                    widths,
                    stats.quantile(0.1).loc[widths],
                    stats.quantile(0.9).loc[widths],
                    color=colors[key],
                    alpha=0.15,
                    lw=0,
                )
        guide = np.array(sorted(last["width"].unique()), float)
        top = last.groupby("width")[column].median().max()
        ax.plot(guide, top * (guide / guide[0]) ** -0.5, "k--", lw=1, label="∝ m^(−1/2)")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("width m")
        ax.set_title(titles[column], fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        # below the panel, not over its curves: each panel's slopes are its own
        ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False)
    bands = "median, 10–90% band" if len(curves) <= BANDS_UP_TO else "median over seeds"
    fig.suptitle(
        f"at step {int(last['step'].max())}: distance from the kernel regime against width ({bands})",
        fontsize=10,
    )
    save_figure(fig, path)
    return True


def plot_drift_in_time(table: pd.DataFrame, path: Path) -> bool:
    """NTK drift against the step, a line per width (median over seeds); a panel per setting."""
    data = table[(table["step"] > 0) & table["drift"].notna()]
    panels = _panels(data)
    if not panels:
        return False
    fig, axes = panel_grid(len(panels), width=4.4)
    for ((name, depth, sigma_b, optimizer), g), ax in zip(panels, axes.flat, strict=False):
        widths = sorted(g["width"].unique())
        cmap = plt.get_cmap("viridis")
        for i, width in enumerate(widths):
            steps, values = _median_curve(g[g["width"] == width], "drift")
            ax.plot(
                steps, values, color=cmap(0.85 * i / max(len(widths) - 1, 1)), lw=1.3, label=f"m = {width}"
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("step t")
        ax.set_title(f"{name}, depth {depth}, σ_b = {sigma_b:g}\n{optimizer}", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
    axes.flat[0].set_ylabel("NTK drift (median over seeds)")
    _figure_legend(fig, axes)
    fig.suptitle("NTK drift during training", fontsize=10)
    save_figure(fig, path)
    return True
