"""How the first-order theory's error shrinks with width: |measured − predicted| against m.

40 000 float64 draws of ntksim's structured eNTK per width (m = 16 … 128, constant widths,
depth 4) on x_0 and partners at cosines 0.5 and −1, for relu, tanh and GELU (σ_b = 0.5): the
variance of K(x_0, x_0), K(x_0, x_1) and K(x_0, x_2) measured (± standard error) against
`ntksim.finite_width`. First order is exact up to O(1/m²), so |measured − predicted| should fall
like m^{-2} (a slope of −2 on log–log axes) while the variances fall like m^{-1}.

    .venv/bin/python scripts/finite_width_convergence.py   (~6 minutes on a 2-core CPU)
    .venv/bin/python scripts/finite_width_convergence.py --replot   (the figure from the CSV)
→ experiments/figures/fluctuations_convergence.{csv,png} and a Markdown table on stdout.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import ntksim  # noqa: E402
from ntksim.kernels.finite_width import finite_width  # noqa: E402
from ntksim.nets.empirical import empirical_ntk_seeds  # noqa: E402
from ntksim.studies.fluctuations import inputs  # noqa: E402

NETS = [("relu", None), ("tanh", None), ("gelu", 0.5)]
WIDTHS = (16, 32, 64, 128)
SEEDS, DEPTH = 40_000, 4
OUT = Path("experiments/figures/fluctuations_convergence.png")
DATA = OUT.with_suffix(".csv")


def measure() -> list[tuple]:
    """(φ, m, j, measured Var, its se, predicted Var) for the entries K(x_0, x_j), j = 0, 1, 2."""
    x = inputs([0.5, -1.0], None, 3)
    rows = []
    for name, sigma_b in NETS:
        for width in WIDTHS:
            net = ntksim.MLP(
                name, depth=DEPTH, width=width, schedule="constant", sigma_b=sigma_b, dtype=jnp.float64
            )
            theory = finite_width(net, x)
            keys = jax.random.split(jax.random.PRNGKey(7), SEEDS)
            k = np.asarray(empirical_ntk_seeds(net, keys, jnp.asarray(x)))
            e = k - theory.limit / x.shape[0]
            var = e.var(0)
            se = np.sqrt(np.maximum(((e - e.mean(0)) ** 4).mean(0) - var**2, 0) / SEEDS)
            for j in range(3):
                rows.append((name, width, j, var[0, j], se[0, j], theory.variance[0, j]))
    DATA.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=["activation", "width", "j", "var", "se_var", "pred_var"]).to_csv(
        DATA, index=False
    )
    return rows


def main() -> None:
    replot = "--replot" in sys.argv[1:]
    rows = list(pd.read_csv(DATA).itertuples(index=False, name=None)) if replot else measure()
    print("| φ | m | entry | Var measured | Var predicted | measured − predicted | z |")
    print("|---|---|---|---|---|---|---|")
    for name, width, j, v, s, p in rows:
        entry = f"K(x_0, x_{j})"
        z = (v - p) / s
        print(f"| {name} | {width} | {entry} | {v:.5g} ± {s:.2g} | {p:.5g} | {v - p:+.3g} | {z:+.1f} |")
    fig, axes = plt.subplots(1, len(NETS), figsize=(4.2 * len(NETS), 4.4), layout="constrained")
    for ax, (name, sigma_b) in zip(axes, NETS, strict=True):
        for j, colour in zip(range(3), ("C0", "C1", "C2"), strict=True):
            pts = [(w, v, s, p) for n, w, jj, v, s, p in rows if n == name and jj == j]
            m = np.array([p[0] for p in pts], float)
            diff = np.array([abs(p[1] - p[3]) for p in pts])
            err = np.array([p[2] for p in pts])
            pred = np.array([p[3] for p in pts])
            cos = ("1", "0.5", "−1")[j]
            ax.errorbar(m, diff, yerr=err, fmt="o-", color=colour, ms=4, label=f"|Δ Var|, cos {cos}")
            ax.plot(m, pred, ":", color=colour, lw=1, label=f"Var (first order), cos {cos}")
            slope = np.polyfit(np.log(m), np.log(np.maximum(diff, 1e-300)), 1)[0]
            label = f"cos {cos}: slope {slope:.2f}"
            ax.text(0.03, 0.05 + 0.07 * j, label, transform=ax.transAxes, fontsize=7, color=colour, zorder=5)
        anchor = max(abs(p[3] - p[5]) for p in rows if p[0] == name and p[1] == WIDTHS[0])
        ax.plot(
            WIDTHS, anchor * (np.array(WIDTHS) / WIDTHS[0]) ** -2.0, "k--", lw=1, label=r"$\propto m^{-2}$"
        )
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        bias = "" if sigma_b is None else f", σ_b = {sigma_b:g}"
        ax.set_title(f"{name}{bias}, depth {DEPTH}, constant widths, {SEEDS // 1000}k draws", fontsize=9)
        ax.set_xlabel("width m")
        ax.set_ylabel("|measured − predicted| Var K (±1 se)")
        ax.grid(True, which="both", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=4, fontsize=7)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT, dpi=150)
    print(f"\nwrote {OUT}; slopes of |Δ| near −2 mean the remainder is O(1/m²) "
          f"({math.log2(WIDTHS[-1] / WIDTHS[0]):.0f} octaves of m)")  # fmt: skip


if __name__ == "__main__":
    main()
