"""Figures from a results table: err_op vs m per depth, and the theory prefactor plot."""

from __future__ import annotations

import io
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ntksim.fit import fit_rate
from ntksim.engine.store import atomic_write


def theory_prefactor(delta: float, kappa: float, out_dim: int, depth: int) -> float:
    """(Δ_φ^{-2} + √m_l·l)·κ_φ², the bound's shape (its constant is unknown); inf when Δ = 0."""
    if delta == 0.0:
        return math.inf
    return (delta**-2 + math.sqrt(out_dim) * depth) * kappa**2


def _activation_colors(results: pd.DataFrame) -> dict[str, tuple]:
    names = list(dict.fromkeys(results["activation"]))
    cmap = plt.get_cmap("tab10")
    return {name: cmap(i % 10) for i, name in enumerate(names)}


def _save(fig: plt.Figure, path: Path) -> None:
    """PNG written atomically: two runs finishing together never leave a torn figure."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=150)
    plt.close(fig)
    atomic_write(path, buffer.getvalue())


def plot_concentration(results: pd.DataFrame, depth: int, out_dim: int, path: Path) -> None:
    """err_op vs m (log2–log2): median over seeds, 10–90% band, fitted slope, m^{-1/2} guide."""
    colors = _activation_colors(results)
    subset = results[(results["depth"] == depth) & (results["out_dim"] == out_dim)]
    fig, ax = plt.subplots(figsize=(5.5, 4.2), constrained_layout=True)
    anchor = None
    for name, group in subset.groupby("activation", sort=False):
        stats = group.groupby("width")["err_op"]
        widths = np.array(sorted(group["width"].unique()), dtype=float)
        med = stats.median().loc[widths].to_numpy()
        lo = stats.quantile(0.1).loc[widths].to_numpy()
        hi = stats.quantile(0.9).loc[widths].to_numpy()
        fit = fit_rate(widths, [stats.get_group(w).to_numpy() for w in widths])
        label = f"{name}: slope {fit.slope:.2f} [{fit.low:.2f}, {fit.high:.2f}]"
        ax.plot(widths, med, "o-", color=colors[name], label=label, lw=1.6, ms=4)
        ax.fill_between(widths, lo, hi, color=colors[name], alpha=0.2, lw=0)
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
    _save(fig, path)


def plot_theory(results: pd.DataFrame, path: Path) -> bool:
    """Median err_op at each curve's largest m against (Δ^{-2} + √m_l·l)κ²; one point per curve.

    Only the family has the bound (a, b given, Δ > 0): without such a curve nothing is drawn and
    False is returned (e.g. a run of linear φ only, or of tanh)."""
    colors = _activation_colors(results)
    markers = "osD^v<>ph*"
    depths = sorted(results["depth"].unique())
    fig, ax = plt.subplots(figsize=(5.5, 4.2), constrained_layout=True)
    skipped = []
    points = []
    for (name, a, b, depth, out_dim), group in results.groupby(
        ["activation", "a", "b", "depth", "out_dim"], sort=False
    ):
        m_max = group["width"].max()
        err = float(group[group["width"] == m_max]["err_op"].median())
        second = a * a + b * b
        prefactor = theory_prefactor(b * b / second, (abs(a) + abs(b)) / math.sqrt(second), out_dim, depth)
        if not math.isfinite(prefactor):
            skipped.append(name)
            continue
        ax.scatter(
            prefactor, err, color=colors[name], marker=markers[depths.index(depth) % len(markers)], s=36
        )
        points.append((prefactor, err))
    if not points:
        plt.close(fig)
        return False
    if points:
        # error ∝ prefactor through the points' geometric mean: the bound's shape, constant unknown
        px, py = np.array(points).T
        scale = np.exp(np.mean(np.log(py) - np.log(px)))
        grid = np.geomspace(px.min(), px.max(), 20) if px.min() < px.max() else px
        ax.plot(grid, scale * grid, "k--", lw=1, label="∝ prefactor")
    for name in colors:
        if name not in skipped:
            ax.scatter([], [], color=colors[name], label=name)
    for i, depth in enumerate(depths):
        ax.scatter([], [], color="gray", marker=markers[i % len(markers)], label=f"depth {depth}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.set_xlabel(r"theory prefactor $(\Delta_\varphi^{-2} + \sqrt{m_l}\,l)\,\kappa_\varphi^2$")
    ax.set_ylabel(r"median $\|K - K_\infty\|_2$ at largest m")
    note = f"  (omitted, Δ=0: {', '.join(sorted(set(skipped)))})" if skipped else ""
    ax.set_title("bound shape vs measured error" + note, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)
    return True


def plot_all(results: pd.DataFrame, figures_dir: Path) -> list[Path]:
    """Every figure of a run into figures_dir; returns their paths."""
    figures_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    out_dims = sorted(results["out_dim"].unique())
    for depth in sorted(results["depth"].unique()):
        for out_dim in out_dims:
            suffix = "" if len(out_dims) == 1 else f"_out{out_dim}"
            path = figures_dir / f"err_op_depth{depth}{suffix}.png"
            plot_concentration(results, int(depth), int(out_dim), path)
            paths.append(path)
    path = figures_dir / "theory_prefactor.png"
    if plot_theory(results, path):
        paths.append(path)
    return paths


def plot_phase_diagram(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path) -> None:
    """EOC curves σ_w(σ_b) on the (σ_b, σ_w) plane; below a curve χ < 1 (ordered), above χ > 1
    (chaotic), each for its own activation. curves: name → (σ_b values, σ_w values; NaN where
    there is no EOC point)."""
    fig, ax = plt.subplots(figsize=(5.5, 4.2), constrained_layout=True)
    cmap = plt.get_cmap("tab10")
    top = 0.0
    for i, (name, (sigma_b, sigma_w)) in enumerate(curves.items()):
        ax.plot(sigma_b, sigma_w, "-", color=cmap(i % 10), lw=1.8, label=name)
        if np.isfinite(sigma_w).any():
            top = max(top, float(np.nanmax(sigma_w)))
    ax.set_ylim(0, 1.35 * top if top else 1)
    ax.set_xlim(left=0)
    ax.text(0.97, 0.05, "ordered  (χ < 1, below its curve)", transform=ax.transAxes, ha="right", fontsize=8)
    ax.text(0.97, 0.92, "chaotic  (χ > 1, above its curve)", transform=ax.transAxes, ha="right", fontsize=8)
    ax.set_xlabel(r"$\sigma_b$")
    ax.set_ylabel(r"$\sigma_w$ on the Edge of Chaos ($\chi = 1$)")
    ax.set_title("Edge-of-Chaos curves (gaps: no EOC point at that $\\sigma_b$)", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="center right")
    _save(fig, path)
