"""Mercer eigenvalues of the limit kernels on the sphere (science.md, "Spectrum and smoothness").

Inputs on S^{d−1} of radius √d: every limit kernel is a function κ(t) of t = ⟨x, x'⟩/d, and its
eigenvalues for the uniform probability measure are the Funk–Hecke integrals

    μ_k = c_d ∫_0^π κ(cos θ) P_k(cos θ) sin^{d−2} θ dθ,   c_d = Γ(d/2) / (√π Γ((d−1)/2)),

with P_k the Gegenbauer polynomial of S^{d−1} normalised by P_k(1) = 1, each μ_k of multiplicity
N(d, k). The integral is taken in θ because that is where the kernels are smooth: a kink of φ at 0
puts (1 − t)^{j+1/2} terms into κ near t = 1 (and, through ρ = −1 at the first layer, near t = −1),
which are odd powers of sin(θ/2) — analytic in θ — so Gauss–Legendre in θ converges
exponentially where a rule in t would converge algebraically. Across layers the correlation maps
θ ↦ θ_l are analytic too (θ_l ≈ c·θ near 0), so this holds at every depth.

κ(cos θ) comes from the layer recursion at the Gauss nodes: the family's closed forms, and for any
other φ the equal-variance expectations of `activations.interpolate` (every input has the same
variance q_l at every layer, so each layer needs only the Chebyshev interpolant in the angle).
Everything here runs in float64 whatever JAX's x64 flag.
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from ntksim.activations import Activation, AnyActivation, activation
from ntksim.activations.eoc import resolve_sigmas
from ntksim.activations.gaussian import second_moments
from ntksim.activations.interpolate import equal_variance_expectations
from ntksim.data.points import float64_scope

Kernel = Literal["ntk", "nngp"]
KERNELS = ("ntk", "nngp")
MAX_DIM = 1000
MAX_K = 5000


def harmonic_dimension(dim: int, k: int) -> int:
    """N(d, k): the number of linearly independent spherical harmonics of degree k on S^{d−1}."""
    if k == 0:
        return 1
    if dim == 2:
        return 2
    return (2 * k + dim - 2) * math.comb(k + dim - 3, k - 1) // k


def multiplicities(dim: int, kmax: int) -> np.ndarray:
    """(kmax + 1,) N(d, k) for k = 0 … kmax, float64 (inf where N(d, k) exceeds float64's range,
    which happens in high dimension, e.g. d = 1000, k ≳ 300)."""

    def as_float(count: int) -> float:
        try:
            return float(count)
        except OverflowError:
            return math.inf

    return np.array([as_float(harmonic_dimension(dim, k)) for k in range(kmax + 1)])


def funk_hecke_constant(dim: int) -> float:
    """c_d = Γ(d/2) / (√π Γ((d−1)/2)): the density of t = ⟨u, v⟩ for independent uniform u, v on
    S^{d−1} is c_d (1 − t²)^{(d−3)/2}."""
    return math.exp(math.lgamma(dim / 2) - math.lgamma((dim - 1) / 2)) / math.sqrt(math.pi)


def gegenbauer(dim: int, kmax: int, t: np.ndarray) -> np.ndarray:
    """P_k(t) of S^{d−1}, normalised by P_k(1) = 1, for k = 0 … kmax: (kmax + 1, *t.shape).

    Three-term recurrence (k + d − 2) P_{k+1} = (2k + d − 2) t P_k − k P_{k−1} (Legendre for
    d = 3; stable for |t| ≤ 1); for d = 2, Chebyshev T_k(t) = cos(k arccos t) directly."""
    t = np.asarray(t, np.float64)
    if dim == 2:  # T_k(cos θ) = cos kθ, exactly: the recurrence's round-off grows like k·eps
        return np.cos(np.arange(kmax + 1).reshape((-1,) + (1,) * t.ndim) * np.arccos(np.clip(t, -1.0, 1.0)))
    out = np.empty((kmax + 1, *t.shape))
    out[0] = 1.0
    if kmax >= 1:
        out[1] = t
    for k in range(1, kmax):
        out[k + 1] = ((2 * k + dim - 2) * t * out[k] - k * out[k - 1]) / (k + dim - 2)
    return out


PANEL_ORDER = 20  # Gauss–Legendre nodes per panel of the composite rule in θ


@functools.cache
def theta_rule(count: int) -> tuple[np.ndarray, np.ndarray]:
    """A composite Gauss–Legendre rule on θ ∈ [0, π] with about `count` nodes: ⌈count/20⌉ equal
    panels of 20 nodes each. (One Gauss rule of hundreds of nodes has weights good to only ~1e-11
    relative, which leaves 1e-13 in μ_k; panels of order 20 are exact to round-off.)
    Returns nodes and weights, (panels·20,) each."""
    panels = max(1, math.ceil(count / PANEL_ORDER))
    x, w = np.polynomial.legendre.leggauss(PANEL_ORDER)
    width = math.pi / panels
    starts = width * np.arange(panels)[:, None]
    nodes = starts + width * (x[None, :] + 1) / 2
    return nodes.reshape(-1), np.tile(w * width / 2, panels)


def default_nodes(kmax: int, dim: int = 3) -> int:
    """Nodes that resolve P_k(cos θ) to k = kmax, the kernel's own bandwidth and the weight
    sin^{d−2}θ: P ≥ (kmax + 40)/8 panels of width π/P (cos kθ turns through at most ~4 periods per
    20-node panel, which integrates it to round-off) and P ≥ 4√d (the weight's peak at π/2 has width
    ~1/√d). μ_k agree with a twice finer rule to the floor (tested)."""
    panels = max(8, math.ceil((kmax + 40) / 8), math.ceil(4 * math.sqrt(dim)))
    return PANEL_ORDER * panels


def angular_layers(
    act: AnyActivation, depth: int, sigma_w: float, sigma_b: float, t: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray]]:
    """[(Σ^l(t), Θ^l(t)) for l = 1 … depth] for inputs of norm √d at cosine t, float64 arrays of
    t's shape. ValueError (one line) when the kernel overflows (σ_w beyond the EOC, deep)."""
    t = np.asarray(t, np.float64)
    with float64_scope(), jax.ensure_compile_time_eval():
        q = sigma_w**2 + sigma_b**2
        sigma = sigma_w**2 * t + sigma_b**2
        theta = sigma.copy()
        layers = [(sigma, theta)]
        for layer in range(2, depth + 1):
            if isinstance(act, Activation):
                qs = np.full_like(sigma, q)
                e_phi, e_dphi = (np.asarray(v, np.float64) for v in act.expectations(qs, qs, sigma))
                q_phi = act.second_moment * q
            else:
                # Every input has variance q at every layer: one interpolant in the angle per layer.
                cov = jnp.asarray(sigma)
                e_phi, e_dphi = (np.asarray(v, np.float64) for v in equal_variance_expectations(act, q, cov))
                q_phi = float(np.asarray(second_moments(act, jnp.asarray([q]))[0])[0])
            with np.errstate(over="ignore", invalid="ignore"):  # reported below, in one line
                sigma = sigma_w**2 * e_phi + sigma_b**2
                theta = sigma + sigma_w**2 * e_dphi * theta
                q = sigma_w**2 * q_phi + sigma_b**2
            if not (math.isfinite(q) and np.all(np.isfinite(theta))):
                raise ValueError(
                    f"{act.name} at σ_w={sigma_w:g}, σ_b={sigma_b:g}: the kernel overflows at depth "
                    f"{layer}; take a smaller σ_w (at or below the Edge of Chaos where φ has one) or depth"
                )
            layers.append((sigma, theta))
    return layers


