"""The activation family φ(s) = a·s + b·|s|: its constants Δ_φ, κ_φ and its closed-form
Gaussian expectations (the arc-cosine kernels of science.md)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import overload

import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.typing import ArrayLike

PRESETS = ("relu", "abs", "linear", "leaky_relu")
_SERIES_BELOW = 0.25  # sin t − t·cos t by its Taylor series below this angle (no cancellation)
_LEAKY_PATTERN = re.compile(r"^leaky_relu\(\s*([^)]+?)\s*\)$")


def _sin_minus_t_cos(t: Array) -> Array:
    """sin t − t·cos t for t ∈ [0, π/2], accurate to the last bits also as t → 0 (≈ t³/3), where
    the difference of the two terms would cancel: Σ_k (−1)^{k+1} 2k t^{2k+1}/(2k+1)!."""
    t2 = t * t
    series = t * t2 * (1 / 3 + t2 * (-1 / 30 + t2 * (1 / 840 + t2 * (-1 / 45360 + t2 * (1 / 3991680
             + t2 * (-1 / 518918400))))))  # fmt: skip
    return jnp.where(t < _SERIES_BELOW, series, jnp.sin(t) - t * jnp.cos(t))


def arc_cosine_gap(theta: ArrayLike) -> Array:
    """1 − (2/π)(sin θ + (π/2 − θ) cos θ), the |s| part's 1 − ρ_φ at input angle θ ∈ [0, π]
    (E[|u||v|] = √(q₁q₂)(1 − gap)), computed without cancellation near θ = 0 and θ = π, where
    it vanishes like θ²/2 (resp. (π − θ)²/2): it is even about π/2, so t = min(θ, π − θ) and
    gap = (2/π)(π sin²(t/2) − (sin t − t cos t))."""
    t = jnp.minimum(theta, math.pi - theta)
    return (2 / math.pi) * (math.pi * jnp.sin(t / 2) ** 2 - _sin_minus_t_cos(t))


def pair_norm(q1: ArrayLike, q2: ArrayLike) -> Array:
    """√(q1·q2), correctly rounded as before where the product is a normal float (so ρ = 1 exactly
    on a diagonal), and √q1·√q2 where the product over- or underflows (deep in the chaotic or
    ordered phase the variances reach 1e±200)."""
    product = jnp.asarray(q1) * jnp.asarray(q2)
    tiny = jnp.finfo(product.dtype).tiny
    safe = jnp.isfinite(product) & (product >= tiny)
    return jnp.where(safe, jnp.sqrt(jnp.where(safe, product, 1.0)), jnp.sqrt(q1) * jnp.sqrt(q2))


@dataclass(frozen=True)
class Activation:
    """φ(s) = a·s + b·|s|.

    Hashable and immutable, so it can be a static field of a flax module or a jit argument.
    `name` is only a label (used in tables and plots); the numbers are `a` and `b`.
    """

    a: float
    b: float
    name: str = ""

    def __post_init__(self) -> None:
        a, b = float(self.a), float(self.b)
        if not (math.isfinite(a) and math.isfinite(b)):
            raise ValueError(f"activation coefficients must be finite, got a={a}, b={b}")
        if a == 0.0 and b == 0.0:
            raise ValueError("activation a = b = 0 is the zero function; at least one must be non-zero")
        object.__setattr__(self, "a", a)
        object.__setattr__(self, "b", b)
        if not self.name:
            object.__setattr__(self, "name", f"ab({a:g},{b:g})")

    @classmethod
    def preset(cls, name: str, alpha: float = 0.01) -> Activation:
        """relu, abs, linear, or leaky_relu with negative slope `alpha` ∈ [0, 1).

        Also accepts the spelled-out form "leaky_relu(0.1)".
        """
        match = _LEAKY_PATTERN.match(name.strip())
        if match:
            try:
                alpha = float(match.group(1))
            except ValueError:
                raise ValueError(f"leaky_relu slope must be a number, got {match.group(1)!r}") from None
            name = "leaky_relu"
        if name == "relu":
            return cls(0.5, 0.5, "relu")
        if name == "abs":
            return cls(0.0, 1.0, "abs")
        if name == "linear":
            return cls(1.0, 0.0, "linear")
        if name == "leaky_relu":
            if not 0.0 <= alpha < 1.0:
                raise ValueError(f"leaky_relu slope alpha must lie in [0, 1), got {alpha}")
            return cls((1 + alpha) / 2, (1 - alpha) / 2, f"leaky_relu({alpha:g})")
        raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(PRESETS)} or give a and b")

    @property
    def delta(self) -> float:
        """Δ_φ = b² / (a² + b²): 0 for linear, 1 for abs."""
        return self.b**2 / (self.a**2 + self.b**2)

    @property
    def kappa(self) -> float:
        """κ_φ = (|a| + |b|) / √(a² + b²)."""
        return (abs(self.a) + abs(self.b)) / math.sqrt(self.a**2 + self.b**2)

    @property
    def second_moment(self) -> float:
        """a² + b² = E[φ(Z)²] = E[φ'(Z)²] for Z ~ N(0, 1)."""
        return self.a**2 + self.b**2

    @property
    def slopes(self) -> tuple[float, float]:
        """(left, right) slopes at 0, i.e. the arguments of neural-tangents' `stax.ABRelu`."""
        return self.a - self.b, self.a + self.b

    def __call__(self, s: Array) -> Array:
        """φ applied elementwise; any shape."""
        return self.a * s + self.b * jnp.abs(s)

    def derivative(self, s: Array) -> Array:
        """φ'(s) = a + b·sign(s) elementwise (the value at exactly 0 is a, a null set)."""
        return self.a + self.b * jnp.sign(s)

    # --- the interface every activation has (see ntksim.activations.Elementwise) --------------
    @property
    def kinks(self) -> tuple[float, ...]:
        """Where φ or φ' is not smooth: 0 unless φ is linear."""
        return (0.0,) if self.b != 0.0 else ()

    @property
    def degree(self) -> int | None:
        """1 for the linear member (a polynomial), None otherwise."""
        return 1 if self.b == 0.0 else None

    @property
    def is_polynomial(self) -> bool:
        return self.degree is not None

    @property
    def parity(self) -> str | None:
        """'odd' (b = 0), 'even' (a = 0) or None."""
        return "odd" if self.b == 0.0 else "even" if self.a == 0.0 else None

    @property
    def params(self) -> dict[str, float]:
        return {"a": self.a, "b": self.b}

    def expectations(self, q1: ArrayLike, q2: ArrayLike, c: ArrayLike) -> tuple[Array, Array]:
        """Closed forms of E[φ(u)φ(v)] and E[φ'(u)φ'(v)], (u, v) ~ N(0, [[q1, c], [c, q2]]).

        Arrays of one shape (broadcast); a zero variance gives φ(0) = 0 and ρ := 0.
        """
        norm = pair_norm(q1, q2)
        # A zero-variance point (x = 0 without bias) is constant 0: its correlation is immaterial.
        rho = jnp.clip(jnp.where(norm > 0, c / jnp.where(norm > 0, norm, 1.0), 0.0), -1.0, 1.0)
        arcsin = jnp.arcsin(rho)
        a2, b2 = self.a**2, self.b**2
        e_phi = norm * (a2 * rho + b2 * (2 / math.pi) * (jnp.sqrt(1 - rho**2) + rho * arcsin))
        e_dphi = a2 + b2 * (2 / math.pi) * arcsin
        return e_phi, e_dphi

    @overload
    def angular(self, q1: ArrayLike, q2: ArrayLike, theta: Array) -> tuple[Array, Array, Array, Array]: ...
    @overload
    def angular(
        self, q1: ArrayLike, q2: ArrayLike, theta: np.ndarray
    ) -> tuple[Array, np.ndarray, Array, Array]: ...
    def angular(
        self, q1: ArrayLike, q2: ArrayLike, theta: Array | np.ndarray
    ) -> tuple[Array, Array | np.ndarray, Array, Array]:
        """The closed forms in terms of the pair's angle θ = arccos ρ ∈ [0, π] (exact, where ρ
        would lose 1 − ρ below its last bit): (E[φ(u)φ(v)], E[φ'(u)φ'(v)], 1 − ρ_φ, 1 + ρ_φ),
        ρ_φ the correlation of φ(u) and φ(v). Arrays of one (broadcast) shape (E[φ'φ'] a NumPy
        array when θ is one, the rest JAX arrays).

        E[φφ] = √(q₁q₂)(a² cos θ + b²(1 − g)), E[φ'φ'] = a² + b²(1 − 2θ/π), g = arc_cosine_gap(θ);
        1 ∓ ρ_φ = (2a² sin²(θ/2) + b² g)/(a² + b²), resp. (2a² cos²(θ/2) + b²(2 − g))/(a² + b²)."""
        a2, b2 = self.a**2, self.b**2
        gap = arc_cosine_gap(theta)
        e_phi = pair_norm(q1, q2) * (a2 * jnp.cos(theta) + b2 * (1 - gap))
        e_dphi = a2 + b2 * (1 - (2 / math.pi) * theta)
        minus = (2 * a2 * jnp.sin(theta / 2) ** 2 + b2 * gap) / (a2 + b2)
        plus = (2 * a2 * jnp.cos(theta / 2) ** 2 + b2 * (2 - gap)) / (a2 + b2)
        return e_phi, e_dphi, minus, plus
