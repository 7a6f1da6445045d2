"""The infinite-width NTK K∞ = (1/n)[Θ^l(x_i, x_j)] ⊗ I_{m_l}.

Two backends that must agree to float64 round-off:
- "closed_form": the arc-cosine recursion of science.md for φ(s) = a·s + b·|s|, written here;
- "neural_tangents": `stax.serial(Dense, ABRelu, …)`'s `kernel_fn(x, x, "ntk")`, imported lazily
  (see `ntksim.nt_backend`).
"""

from __future__ import annotations

import math
from typing import Literal

import jax
import jax.numpy as jnp
from jax import Array

from ntksim.activations import Activation
from ntksim.model import MLP

Backend = Literal["neural_tangents", "closed_form"]
BACKENDS: tuple[str, ...] = ("neural_tangents", "closed_form")


def family_expectations(activation: Activation, cov: Array) -> tuple[Array, Array]:
    """E[φ(u)φ(v)] and E[φ'(u)φ'(v)] for (u, v) ~ N(0, cov restricted to each pair).

    cov: (n, n) covariance Σ^k over the data → two (n, n) arrays.
    """
    q = jnp.diagonal(cov)
    norm = jnp.sqrt(q[:, None] * q[None, :])
    # A zero-variance point (x = 0 without bias) is constant 0: its correlation is immaterial.
    rho = jnp.clip(jnp.where(norm > 0, cov / jnp.where(norm > 0, norm, 1.0), 0.0), -1.0, 1.0)
    arcsin = jnp.arcsin(rho)
    a2, b2 = activation.a**2, activation.b**2
    e_phi = norm * (a2 * rho + b2 * (2 / math.pi) * (jnp.sqrt(1 - rho**2) + rho * arcsin))
    e_dphi = a2 + b2 * (2 / math.pi) * arcsin
    return e_phi, e_dphi


def closed_form_theta(
    x: Array, activation: Activation, depth: int, sigma_w: float, sigma_b: float
) -> tuple[Array, Array]:
    """(Σ^l, Θ^l) on the data by the closed-form recursion. x: (n, m_0) → two (n, n)."""
    sigma = sigma_w**2 * (x @ x.T) / x.shape[1] + sigma_b**2
    theta = sigma
    for _ in range(depth - 1):
        e_phi, e_dphi = family_expectations(activation, sigma)
        sigma = sigma_w**2 * e_phi + sigma_b**2
        theta = sigma + sigma_w**2 * e_dphi * theta
    return sigma, theta


def _closed_form(net: MLP, x: Array) -> Array:
    sigma_w, sigma_b = net.sigmas
    return closed_form_theta(x, net.activation, net.depth, sigma_w, sigma_b)[1]


def limit_theta(net: MLP, x: Array, backend: Backend = "neural_tangents") -> Array:
    """Θ^l(x_i, x_j), shape (n, n), in the default float dtype (float64 with x64 on)."""
    x = jnp.asarray(x, jax.dtypes.canonicalize_dtype(jnp.float64))
    if x.ndim != 2:
        raise ValueError(f"limit_ntk expects inputs of shape (n, in_dim), got {x.shape}")
    if backend == "closed_form":
        return _closed_form(net, x)
    if backend == "neural_tangents":
        from ntksim.nt_backend import nt_theta  # lazy: imports tensorflow, several seconds

        return nt_theta(net, x)
    raise ValueError(f"unknown limit backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def expand_outputs(theta: Array, out_dim: int) -> Array:
    """(1/n)·Θ ⊗ I_{m_l}: (n, n) → (n·m_l, n·m_l), rows (i, a) ↦ i·m_l + a."""
    return jnp.kron(theta, jnp.eye(out_dim, dtype=theta.dtype)) / theta.shape[0]


def limit_ntk(net: MLP, x: Array, backend: Backend = "neural_tangents") -> Array:
    """K∞ for `net` on x: (n, m_0) → (n·m_l, n·m_l), already divided by n."""
    return expand_outputs(limit_theta(net, x, backend), net.out_dim)
