"""The (σ_b, σ_w) phase diagram of EOC curves (`ntksim eoc`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt
import numpy as np

from ntksim.analysis.figures import save_figure


def plot_phase_diagram(curves: Mapping[str, tuple[np.ndarray, ...]], path: Path) -> None:
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
