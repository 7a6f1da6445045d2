"""The infinite-width NTK K∞ = (1/n)[Θ^l(x_i, x_j)] ⊗ I_{m_l}.

Two backends that must agree to float64 round-off:
- "closed_form" (the default): the arc-cosine recursion of science.md for φ(s) = a·s + b·|s|,
  written here; works on every JAX;
- "neural_tangents": `stax.serial(Dense, ABRelu, …)`'s `kernel_fn(x, x, "ntk")`, imported lazily
  (see `ntksim.nt_backend`). Only the reference profile has it: neural-tangents 0.6.5 imports
  with jax <= 0.5.3 only.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import math
from typing import Literal

import jax
import jax.numpy as jnp
from jax import Array

from ntksim.activations import Activation
from ntksim.model import MLP

Backend = Literal["neural_tangents", "closed_form"]
BACKENDS: tuple[str, ...] = ("neural_tangents", "closed_form")

# The newest JAX that neural-tangents 0.6.5 imports with.
NT_MAX_JAX = (0, 5, 3)
REFERENCE_HINT = (
    "it needs the reference profile (jax 0.5.3 + neural-tangents 0.6.5): `make install-reference` "
    "and use .venv-reference, or `pip install -c constraints-reference.txt -e '.[reference]'`; "
    "backend 'closed_form' gives the same numbers here"
)


class BackendUnavailable(RuntimeError):
    """A limit backend that this installation cannot provide."""


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".")[:3] if part.isdigit())


def backend_version(backend: Backend) -> str:
    """The released version of the code behind a backend: ntksim's own, or neural-tangents'."""
    package = "neural-tangents" if backend == "neural_tangents" else "ntksim"
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def neural_tangents_available() -> bool:
    """Whether the neural_tangents backend can work here, decided without importing it (its import
    costs seconds): neural-tangents is installed and JAX is not newer than it supports."""
    if importlib.util.find_spec("neural_tangents") is None:
        return False
    return _version_tuple(importlib.metadata.version("jax")) <= NT_MAX_JAX


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


def limit_theta(net: MLP, x: Array, backend: Backend = "closed_form") -> Array:
    """Θ^l(x_i, x_j), shape (n, n), in the default float dtype (float64 with x64 on)."""
    x = jnp.asarray(x, jax.dtypes.canonicalize_dtype(jnp.float64))
    if x.ndim != 2:
        raise ValueError(f"limit_ntk expects inputs of shape (n, in_dim), got {x.shape}")
    if backend == "closed_form":
        return _closed_form(net, x)
    if backend == "neural_tangents":
        if not neural_tangents_available():
            raise BackendUnavailable(
                f"limit backend 'neural_tangents' is not available here: {REFERENCE_HINT}"
            )
        from ntksim.nt_backend import nt_theta  # lazy: imports tensorflow, several seconds

        return nt_theta(net, x)
    raise ValueError(f"unknown limit backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def expand_outputs(theta: Array, out_dim: int) -> Array:
    """(1/n)·Θ ⊗ I_{m_l}: (n, n) → (n·m_l, n·m_l), rows (i, a) ↦ i·m_l + a."""
    return jnp.kron(theta, jnp.eye(out_dim, dtype=theta.dtype)) / theta.shape[0]


def limit_ntk(net: MLP, x: Array, backend: Backend = "closed_form") -> Array:
    """K∞ for `net` on x: (n, m_0) → (n·m_l, n·m_l), already divided by n."""
    return expand_outputs(limit_theta(net, x, backend), net.out_dim)
