"""The infinite-width NTK K∞ = (1/n)[Θ^l(x_i, x_j)] ⊗ I_{m_l} and NNGP (1/n)[Σ^l] ⊗ I_{m_l}.

Backends that must agree to float64 round-off:
- "closed_form": the arc-cosine recursion of science.md for φ(s) = a·s + b·|s|;
- "quadrature": the same recursion for any φ, with the Gaussian expectations computed by the
  kink-split quadrature of `ntksim.activations.gaussian`;
- "neural_tangents": neural-tangents' `kernel_fn` of the equivalent `stax.serial` network (its
  closed forms where it has them, `ElementwiseNumerical` otherwise), imported lazily (see
  `ntksim.nt_backend`). Only the reference profile has it: neural-tangents 0.6.5 imports with
  jax <= 0.5.3 only.
"auto" (the default) is closed_form for the family and quadrature for any other φ.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from collections.abc import Callable
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from ntksim.activations import Activation, AnyActivation
from ntksim.activations.gaussian import expectations, second_moments
from ntksim.activations.interpolate import EQUAL_VARIANCE_MIN_N, equal_variance_expectations
from ntksim.model import MLP

Backend = Literal["auto", "closed_form", "quadrature", "neural_tangents"]
BACKENDS: tuple[str, ...] = ("auto", "closed_form", "quadrature", "neural_tangents")
Kernel = Literal["ntk", "nngp"]
KERNELS: tuple[str, ...] = ("ntk", "nngp")

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


def backend_version(backend: str) -> str:
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

    cov: (n, n) covariance Σ^k over the data → two (n, n) arrays (the family's closed forms).
    """
    q = jnp.diagonal(cov)
    return activation.expectations(q[:, None], q[None, :], cov)


def quadrature_expectations(
    activation: AnyActivation, cov: Array, interpolate: bool = True
) -> tuple[Array, Array]:
    """The same for any activation by kink-split quadrature: each unordered pair once, and the
    diagonal by 1-D integrals (ρ = 1 exactly there, not ⟨x,x⟩/‖x‖², whose round-off √(1−ρ²)
    would amplify to ~1e-8).

    When every diagonal entry is equal (inputs of equal norm), the off-diagonal is a function
    of ρ alone and is interpolated from exact values (`equal_variance_expectations`), unless
    `interpolate` is False (every pair integrated: what a λ_min near 0 needs, since the
    interpolant's 2e-14 relative error would sit above the floating-point floor)."""
    n = cov.shape[0]
    q = jnp.diagonal(cov)
    rows, cols = jnp.triu_indices(n, k=1)
    # "Equal" up to round-off: points on a sphere differ in ‖x‖² by an ulp or two, which moves
    # the kernel by as little (the interpolant is evaluated at each pair's own ρ).
    spread = float(jnp.max(jnp.abs(q - q[0])))
    if (
        interpolate
        and n > EQUAL_VARIANCE_MIN_N
        and float(q[0]) > 0
        and spread <= 64 * jnp.finfo(q.dtype).eps * float(q[0])
    ):
        rho = cov[rows, cols] / jnp.sqrt(q[rows] * q[cols])
        e_phi_off, e_dphi_off = equal_variance_expectations(activation, float(q[0]), float(q[0]) * rho)
    else:
        e_phi_off, e_dphi_off = expectations(activation, q[rows], q[cols], cov[rows, cols])
    e_phi_diag, e_dphi_diag = second_moments(activation, q)
    e_phi = jnp.zeros_like(cov).at[rows, cols].set(e_phi_off)
    e_dphi = jnp.zeros_like(cov).at[rows, cols].set(e_dphi_off)
    e_phi = e_phi + e_phi.T + jnp.diag(e_phi_diag)
    e_dphi = e_dphi + e_dphi.T + jnp.diag(e_dphi_diag)
    return e_phi, e_dphi


def kernel_recursion(
    x: Array,
    activation: AnyActivation,
    depth: int,
    sigma_w: float,
    sigma_b: float,
    pair_expectations: Callable[[AnyActivation, Array], tuple[Array, Array]],
) -> tuple[Array, Array]:
    """(Σ^l, Θ^l) on the data by the limit recursion of science.md. x: (n, m_0) → two (n, n)."""
    sigma = sigma_w**2 * (x @ x.T) / x.shape[1] + sigma_b**2
    theta = sigma
    for _ in range(depth - 1):
        e_phi, e_dphi = pair_expectations(activation, sigma)
        sigma = sigma_w**2 * e_phi + sigma_b**2
        theta = sigma + sigma_w**2 * e_dphi * theta
    return sigma, theta


def closed_form_theta(
    x: Array, activation: Activation, depth: int, sigma_w: float, sigma_b: float
) -> tuple[Array, Array]:
    """(Σ^l, Θ^l) on the data by the closed-form recursion. x: (n, m_0) → two (n, n)."""
    return kernel_recursion(x, activation, depth, sigma_w, sigma_b, family_expectations)


