"""Kernels of inputs with equal variances as functions of one variable.

When every point has the same variance q (inputs of equal norm, e.g. on the sphere), E[φ(u)φ(v)]
and E[φ'(u)φ'(v)] depend on the pair only through ρ, or α = arccos ρ ∈ [0, π]. In the polar form
of `gaussian.expect_2d` the angle α only moves the sector boundaries and rotates one factor, so
for kinks at 0 (or none) both expectations are analytic in α on the closed interval [0, π]: a
Chebyshev interpolant in α converges exponentially, also at ρ = ±1, where functions of ρ have
square-root singularities.

The interpolant is built from exact quadrature values at Chebyshev points and accepted only
when it reproduces the quadrature at the points of the next, twice finer set to within
`TOLERANCE` of the kernel's scale (doubling up to `MAX_NODES`); otherwise every pair is
integrated directly. So n(n−1)/2 two-dimensional integrals become a few hundred, without giving
up the quadrature's accuracy.
"""

from __future__ import annotations

import math
from typing import Any

import jax.numpy as jnp
import numpy as np
from jax import Array

from ntksim.activations.gaussian import angular_expectations, expectations

EQUAL_VARIANCE_MIN_N = 24  # below this many points, integrating each pair is as cheap
TOLERANCE = 2e-14  # accepted interpolation error, relative to max |kernel| over [0, π]
FIRST_NODES = 33
MAX_NODES = 513


def _chebyshev_angles(count: int) -> np.ndarray:
    """Chebyshev points of the second kind mapped to α ∈ [0, π] (endpoints included, nested)."""
    return (math.pi / 2) * (1 - np.cos(np.pi * np.arange(count) / (count - 1)))


def _barycentric(nodes: Array, values: Array, points: Array) -> Array:
    """Barycentric interpolation through Chebyshev points of the second kind (Berrut–Trefethen).

    nodes: (N,), values: (N,) or (N, K) (K functions at once), points: (P,) → (P,) or (P, K)."""
    count = nodes.shape[0]
    weights = jnp.asarray((-1.0) ** np.arange(count) * np.r_[0.5, np.ones(count - 2), 0.5], values.dtype)
    diff = points[:, None] - nodes[None, :]
    exact = diff == 0
    safe = jnp.where(exact, 1.0, diff)
    terms = weights[None, :] / safe
    per_point = (-1,) + (1,) * (values.ndim - 1)  # (P,) against (P,) or (P, K)
    approx = (terms @ values) / jnp.sum(terms, axis=1).reshape(per_point)
    hit = jnp.any(exact, axis=1).reshape(per_point)
    at_node = values[jnp.argmax(exact, axis=1)]
    return jnp.where(hit, at_node, approx)


def _values(activation: Any, q: float, angles: np.ndarray) -> tuple[Array, Array]:
    """Both expectations at the angles; cos is exact (±1) at α = 0 and π."""
    rho = np.cos(angles)
    rho[angles == 0.0] = 1.0
    rho[angles == math.pi] = -1.0
    qs = jnp.full(rho.shape, q)
    return expectations(activation, qs, qs, q * jnp.asarray(rho))


def _interleave(coarse: Array, new: Array) -> Array:
    """[c0, n0, c1, n1, …, c_last]: values at nested Chebyshev points."""
    out = jnp.zeros(coarse.shape[0] + new.shape[0], coarse.dtype)
    return out.at[0::2].set(coarse).at[1::2].set(new)


def equal_variance_expectations(activation: Any, q: float, cov: Array) -> tuple[Array, Array]:
    """(E[φ(u)φ(v)], E[φ'(u)φ'(v)]) for pairs of variance q and covariances `cov` (any shape)."""
    alpha = jnp.arccos(jnp.clip(cov / q, -1.0, 1.0))
    return equal_variance_at_angles(activation, q, alpha)


def equal_variance_at_angles(activation: Any, q: float, alpha: Array) -> tuple[Array, Array]:
    """The same for pairs given by their angles α = arccos ρ ∈ [0, π] (any shape)."""
    shape = alpha.shape
    if any(k != 0.0 for k in activation.kinks):  # a kink off 0 breaks analyticity in α
        return _direct(activation, q, alpha)
    alpha = alpha.reshape(-1)
    dtype = jnp.asarray(alpha).dtype
    tolerance = max(TOLERANCE, 50 * float(jnp.finfo(dtype).eps))  # float32 without x64
    count = FIRST_NODES
    angles = _chebyshev_angles(count)
    values: tuple[Array, ...] = _values(activation, q, angles)
    while count <= MAX_NODES:
        finer = _chebyshev_angles(2 * count - 1)
        # The points are nested: the finer set is the coarse one with a new point in each gap.
        new = _values(activation, q, finer[1::2])
        finer_values = tuple(_interleave(old, add) for old, add in zip(values, new, strict=True))
        nodes = jnp.asarray(angles)
        error = max(
            float(jnp.max(jnp.abs(_barycentric(nodes, coarse, jnp.asarray(finer[1::2])) - fine[1::2])))
            / max(float(jnp.max(jnp.abs(fine))), 1e-300)
            for coarse, fine in zip(values, finer_values, strict=True)
        )
        angles, values, count = finer, finer_values, 2 * count - 1
        if error < tolerance:
            nodes = jnp.asarray(angles)
            e_phi, e_dphi = (_barycentric(nodes, v, alpha).reshape(shape) for v in values)
            return e_phi, e_dphi
    return _direct(activation, q, alpha.reshape(shape))


def _direct(activation: Any, q: float, alpha: Array) -> tuple[Array, Array]:
    """Every pair integrated (no interpolant)."""
    qs = jnp.full(alpha.shape, q, jnp.asarray(alpha).dtype)
    e_phi, e_dphi, _, _ = angular_expectations(activation, qs, qs, alpha)
    return e_phi, e_dphi
