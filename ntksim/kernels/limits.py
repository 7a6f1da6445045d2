"""The infinite-width NTK K∞ = (1/n)[Θ^l(x_i, x_j)] ⊗ I_{m_l} and NNGP (1/n)[Σ^l] ⊗ I_{m_l}.

Backends that must agree to float64 round-off:
- "closed_form": the arc-cosine recursion of science.md for φ(s) = a·s + b·|s|;
- "quadrature": the same recursion for any φ, with the Gaussian expectations computed by the
  kink-split quadrature of `ntksim.activations.gaussian`;
- "neural_tangents": neural-tangents' `kernel_fn` of the equivalent `stax.serial` network (its
  closed forms where it has them, `ElementwiseNumerical` otherwise), imported lazily (see
  `ntksim.kernels.nt_backend`). Only the reference profile has it: neural-tangents 0.6.5 imports with
  jax <= 0.5.3 only.
"auto" (the default) is closed_form for the family and quadrature for any other φ.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from collections.abc import Callable
from typing import Literal, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
import numpy.typing as npt
from jax import Array
from jax.typing import ArrayLike

from ntksim.activations import Activation, AnyActivation
from ntksim.activations.family import pair_norm
from ntksim.activations.gaussian import angular_expectations, second_moments
from ntksim.activations.interpolate import EQUAL_VARIANCE_MIN_N, equal_variance_at_angles
from ntksim.nets.model import MLP

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


PairMoments = tuple[Array, Array, Array, Array]
ActivationT = TypeVar("ActivationT", bound=AnyActivation)  # what a `pair_moments` function takes
NEAR_PARALLEL = 0.9  # |cos| above which an angle is recomputed without arccos's amplification


def input_angles(x: Array, sigma_w: float, sigma_b: float) -> Array:
    """Angles arccos ρ¹_ij ∈ [0, π] of the first layer's pre-activations, (n, m_0) → (n, n).

    ρ¹ is the cosine of the augmented inputs X_i = (σ_w x_i/√m_0, σ_b). arccos of a cosine near
    ±1 turns its round-off into √eps; those pairs (|ρ| > 0.9, when x is concrete) take
    2·atan2(‖X̂_i − X̂_j‖, ‖X̂_i + X̂_j‖) instead (Kahan), accurate to the last bits."""
    dtype = x.dtype
    aug = jnp.concatenate([sigma_w * x / np.sqrt(x.shape[1]), jnp.full((x.shape[0], 1), sigma_b, dtype)], 1)
    norm = jnp.linalg.norm(aug, axis=1, keepdims=True)
    unit = aug / jnp.where(norm > 0, norm, 1.0)
    cos = jnp.clip(unit @ unit.T, -1.0, 1.0)
    angle = jnp.arccos(cos)
    if isinstance(x, jax.core.Tracer):  # under a trace: no data-dependent refinement
        return angle.at[jnp.diag_indices(x.shape[0])].set(0.0)
    rows, cols = np.nonzero(np.triu(np.abs(np.asarray(cos)) > NEAR_PARALLEL, 1))
    unit_np = np.asarray(unit)
    exact = np.empty(rows.shape, np.asarray(angle).dtype)
    for lo in range(0, len(rows), 4096):  # chunks bound the (pairs, m_0) differences
        i, j = rows[lo : lo + 4096], cols[lo : lo + 4096]
        minus = np.linalg.norm(unit_np[i] - unit_np[j], axis=1)
        plus = np.linalg.norm(unit_np[i] + unit_np[j], axis=1)
        exact[lo : lo + 4096] = 2 * np.arctan2(minus, plus)
    angle = angle.at[rows, cols].set(exact).at[cols, rows].set(exact)
    return angle.at[jnp.diag_indices(x.shape[0])].set(0.0)


def next_angle(
    m1: ArrayLike, m2: ArrayLike, minus: ArrayLike, plus: ArrayLike, sigma_w: float, sigma_b: float
) -> Array:
    """A pair's next-layer angle from this layer's φ statistics, without forming ρ (broadcast).

    m1, m2: E[φ(u)²], E[φ(v)²]; minus, plus: 1 ∓ ρ_φ → the angle of Σ' = σ_w² E[φφ] + σ_b².
    With P = σ_w²√(m1 m2), Q_i = σ_w² m_i + σ_b², N = √(Q1 Q2): N ∓ Σ'₁₂ = e + P(1 ∓ ρ_φ)
    (+ 2σ_b² for +), e = N − P − σ_b² = σ_b²(√(σ_w²m1) − √(σ_w²m2))²/(N + P + σ_b²) ≥ 0, and
    tan(α/2) = √((N − Σ')/(N + Σ')): every term non-negative, so nothing cancels near ρ = ±1."""
    w2, b2 = sigma_w**2, sigma_b**2
    s1, s2 = jnp.sqrt(w2 * m1), jnp.sqrt(w2 * m2)
    product = s1 * s2
    big_n = pair_norm(w2 * m1 + b2, w2 * m2 + b2)
    denominator = big_n + product + b2
    extra = b2 * (s1 - s2) ** 2 / jnp.where(denominator > 0, denominator, 1.0)
    return 2 * jnp.arctan2(jnp.sqrt(extra + product * minus), jnp.sqrt(extra + product * plus + 2 * b2))


def next_angles(m: Array, minus: Array, plus: Array, sigma_w: float, sigma_b: float) -> Array:
    """`next_angle` of every pair: m (n,), minus, plus (n, n) → (n, n), 0 on the diagonal."""
    angle = next_angle(m[:, None], m[None, :], minus, plus, sigma_w, sigma_b)
    return angle.at[jnp.diag_indices(m.shape[0])].set(0.0)


def family_moments(activation: Activation, q: Array, angle: Array) -> PairMoments:
    """`Activation.angular` on every pair: q (n,) variances, angle (n, n) → four (n, n); the
    diagonal exact (E[φ²] = (a² + b²)q, ρ_φ = 1)."""
    e_phi, e_dphi, minus, plus = activation.angular(q[:, None], q[None, :], angle)
    diag = jnp.diag_indices(q.shape[0])
    e_phi = e_phi.at[diag].set(activation.second_moment * q)
    e_dphi = e_dphi.at[diag].set(activation.second_moment)
    return e_phi, e_dphi, minus.at[diag].set(0.0), plus.at[diag].set(2.0)


def quadrature_moments(
    activation: AnyActivation, q: Array, angle: Array, interpolate: bool = True
) -> PairMoments:
    """The same for any activation by kink-split quadrature: each unordered pair once, and the
    diagonal by 1-D integrals.

    When every diagonal entry is equal (inputs of equal norm), E[φφ] and E[φ'φ'] off the diagonal
    are functions of the angle alone and are interpolated from exact values
    (`equal_variance_at_angles`), unless `interpolate` is False (every pair integrated: what a
    λ_min near 0 needs, since the interpolant's 2e-14 relative error would sit above the
    floating-point floor); 1 ∓ ρ_φ is then 1 ∓ E[φφ]/E[φ²] except where |ρ_φ| > 0.9, whose pairs
    are integrated (the difference would lose 1 ∓ ρ_φ's digits)."""
    n = q.shape[0]
    rows, cols = jnp.triu_indices(n, k=1)
    # "Equal" up to round-off: points on a sphere differ in ‖x‖² by an ulp or two, which moves
    # the kernel by as little.
    spread = float(jnp.max(jnp.abs(q - q[0])))
    e_phi_diag, e_dphi_diag = second_moments(activation, q)
    if (
        interpolate
        and n > EQUAL_VARIANCE_MIN_N
        and float(q[0]) > 0
        and spread <= 64 * jnp.finfo(q.dtype).eps * float(q[0])
    ):
        pair_angle = angle[rows, cols]
        e_phi_off, e_dphi_off = equal_variance_at_angles(activation, float(q[0]), pair_angle)
        rho_phi = e_phi_off / jnp.sqrt(e_phi_diag[rows] * e_phi_diag[cols])
        minus_off, plus_off = 1 - rho_phi, 1 + rho_phi
        near = np.nonzero(np.abs(np.asarray(rho_phi)) > NEAR_PARALLEL)[0]
        if len(near):
            exact = angular_expectations(activation, q[rows[near]], q[cols[near]], pair_angle[near])
            minus_off, plus_off = minus_off.at[near].set(exact[2]), plus_off.at[near].set(exact[3])
    else:
        e_phi_off, e_dphi_off, minus_off, plus_off = angular_expectations(
            activation, q[rows], q[cols], angle[rows, cols]
        )
    zeros = jnp.zeros((n, n), q.dtype)

    def symmetric(off: Array, diag: Array) -> Array:
        upper = zeros.at[rows, cols].set(off)
        return upper + upper.T + jnp.diag(diag)

    return (
        symmetric(e_phi_off, e_phi_diag),
        symmetric(e_dphi_off, e_dphi_diag),
        symmetric(minus_off, jnp.zeros(n, q.dtype)),
        symmetric(plus_off, jnp.full(n, 2.0, q.dtype)),
    )


def kernel_recursion(
    x: Array,
    activation: ActivationT,
    depth: int,
    sigma_w: float,
    sigma_b: float,
    pair_moments: Callable[[ActivationT, Array, Array], PairMoments],
) -> tuple[Array, Array]:
    """(Σ^l, Θ^l) on the data by the limit recursion of science.md. x: (n, m_0) → two (n, n).

    Each pair is carried by its angle α = arccos ρ, not by ρ: near ρ = ±1 (x' ≈ ±x, or the
    second layer of an even φ on {x, −x}) the kernels depend on √(1 − ρ²), and ρ's round-off
    would become √eps there."""
    sigma = sigma_w**2 * (x @ x.T) / x.shape[1] + sigma_b**2
    theta = sigma
    q = jnp.diagonal(sigma)
    angle = input_angles(x, sigma_w, sigma_b)
    for _ in range(depth - 1):
        e_phi, e_dphi, minus, plus = pair_moments(activation, q, angle)
        sigma = sigma_w**2 * e_phi + sigma_b**2
        theta = sigma + sigma_w**2 * e_dphi * theta
        angle = next_angles(jnp.diagonal(e_phi), minus, plus, sigma_w, sigma_b)
        q = jnp.diagonal(sigma)
    return sigma, theta


def closed_form_theta(
    x: Array, activation: Activation, depth: int, sigma_w: float, sigma_b: float
) -> tuple[Array, Array]:
    """(Σ^l, Θ^l) on the data by the closed-form recursion. x: (n, m_0) → two (n, n)."""
    return kernel_recursion(x, activation, depth, sigma_w, sigma_b, family_moments)


def resolve_backend(activation: AnyActivation, backend: str) -> str:
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


def limit_kernels(net: MLP, x: ArrayLike, backend: str = "auto", deg: int = 25) -> tuple[Array, Array]:
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
        from ntksim.kernels.nt_backend import nt_kernels  # lazy: imports tensorflow, several seconds

        return nt_kernels(net, x, deg)
    activation = net.activation
    if backend == "closed_form":
        assert isinstance(activation, Activation)  # resolve_backend gives closed_form to the family only
        return kernel_recursion(x, activation, net.depth, sigma_w, sigma_b, family_moments)
    return kernel_recursion(x, activation, net.depth, sigma_w, sigma_b, quadrature_moments)


def limit_theta(net: MLP, x: ArrayLike, backend: str = "auto", deg: int = 25) -> Array:
    """Θ^l(x_i, x_j), shape (n, n)."""
    return limit_kernels(net, x, backend, deg)[1]


def expand_outputs(theta: Array, out_dim: int) -> Array:
    """(1/n)·Θ ⊗ I_{m_l}: (n, n) → (n·m_l, n·m_l), rows (i, a) ↦ i·m_l + a."""
    return jnp.kron(theta, jnp.eye(out_dim, dtype=theta.dtype)) / theta.shape[0]


def limit_ntk(net: MLP, x: ArrayLike, backend: str = "auto", deg: int = 25) -> Array:
    """K∞ for `net` on x: (n, m_0) → (n·m_l, n·m_l), already divided by n (deg: see limit_kernels)."""
    return expand_outputs(limit_theta(net, x, backend, deg), net.out_dim)


def limit_nngp(net: MLP, x: ArrayLike, backend: str = "auto", deg: int = 25) -> Array:
    """The NNGP limit (1/n)·Σ^l ⊗ I_{m_l}: (n, m_0) → (n·m_l, n·m_l), already divided by n."""
    return expand_outputs(limit_kernels(net, x, backend, deg)[0], net.out_dim)


def limit_kernel(net: MLP, x: ArrayLike, kernel: str = "ntk", backend: str = "auto") -> Array:
    """limit_ntk or limit_nngp by name."""
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; choose one of {', '.join(KERNELS)}")
    return (limit_ntk if kernel == "ntk" else limit_nngp)(net, x, backend)


def pair_recursion(
    activation: AnyActivation,
    sigma_w: float,
    sigma_b: float,
    g11: npt.ArrayLike,
    g22: npt.ArrayLike,
    g12: npt.ArrayLike,
    max_depth: int,
) -> dict[str, np.ndarray]:
    """Σ^l and Θ^l of P input pairs (x, x') along depth l = 1 … max_depth, in float64.

    g11, g22, g12: (P,) input Gram entries ⟨x,x⟩/m_0, ⟨x',x'⟩/m_0, ⟨x,x'⟩/m_0.
    Returns (max_depth, P) arrays "s11", "s22", "s12" (Σ^l), "t11", "t22", "t12" (Θ^l) and "angle"
    (arccos of Σ^l's correlation, carried by the recursion: 1 − ρ = 2 sin²(angle/2) keeps its
    digits far below ρ's last bit); row l − 1 is depth l. The diagonal uses 1-D integrals (ρ = 1
    exactly) and the family its closed forms. Once a value overflows (chaotic phase) the rest of
    that pair is NaN.
    """
    g11, g22, g12 = (np.asarray(g, np.float64) for g in (g11, g22, g12))
    s = [sigma_w**2 * g + sigma_b**2 for g in (g11, g22, g12)]
    t = list(s)
    # The pair's angle, carried instead of ρ (see kernel_recursion); the inputs give only ρ here.
    angle = np.arccos(np.clip(s[2] / np.sqrt(s[0] * s[1]), -1.0, 1.0))
    keys = ("s11", "s22", "s12", "t11", "t22", "t12", "angle")
    out = {k: np.full((max_depth, len(g11)), np.nan) for k in keys}
    with jax.ensure_compile_time_eval():
        for layer in range(max_depth):
            for key, value in zip(keys, (*s, *t, angle), strict=True):
                out[key][layer] = value
            if layer == max_depth - 1 or not all(np.all(np.isfinite(v)) for v in (*s, *t)):
                break
            q1, q2, _ = s
            if isinstance(activation, Activation):
                e11, d11 = activation.second_moment * q1, np.full_like(q1, activation.second_moment)
                e22, d22 = activation.second_moment * q2, np.full_like(q2, activation.second_moment)
                e12, d12, minus, plus = (np.asarray(v, np.float64) for v in activation.angular(q1, q2, angle))
            else:
                (e11, e22), (d11, d22) = (
                    np.asarray(v, np.float64).reshape(2, -1)
                    for v in second_moments(activation, np.concatenate([q1, q2]))
                )
                e12, d12, minus, plus = (
                    np.asarray(v, np.float64) for v in angular_expectations(activation, q1, q2, angle)
                )
            with np.errstate(over="ignore", invalid="ignore"):
                angle = np.asarray(next_angle(e11, e22, minus, plus, sigma_w, sigma_b), np.float64)
                s = [sigma_w**2 * e + sigma_b**2 for e in (e11, e22, e12)]
                t = [s[i] + sigma_w**2 * d * t[i] for i, d in enumerate((d11, d22, d12))]
    return out
