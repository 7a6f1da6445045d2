"""Quadrature grids on the circle and the 2-sphere, and power spectra of functions sampled on them.

The power of f at degree k is p_k = ‖proj_k f‖² / N(d, k) (uniform probability measure): for a
Gaussian process with covariance κ(⟨x, x'⟩/d) its mean is the Mercer eigenvalue μ_k. On a grid with
weights w it is Σ_ij w_i w_j f_i f_j P_k(t_ij) (the addition theorem), exact for band-limited f
when the rule integrates degree 2·kmax exactly: equispaced points on S¹ (there p_k = |c_k|², the
DFT), Gauss–Legendre in cos θ times equispaced φ on S².
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np


def circle_grid(points: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Equispaced S¹ of radius √2: angles (G,), x (G, 2), weights (G,) summing to 1."""
    angles = 2 * math.pi * np.arange(points) / points
    x = math.sqrt(2) * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return angles, x, np.full(points, 1.0 / points)


def sphere_grid(degree: int) -> tuple[np.ndarray, np.ndarray]:
    """S² of radius √3, exact for polynomials of degree ≤ 2·degree + 1: (degree + 1) Gauss–Legendre
    nodes in cos θ × (2·degree + 2) equispaced φ. x (n, 3), weights (n,) summing to 1."""
    z, wz = np.polynomial.legendre.leggauss(degree + 1)
    count = 2 * degree + 2
    phi = 2 * math.pi * np.arange(count) / count
    zz, pp = np.meshgrid(z, phi, indexing="ij")
    r = np.sqrt(1 - zz**2)
    x = math.sqrt(3) * np.stack([r * np.cos(pp), r * np.sin(pp), zz], axis=-1).reshape(-1, 3)
    w = (np.repeat(wz / 2, count) / count).reshape(-1)
    return x, w


def circle_power(f: np.ndarray, kmax: int) -> np.ndarray:
    """|c_k|² of samples on the equispaced circle. f: (..., G) → (..., kmax + 1)."""
    c = np.fft.rfft(f, axis=-1) / f.shape[-1]
    return np.abs(c[..., : kmax + 1]) ** 2


def _pair_polynomials(x: np.ndarray, kmax: int) -> Iterator[np.ndarray]:
    """P_0(t), …, P_kmax(t) of the grid's pair cosines t_ij = ⟨x_i, x_j⟩/d, one (n, n) at a time
    (the recurrence of `mercer.gegenbauer`, holding two matrices instead of kmax + 1)."""
    dim = x.shape[1]
    t = np.clip(x @ x.T / dim, -1.0, 1.0)
    previous, current = np.ones_like(t), t
    yield previous
    for k in range(1, kmax + 1):
        yield current
        previous, current = current, ((2 * k + dim - 2) * t * current - k * previous) / (k + dim - 2)


def grid_power(f: np.ndarray, x: np.ndarray, w: np.ndarray, kmax: int) -> np.ndarray:
    """Σ_ij w_i w_j f_i f_j P_k(t_ij) for k ≤ kmax, any grid. f: (B, n) → (B, kmax + 1)."""
    v = f * w[None, :]
    return np.stack([np.einsum("bi,bi->b", v @ p, v) for p in _pair_polynomials(x, kmax)], axis=1)


def kernel_grid_power(kappa: np.ndarray, x: np.ndarray, w: np.ndarray, kmax: int) -> np.ndarray:
    """The mean of `grid_power` for a Gaussian process with covariance matrix kappa (n, n) on the
    grid: Σ_ij w_i w_j κ_ij P_k(t_ij), (kmax + 1,)."""
    weighted = kappa * np.outer(w, w)
    return np.array([np.sum(weighted * p) for p in _pair_polynomials(x, kmax)])
