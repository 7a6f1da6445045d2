"""Edge-of-Chaos initialization for the family φ(s) = a·s + b·|s|.

For this family E[φ(√q Z)²] = (a²+b²)·q and E[φ'(√q Z)²] = a²+b², so the variance map
q ↦ σ_b² + σ_w²(a²+b²)q has slope χ = σ_w²(a²+b²). χ = 1 with a fixed point forces σ_b = 0:
the EOC is the single point (σ_b, σ_w) = (0, 1/√(a²+b²)).
"""

from __future__ import annotations

import math

from ntksim.activations import Activation


def eoc_sigma_w(activation: Activation) -> float:
    """σ_w at the Edge of Chaos: 1/√(a²+b²) (relu: √2, abs: 1)."""
    return 1.0 / math.sqrt(activation.second_moment)


def resolve_sigmas(
    activation: Activation, sigma_w: float | None = None, sigma_b: float | None = None
) -> tuple[float, float]:
    """(σ_w, σ_b) with `None` replaced by the EOC value; validates the overrides."""
    w = eoc_sigma_w(activation) if sigma_w is None else float(sigma_w)
    b = 0.0 if sigma_b is None else float(sigma_b)
    if not (math.isfinite(w) and w > 0):
        raise ValueError(f"sigma_w must be a positive finite number, got {sigma_w}")
    if not (math.isfinite(b) and b >= 0):
        raise ValueError(f"sigma_b must be a non-negative finite number, got {sigma_b}")
    return w, b


def chi(activation: Activation, sigma_w: float) -> float:
    """Slope χ = σ_w²(a²+b²) of the variance map: < 1 ordered, 1 EOC, > 1 chaotic."""
    return sigma_w**2 * activation.second_moment
