"""What the first-order theory says about the concentration constants (experiments/fluctuations.md).

Theory only (`ntksim.finite_width`, no Monte Carlo), on configs/quick.yaml's inputs (32 points on
the sphere in R^8, seed 0), NTK at the EOC without bias, one output:
1. the family φ = a·s + b·|s| from linear (Δ = 0) through leaky ReLU and ReLU to abs (Δ = 1):
   C = √m·√E‖K − K∞‖²_F at depth 3, m_k = k²m, beside the seed's prefactor (Δ^{-2} + √m_l·l)κ²;
2. the ratio relu/abs of C at depths 2–6;
3. depth: E‖K − K∞‖²_F / ‖K∞‖²_F · m for constant widths and for m_k = k²m, with β·m = Σ m/m_k.

    .venv/bin/python scripts/fluctuation_theory.py
"""

from __future__ import annotations

import math

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402

import ntksim  # noqa: E402
from ntksim.kernels.finite_width import finite_width  # noqa: E402
from ntksim.nets.widths import hidden_widths  # noqa: E402

X = np.asarray(ntksim.sphere(jax.random.PRNGKey(0), 32, 8), np.float64)


def constant(act: ntksim.Activation, depth: int, schedule: str = "quadratic") -> tuple[float, float]:
    """(C = √m·err_fro predicted at m = 1 coefficients, ‖K∞‖_F)."""
    fw = finite_width(ntksim.MLP(act, depth=depth, width=1, schedule=schedule), X)
    return math.sqrt(fw.at(hidden_widths(depth, 1, schedule)).expected_fro_sq), float(
        np.linalg.norm(fw.limit) / X.shape[0]
    )


def main() -> None:
    print("## 1. The family at depth 3, m_k = k²m\n")
    print("| φ | Δ_φ | κ_φ | C = √m·err_fro (theory) | C / ‖K∞‖_F | seed prefactor (Δ⁻² + l)κ² |")
    print("|---|---|---|---|---|---|")
    for alpha in (1.0, 0.5, 0.2, 0.0, -0.2, -0.5, -1.0):
        a, b = (1 + alpha) / 2, (1 - alpha) / 2
        act = ntksim.Activation(a, b, f"leaky({alpha:g})")
        delta, kappa = act.delta, act.kappa
        c, norm = constant(act, 3)
        prefactor = (delta**-2 + 3) * kappa**2 if delta > 0 else math.inf
        row = f"| a={a:g}, b={b:g} | {delta:.3f} | {kappa:.3f} | {c:.4g} | {c / norm:.4g} | {prefactor:.4g} |"
        print(row)
    print("\n## 2. relu / abs\n")
    print("| depth | C relu | C abs | ratio | prefactor ratio |")
    print("|---|---|---|---|---|")
    relu, absolute = ntksim.activation("relu"), ntksim.activation("abs")
    for depth in (2, 3, 4, 5, 6):
        cr, ca = constant(relu, depth)[0], constant(absolute, depth)[0]
        pr = (relu.delta**-2 + depth) * relu.kappa**2 / ((absolute.delta**-2 + depth) * absolute.kappa**2)
        print(f"| {depth} | {cr:.4g} | {ca:.4g} | {cr / ca:.3f} | {pr:.3f} |")
    print("\n## 3. Depth: m·E‖K − K∞‖²_F / ‖K∞‖²_F\n")
    print("| depth | β·m constant | relu constant | abs constant | β·m k²m | relu k²m | abs k²m |")
    print("|---|---|---|---|---|---|---|")
    for depth in (2, 3, 4, 6, 8, 12, 16):
        cells = []
        for schedule in ("constant", "quadratic"):
            beta_m = sum(1 / w for w in hidden_widths(depth, 1, schedule))
            cells.append(f"{beta_m:.3f}")
            for act in (relu, absolute):
                c, norm = constant(act, depth, schedule)
                cells.append(f"{(c / norm) ** 2:.4g}")
        print(f"| {depth} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
