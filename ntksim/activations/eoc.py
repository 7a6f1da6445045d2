"""The Edge of Chaos of any activation (science.md, "Edge of Chaos" and "Beyond the family").

Variance map V(q) = σ_b² + σ_w² E[φ(√q Z)²] with fixed point q*; χ = σ_w² E[φ'(√q* Z)²]
(< 1 ordered, > 1 chaotic, = 1 the EOC); correlation depth ξ_c = −1/ln χ.

For the family φ(s) = a·s + b·|s|, E[φ(√q Z)²] = (a²+b²)q and E[φ'²] = a²+b², so χ = σ_w²(a²+b²)
whatever q, and the EOC is the single point σ_b = 0, σ_w = 1/√(a²+b²) (every q is then fixed).

For any other φ, χ = 1 at a fixed point q means σ_w² = 1/E[φ'(√q Z)²] and
    F(q) := q − E[φ(√q Z)²] / E[φ'(√q Z)²] = σ_b²,
so each σ_b gives q* as a root of F − σ_b² (bracketed on a logarithmic grid, then Brent's
method) and σ_w from q*. A root is an EOC point only if the network's variance settles there:
the variance map's slope V'(q*) = σ_w² dE[φ(√q Z)²]/dq must be ≤ 1 (Schoenholz et al. 2017;
Hayou et al. 2019). Where χ = 1 holds only at unstable fixed points (GELU below σ_b ≈ 0.42,
SiLU below ≈ 0.78: slopes up to 1.1), iterating V runs away from q* and the network is not at
the EOC; `eoc` says so (NoEOCPoint) unless asked for the point anyway (`allow_unstable`). Where
F − σ_b² has no root there is no EOC point either (GELU at σ_b = 0, softplus). Among several
stable roots the smallest q* is taken (the one iterating V from small variances reaches first).
At σ_b = 0 a φ with φ(0) = 0 whose variance map decays into 0 (tanh, erf, sin, ELU) has its EOC
at q* = 0, σ_w = 1/|φ'(0)| (for a kink at 0, φ'(0)² is the mean of the squared one-sided slopes).

Expectations follow JAX's default dtype: float64 with x64 on (the CLI sets it), else float32.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np

from ntksim.activations.family import Activation
from ntksim.activations.gaussian import second_moments

Q_GRID = np.logspace(-8, 4, 241)  # where roots of F(q) − σ_b² and V(q) − q are bracketed
Q_TEST = np.array([1e-3])  # "near 0" for the sign of V(q) − q when φ(0) = 0 and σ_b = 0
SLOPE_TOLERANCE = 1e-9  # V'(q*) = 1 up to this counts as stable (marginal: the family, q* = 0)


class NoEOCPoint(ValueError):
    """No (σ_w, q*) with χ = 1 exists for this activation and σ_b."""


@dataclass(frozen=True)
class EOCPoint:
    """A point of the Edge of Chaos: χ = 1 at the fixed point q* of the variance map.

    q_star is nan for the family, whose variance map is the identity there (every q is fixed).
    variance_slope is V'(q*) (≤ 1: the variance settles at q*; 1 for the family and at q* = 0;
    > 1 only for a point asked for with `allow_unstable`)."""

    sigma_w: float
    sigma_b: float
    q_star: float
    variance_slope: float = 1.0

    @property
    def stable(self) -> bool:
        """Whether the variance map converges to q* (V'(q*) ≤ 1, up to round-off)."""
        return self.variance_slope <= 1.0 + SLOPE_TOLERANCE


def _moments(activation: Any, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    e_phi2, e_dphi2 = second_moments(activation, np.asarray(q, np.float64))
    return np.asarray(e_phi2, np.float64), np.asarray(e_dphi2, np.float64)


def _roots(fn: Any, grid: np.ndarray) -> list[float]:
    """Roots of a scalar function bracketed between consecutive grid points (vectorised fn)."""
    values = fn(grid)
    roots = []
    for i in np.flatnonzero(np.sign(values[:-1]) * np.sign(values[1:]) <= 0):
        lo, hi = grid[i], grid[i + 1]
        if values[i] == 0:
            roots.append(float(lo))
            continue
        from scipy.optimize import brentq  # lazy: scipy.optimize costs ~0.3 s to import

        roots.append(brentq(lambda q: float(fn(np.array([q]))[0]), lo, hi, xtol=1e-300, rtol=1e-15))
    return sorted(set(roots))


def eoc(activation: Any, sigma_b: float = 0.0, allow_unstable: bool = False) -> EOCPoint:
    """The EOC point (σ_w, σ_b, q*) of `activation` at bias scale `sigma_b` ≥ 0: χ = 1 at a fixed
    point q* of the variance map that is stable (V'(q*) ≤ 1).

    NoEOCPoint (one line, naming the activation and σ_b) where none exists, also where χ = 1
    holds only at an unstable fixed point (then `allow_unstable=True` returns that point, with
    its slope > 1 in `variance_slope`)."""
    # Cached per activation, σ_b and precision (the integrals follow JAX's x64 flag). Computed
    # eagerly even when asked from inside a jit trace (an MLP's default σ_w is read there).
    with jax.ensure_compile_time_eval():
        return _eoc(activation, float(sigma_b), bool(jax.config.jax_enable_x64), bool(allow_unstable))  # type: ignore[attr-defined]


@functools.lru_cache(maxsize=1024)
def _eoc(activation: Any, sigma_b: float, x64: bool, allow_unstable: bool) -> EOCPoint:
    if not (math.isfinite(sigma_b) and sigma_b >= 0):
        raise ValueError(f"sigma_b must be a non-negative number, got {sigma_b}")
    name = getattr(activation, "name", "activation")
    if isinstance(activation, Activation):
        if sigma_b != 0.0:
            raise NoEOCPoint(f"{name} has no Edge-of-Chaos point at sigma_b={sigma_b:g}: the family "
                             "a·s + b·|s| has χ = 1 only at sigma_b = 0")  # fmt: skip
        return EOCPoint(1.0 / math.sqrt(activation.second_moment), 0.0, math.nan)

    if sigma_b == 0.0 and _vanishes_at_zero(activation):
        slope2 = _slope2_at_zero(activation)
        # q* = 0 is an EOC point when the variance decays into it: V(q) ≤ q near 0 at σ_w² = 1/slope2.
        if slope2 != 0.0 and _moments(activation, Q_TEST)[0][0] / slope2 <= Q_TEST[0]:
            return EOCPoint(1.0 / math.sqrt(slope2), 0.0, 0.0)

    if sigma_b > math.sqrt(Q_GRID[-1]):  # q* = σ_b² + E[φ²]/E[φ'²] ≥ σ_b²: beyond the grid
        top = Q_GRID[-1]
        raise NoEOCPoint(f"{name}: sigma_b={sigma_b:g} is beyond the EOC search (q* ≥ σ_b², and q is "
                         f"searched up to {top:g}, i.e. sigma_b ≤ {math.sqrt(top):g})")  # fmt: skip
    grid = Q_GRID[Q_GRID >= Q_TEST[0]] if sigma_b == 0.0 else Q_GRID  # q → 0 is the case above
    roots = [q for q in _roots(lambda q: _f(activation, q) - sigma_b**2, grid) if q > 0]
    if not roots:
        raise NoEOCPoint(f"{name} has no Edge-of-Chaos point at sigma_b={sigma_b:g} (no variance q with "
                         f"χ = 1 at a fixed point for q in [{Q_GRID[0]:g}, {Q_GRID[-1]:g}])")  # fmt: skip
    points = []
    for q_star in roots:
        _, e_dphi2 = _moments(activation, np.array([q_star]))
        sigma_w = float(1.0 / math.sqrt(e_dphi2[0]))
        points.append(EOCPoint(sigma_w, sigma_b, float(q_star), _variance_slope(activation, sigma_w, q_star)))
    stable = [p for p in points if p.stable]
    if stable:
        return stable[0]
    if allow_unstable:
        return points[0]
    first = points[0]
    raise NoEOCPoint(
        f"{name} has no stable Edge-of-Chaos point at sigma_b={sigma_b:g}: χ = 1 at q* = {first.q_star:.6g} "
        f"(σ_w = {first.sigma_w:.6g}), but the variance map's slope there is {first.variance_slope:.4g} > 1, "
        "so the variance runs away from q* (try a larger sigma_b)"
    )


def _variance_slope(activation: Any, sigma_w: float, q: float) -> float:
    """V'(q) = σ_w² dE[φ(√q Z)²]/dq by a central difference (the expectation is smooth in q > 0
    also for a kinked φ; relative step eps^(1/3), which balances truncation and round-off:
    ~1e-10 in float64, ~1e-5 in float32)."""
    eps = float(np.finfo(jax.dtypes.canonicalize_dtype(np.float64)).eps)  # the expectations' dtype
    h = eps ** (1 / 3) * q
    e_phi2, _ = _moments(activation, np.array([q - h, q + h]))
    return float(sigma_w**2 * (e_phi2[1] - e_phi2[0]) / (2 * h))


def _f(activation: Any, q: np.ndarray) -> np.ndarray:
    """F(q) = q − E[φ(√q Z)²]/E[φ'(√q Z)²]."""
    e_phi2, e_dphi2 = _moments(activation, q)
    return q - e_phi2 / e_dphi2


def eoc_curve(activation: Any, sigma_bs: Any, allow_unstable: bool = False) -> list[EOCPoint | None]:
    """EOC points for each σ_b; None where the activation has no EOC point at that σ_b (with
    `allow_unstable`, unstable points are returned too: see `EOCPoint.stable`)."""
    out: list[EOCPoint | None] = []
    for sigma_b in np.atleast_1d(np.asarray(sigma_bs, np.float64)):
        try:
            out.append(eoc(activation, float(sigma_b), allow_unstable))
        except NoEOCPoint:
            out.append(None)
    return out


def _at_zero(fn: Any) -> float:
    return float(np.asarray(fn(np.zeros(1)))[0])


def _slope2_at_zero(activation: Any) -> float:
    """lim_{q→0} E[φ'(√q Z)²] = the mean of the squared one-sided slopes at 0 (φ'(0)² where φ is
    smooth; (λ² + λ²α²)/2 for SELU, whose φ' jumps there)."""
    side = np.array([1e-30, -1e-30])
    slopes = np.asarray(activation.derivative(side), np.float64)
    return float(np.mean(slopes**2))


def _vanishes_at_zero(activation: Any) -> bool:
    return _at_zero(activation) == 0.0


def fixed_point(activation: Any, sigma_w: float, sigma_b: float = 0.0) -> float:
    """The stable fixed point q* of V(q) = σ_b² + σ_w² E[φ(√q Z)²] that the variance reaches from
    below: the first q where V(q) − q turns from ≥ 0 to < 0 (q* = 0 when σ_b = 0, φ(0) = 0 and
    V(q) < q near 0). ValueError if there is none (the variance grows without bound)."""
    if isinstance(activation, Activation):
        raise ValueError("the family's variance map is linear: q* is fixed only on the EOC (any q)")
    name = getattr(activation, "name", "activation")

    def excess(q: np.ndarray) -> np.ndarray:
        return sigma_b**2 + sigma_w**2 * _moments(activation, q)[0] - q

    if sigma_b == 0.0 and _vanishes_at_zero(activation):
        if excess(Q_TEST)[0] < 0:
            return 0.0
        grid = Q_GRID[Q_GRID >= Q_TEST[0]]
    else:
        grid = Q_GRID
    values = excess(grid)
    for i in np.flatnonzero((values[:-1] >= 0) & (values[1:] < 0)):
        from scipy.optimize import brentq  # lazy, as in _roots

        return float(
            brentq(lambda q: float(excess(np.array([q]))[0]), grid[i], grid[i + 1], xtol=1e-300, rtol=1e-15)
        )
    raise ValueError(f"{name} at sigma_w={sigma_w:g}, sigma_b={sigma_b:g}: the variance map has no "
                     f"stable fixed point up to q = {grid[-1]:g} (the variance diverges)")  # fmt: skip


def chi(activation: Any, sigma_w: float, sigma_b: float = 0.0, q: float | None = None) -> float:
    """χ = σ_w² E[φ'(√q Z)²] at q (default: the stable fixed point q* of the variance map):
    < 1 ordered, 1 EOC, > 1 chaotic. For the family χ = σ_w²(a²+b²) at every q."""
    if isinstance(activation, Activation):
        return sigma_w**2 * activation.second_moment
    with jax.ensure_compile_time_eval():
        return _chi(activation, sigma_w, sigma_b, q)


def _chi(activation: Any, sigma_w: float, sigma_b: float, q: float | None) -> float:
    q = fixed_point(activation, sigma_w, sigma_b) if q is None else float(q)
    if q == 0.0:
        return sigma_w**2 * _slope2_at_zero(activation)
    return float(sigma_w**2 * _moments(activation, np.array([q]))[1][0])


def correlation_depth(activation: Any, sigma_w: float, sigma_b: float = 0.0) -> float:
    """ξ_c = −1/ln χ (infinite on the EOC)."""
    value = chi(activation, sigma_w, sigma_b)
    return math.inf if value == 1.0 else -1.0 / math.log(value)


def eoc_sigma_w(activation: Any, sigma_b: float = 0.0) -> float:
    """σ_w with χ = 1 at `sigma_b`: the EOC's σ_w for any φ; for the family 1/√(a²+b²) (relu √2,
    abs 1) at every σ_b, since its χ does not depend on q (with σ_b > 0 there is no fixed point:
    the variance grows by σ_b² per layer)."""
    if isinstance(activation, Activation):
        return 1.0 / math.sqrt(activation.second_moment)
    return eoc(activation, sigma_b).sigma_w


def resolve_sigmas(
    activation: Any, sigma_w: float | None = None, sigma_b: float | None = None
) -> tuple[float, float]:
    """(σ_w, σ_b) with None replaced: σ_b = 0 (no bias parameters) for every φ, σ_w = the value
    with χ = 1 at that σ_b (`eoc_sigma_w`). Validates the overrides; NoEOCPoint if σ_w is left
    to the EOC and φ has none at that σ_b."""
    b = 0.0 if sigma_b is None else float(sigma_b)
    if not (math.isfinite(b) and b >= 0):
        raise ValueError(f"sigma_b must be a non-negative finite number, got {sigma_b}")
    w = eoc_sigma_w(activation, b) if sigma_w is None else float(sigma_w)
    if not (math.isfinite(w) and w > 0):
        raise ValueError(f"sigma_w must be a positive finite number, got {sigma_w}")
    return w, b