def angular_kernels(
    act: AnyActivation, depth: int, sigma_w: float, sigma_b: float, t: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(Σ^l(t), Θ^l(t)) at depth l (see `angular_layers`)."""
    return angular_layers(act, depth, sigma_w, sigma_b, t)[-1]


def funk_hecke(values: np.ndarray, dim: int, kmax: int) -> np.ndarray:
    """μ_0 … μ_kmax of a kernel given at the nodes of `theta_rule(len(values))`: (kmax + 1,)."""
    nodes, weights = theta_rule(values.shape[0])
    t = np.cos(nodes)
    weight = weights * np.sin(nodes) ** (dim - 2) * funk_hecke_constant(dim)
    return gegenbauer(dim, kmax, t) @ (weight * values)


def check_arguments(dim: int, kmax: int, depth: int, kernel: str) -> None:
    """One-line ValueErrors for what mercer_eigenvalues cannot take."""
    if not (isinstance(dim, int | np.integer) and 2 <= dim <= MAX_DIM):
        raise ValueError(f"dim must be an integer from 2 (the circle) to {MAX_DIM}, got {dim!r}")
    if not (isinstance(kmax, int | np.integer) and 0 <= kmax <= MAX_K):
        raise ValueError(f"kmax must be an integer from 0 to {MAX_K}, got {kmax!r}")
    if not (isinstance(depth, int | np.integer) and depth >= 1):
        raise ValueError(f"depth must be a positive integer, got {depth!r}")
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; choose one of {', '.join(KERNELS)}")


def mercer_eigenvalues(
    act: AnyActivation | str,
    depth: int,
    dim: int,
    kmax: int,
    kernel: Kernel = "ntk",
    sigma_w: float | None = None,
    sigma_b: float | None = None,
    nodes: int | None = None,
) -> np.ndarray:
    """Funk–Hecke eigenvalues μ_0 … μ_kmax of the limit NTK Θ^l or NNGP Σ^l on S^{dim−1} (inputs
    of norm √dim, uniform probability measure): (kmax + 1,) float64. μ_k has multiplicity
    `harmonic_dimension(dim, k)` (`multiplicities(dim, kmax)`), and Σ_k N(d, k) μ_k = κ(1).

    σ_w = None: the Edge of Chaos at σ_b (σ_b = None: 0, no bias). nodes: Gauss points in θ
    (default `default_nodes(kmax)`). Eigenvalues that vanish exactly (parity, polynomial φ) come
    out at the round-off floor, |μ_k| ≲ 1e-16 · κ(1)."""
    act = activation(act) if isinstance(act, str) else act
    check_arguments(dim, kmax, depth, kernel)
    with float64_scope():  # the EOC too: its σ_w in float32 would move every μ_k by 1e-7
        sigma_w, sigma_b = resolve_sigmas(act, sigma_w, sigma_b)
    least = default_nodes(kmax, dim)
    count = least if nodes is None else int(nodes)
    if count < least:
        raise ValueError(f"nodes: {count} cannot resolve k ≤ {kmax} on S^{dim - 1}; give at least {least}")
    theta_nodes, _ = theta_rule(count)
    sigma, theta = angular_kernels(act, depth, sigma_w, sigma_b, np.cos(theta_nodes))
    return funk_hecke(theta if kernel == "ntk" else sigma, dim, kmax)


def kernel_at_one(act: AnyActivation, depth: int, sigma_w: float, sigma_b: float, kernel: Kernel) -> float:
    """κ(1) = Θ^l(x, x) or Σ^l(x, x) for ‖x‖² = d (the trace Σ_k N(d, k) μ_k)."""
    sigma, theta = angular_kernels(act, depth, sigma_w, sigma_b, np.ones(1))
    return float((theta if kernel == "ntk" else sigma)[0])


def kink_order(act: AnyActivation, max_order: int = 6) -> int | None:
    """The smallest j ≥ 1 with a jump of φ^(j) at 0 (1 for ReLU, abs, SELU; 2 for ELU with α = 1),
    from one-sided derivatives by autodiff; None for φ smooth at 0 or with kinks elsewhere."""
    if isinstance(act, Activation):
        return 1 if act.b != 0 else None
    if tuple(act.kinks) != (0.0,):
        return None
    with float64_scope():
        derivative = act.derivative
        for order in range(1, max_order + 1):
            left, right = (float(derivative(jnp.asarray(side * 1e-200))) for side in (-1.0, 1.0))
            if abs(right - left) > 1e-9 * max(1.0, abs(left), abs(right)):
                return order
            derivative = jax.grad(derivative)
    return None


def predicted_decay(act: AnyActivation, kernel: Kernel, dim: int, depth: int = 2) -> float:
    """science.md's exponent s of μ_k ~ k^{−s} for φ whose only non-smoothness is a jump of
    φ^(j) at 0: NTK d + 2(j − 1), NNGP d + 2j; nan where it says nothing (depth 1, a linear
    kernel; smooth or polynomial φ: faster than any power or finitely many μ_k; kinks off 0)."""
    order = kink_order(act)
    if order is None or depth < 2:
        return math.nan
    return float(dim + 2 * (order - 1) + (2 if kernel == "nngp" else 0))


def kernel_function(
    act: AnyActivation, depth: int, sigma_w: float, sigma_b: float, kernel: Kernel = "nngp", degree: int = 160
):
    """κ(t) as a callable on [−1, 1]: a Chebyshev interpolant in θ = arccos t of `degree` (the
    kernels are analytic in θ, so it converges exponentially; `tests/kernels/test_mercer.py` holds it to
    1e-13 of κ(1) against the recursion)."""

    def values(theta: np.ndarray) -> np.ndarray:
        sigma, ntk = angular_kernels(act, depth, sigma_w, sigma_b, np.cos(theta))
        return ntk if kernel == "ntk" else sigma

    series = np.polynomial.Chebyshev.interpolate(values, degree, domain=[0.0, math.pi])
    return lambda t: series(np.arccos(np.clip(t, -1.0, 1.0)))


def polynomial_count(degree: float, bias: bool, phi_parity: str) -> float:
    """How many μ_k a polynomial kernel of degree D in t can have: D + 1, or ⌊D/2⌋ + 1 when φ is
    even or odd and there is no bias (every power of t then has D's parity)."""
    return degree // 2 + 1 if phi_parity in ("odd", "even") and not bias else degree + 1