def resolve_backend(activation: AnyActivation, backend: Backend) -> str:
    """The backend that computes a limit: "auto" is the family's closed form, quadrature for any
    other φ. ValueError for an unknown name or closed_form of a non-family φ."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown limit backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return "closed_form" if isinstance(activation, Activation) else "quadrature"
    if backend == "closed_form" and not isinstance(activation, Activation):
        raise ValueError(f"limit backend 'closed_form' is the family's arc-cosine recursion; "
                         f"{activation.name} needs 'quadrature' (or 'auto')")  # fmt: skip
    return backend


def limit_kernels(net: MLP, x: Array, backend: Backend = "auto", deg: int = 25) -> tuple[Array, Array]:
    """(Σ^l, Θ^l)(x_i, x_j), each (n, n), in the default float dtype (float64 with x64 on).

    deg: Gauss–Hermite nodes per axis of neural-tangents' ElementwiseNumerical (its backend only,
    for φ it has no closed form for)."""
    x = jnp.asarray(x, jax.dtypes.canonicalize_dtype(jnp.float64))
    if x.ndim != 2:
        raise ValueError(f"limit_ntk expects inputs of shape (n, in_dim), got {x.shape}")
    backend = resolve_backend(net.activation, backend)
    sigma_w, sigma_b = net.sigmas
    if backend == "neural_tangents":
        if not neural_tangents_available():
            raise BackendUnavailable(f"limit backend 'neural_tangents' is not installed: {REFERENCE_HINT}")
        from ntksim.nt_backend import nt_kernels  # lazy: imports tensorflow, several seconds

        return nt_kernels(net, x, deg)
    expect = family_expectations if backend == "closed_form" else quadrature_expectations
    return kernel_recursion(x, net.activation, net.depth, sigma_w, sigma_b, expect)


def limit_theta(net: MLP, x: Array, backend: Backend = "auto", deg: int = 25) -> Array:
    """Θ^l(x_i, x_j), shape (n, n)."""
    return limit_kernels(net, x, backend, deg)[1]


def expand_outputs(theta: Array, out_dim: int) -> Array:
    """(1/n)·Θ ⊗ I_{m_l}: (n, n) → (n·m_l, n·m_l), rows (i, a) ↦ i·m_l + a."""
    return jnp.kron(theta, jnp.eye(out_dim, dtype=theta.dtype)) / theta.shape[0]


def limit_ntk(net: MLP, x: Array, backend: Backend = "auto", deg: int = 25) -> Array:
    """K∞ for `net` on x: (n, m_0) → (n·m_l, n·m_l), already divided by n (deg: see limit_kernels)."""
    return expand_outputs(limit_theta(net, x, backend, deg), net.out_dim)


def limit_nngp(net: MLP, x: Array, backend: Backend = "auto", deg: int = 25) -> Array:
    """The NNGP limit (1/n)·Σ^l ⊗ I_{m_l}: (n, m_0) → (n·m_l, n·m_l), already divided by n."""
    return expand_outputs(limit_kernels(net, x, backend, deg)[0], net.out_dim)


def limit_kernel(net: MLP, x: Array, kernel: Kernel = "ntk", backend: Backend = "auto") -> Array:
    """limit_ntk or limit_nngp by name."""
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; choose one of {', '.join(KERNELS)}")
    return (limit_ntk if kernel == "ntk" else limit_nngp)(net, x, backend)


def pair_recursion(
    activation: AnyActivation,
    sigma_w: float,
    sigma_b: float,
    g11: Array,
    g22: Array,
    g12: Array,
    max_depth: int,
) -> dict[str, np.ndarray]:
    """Σ^l and Θ^l of P input pairs (x, x') along depth l = 1 … max_depth, in float64.

    g11, g22, g12: (P,) input Gram entries ⟨x,x⟩/m_0, ⟨x',x'⟩/m_0, ⟨x,x'⟩/m_0.
    Returns (max_depth, P) arrays "s11", "s22", "s12" (Σ^l) and "t11", "t22", "t12" (Θ^l); row
    l − 1 is depth l. The diagonal uses 1-D integrals (ρ = 1 exactly) and the family its closed
    forms. Once a value overflows (chaotic phase) the rest of that pair is NaN.
    """
    family = isinstance(activation, Activation)
    g11, g22, g12 = (np.asarray(g, np.float64) for g in (g11, g22, g12))
    s = [sigma_w**2 * g + sigma_b**2 for g in (g11, g22, g12)]
    t = list(s)
    out = {k: np.full((max_depth, len(g11)), np.nan) for k in ("s11", "s22", "s12", "t11", "t22", "t12")}
    with jax.ensure_compile_time_eval():
        for layer in range(max_depth):
            for key, value in zip(("s11", "s22", "s12", "t11", "t22", "t12"), (*s, *t), strict=True):
                out[key][layer] = value
            if layer == max_depth - 1 or not all(np.all(np.isfinite(v)) for v in (*s, *t)):
                break
            q1, q2, c = s
            if family:
                e11, d11 = activation.second_moment * q1, np.full_like(q1, activation.second_moment)
                e22, d22 = activation.second_moment * q2, np.full_like(q2, activation.second_moment)
                e12, d12 = (np.asarray(v, np.float64) for v in activation.expectations(q1, q2, c))
            else:
                (e11, e22), (d11, d22) = (
                    np.asarray(v, np.float64).reshape(2, -1)
                    for v in second_moments(activation, np.concatenate([q1, q2]))
                )
                e12, d12 = (np.asarray(v, np.float64) for v in expectations(activation, q1, q2, c))
            with np.errstate(over="ignore", invalid="ignore"):
                s = [sigma_w**2 * e + sigma_b**2 for e in (e11, e22, e12)]
                t = [s[i] + sigma_w**2 * d * t[i] for i, d in enumerate((d11, d22, d12))]
    return out
