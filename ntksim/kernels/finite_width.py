"""The 1/m expansion of the finite-width NTK and NNGP (science.md, "Finite width").

To first order in the inverse hidden widths 1/m_1 … 1/m_{l−1} of an MLP,

    E[K]     = K∞ + Σ_k M_k / m_k,        Cov[K_e, K_e'] = Σ_k C_k(e, e') / m_k,

and `finite_width(net, x)` computes the coefficients M_k, C_k for every entry of K (and, within
a pair of inputs, between its entries K_ii, K_ij, K_jj): for any activation ntksim knows, with
or without biases, on or off the Edge of Chaos, any width schedule and any m_l. The coefficients
do not depend on the widths, so one computation serves every width (`FiniteWidth.at`).

Conventions. ntksim's network (science.md, "The network"): h^{k+1} = (σ_w/√m_k) W φ(h^k) +
σ_b β, all of W and β iid N(0, 1); the NTK sums over every W^k and β^k (biases count; σ_b = 0
means none). In the notation of Roberts, Yaida & Hanin (PDLT) this is C_W = σ_w², C_b = σ_b²,
learning-rate tensors λ_W = C_W and λ_b = C_b (NTK parameterization), and their width n is our
m_k; K = Θ/n here carries science.md's 1/n (n the number of inputs), which PDLT does not.

How. Conditionally on layer k, the m_{k+1} neurons of layer k+1 are iid: their pre-activations
are Gaussian with the empirical kernel Ĝ^{k+1} = σ_b² + (σ_w²/m_k) Σ_a φ(h_a)φ(h_a)ᵀ, and their
forward NTK is Θ̂_ij = δ_ij Ĥ^{k+1} + R_ij, where Ĥ^{k+1} = Ĝ^{k+1} + (σ_w²/m_k) Σ_a φ'φ' Θ̂_aa
is its conditional mean and R_ij = (σ_w²/m_k) Σ_ab (w_ia w_jb − δ_ij δ_ab) φ'_a φ'_b Θ̂_ab is the
part the shared weights W^{k+1} add (the correlation between forward and backward passes that
the gradient-independence assumption drops). Gaussian integration by parts over w gives R's
moments exactly, and a fluctuation of layer k enters layer k+1 as a shift of the Gaussian's
covariance, i.e. through the Jacobian and Hessian of the limit's layer maps
E_φ(G) = ⟨φφ⟩_G and E_φ'(G) = ⟨φ'φ'⟩_G (Price's theorem). The state carried from layer to
layer, for the inputs of one pair, is (PDLT's G, V, H, D, A, F, B):

    g   E[Ĝ] − G                      (mean shift of the NNGP kernel)
    h   E[Ĥ] − H                      (mean shift of the NTK)
    V   Cov(Ĝ_βγ, Ĝ_δε)               (four-point vertex)
    D   Cov(Ĥ_βγ, Ĝ_δε)               (NTK–kernel cross-covariance)
    A   Cov(Ĥ_βγ, Ĥ_δε)
    F   E[R_ij(βγ) h_i(δ) h_j(ε)]     (i ≠ j: off-diagonal NTK against pre-activations)
    B   E[R_ij(βγ) R_ij(δε)]          (i ≠ j)

every one O(1/m) and linear in the per-layer sources, so each carries an axis over the hidden
layer k whose 1/m_k it multiplies (`per_layer`). With m_l outputs the output NTK is
δ_ab Ĥ^l + R^l_ab: diagonal output blocks have mean H + h and covariance
A + B + B(swapped), off-diagonal blocks mean 0 and variance B; the NNGP's output is Ĝ^l ⊗ I.

Expectations over the pair's 2-D Gaussian: the family's closed forms for E_φ, E_φ' (and their
derivatives, by autodiff), the kink-split quadrature of `ntksim.activations.gaussian` for every
other φ and for the four-point moments ⟨φ'φ'φφ⟩ etc. A pair whose two inputs are exactly
(anti-)parallel at every layer (x' = s·x without biases, for φ that keep them so) is an exact
multiple of the first input's diagonal entry and is computed from it.

All inputs at once (`FiniteWidth.entry_covariance`, n ≤ JOINT_MAX_INPUTS): the same recursion on
the set of all n inputs, so its tensors carry every quadruple of inputs; the moments of three and
four distinct inputs come from `ntksim.activations.gaussian.nested_grid`, one subset at a time,
and the Jacobians and Hessians of the layer maps from each pair's (2, 2) map. Its err_op is the
Gaussian surrogate's (science.md): ‖M + G‖₂ sampled, G ~ N(0, that covariance).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, cast, overload

import jax
import jax.numpy as jnp
import numpy as np
import numpy.typing as npt
from jax import Array

from ntksim.activations import Activation, AnyActivation
from ntksim.activations.family import pair_norm
from ntksim.activations.gaussian import line_grid, nested_grid, polar_grid
from ntksim.activations.interpolate import FIRST_NODES, _barycentric, _chebyshev_angles
from ntksim.nets.cpu_compile import FastCompiled
from ntksim.nets.model import MLP

Kernel = Literal["ntk", "nngp"]
# |ρ| this close to 1 is an exactly (anti-)parallel pair: its transverse fluctuations vanish.
PARALLEL = 1e-12
# Equal-norm inputs, φ without closed forms: interpolate in the angle from this many pairs on.
INTERPOLATE_MIN_PAIRS = 128
# Relative to each statistic's scale: far below the first-order theory's own O(1/m) remainder.
INTERPOLATION_TOLERANCE = 1e-8
INTERPOLATION_MAX_NODES = 129  # the last check integrates 257 angles; beyond, every pair directly
STATE = ("g", "h", "V", "D", "A", "F", "B")


# --- Gaussian expectations of one pair (or one input), differentiable in its covariance ---------
Powers = tuple[tuple[int, int], ...]  # per input β: (p, q) of φ(h_β)^p φ'(h_β)^q


def _radial(k: int) -> float:
    """∫_0^∞ r^{k+1} e^{−r²/2} dr = 2^{k/2} Γ(k/2 + 1)."""
    return 2 ** (k / 2) * math.gamma(k / 2 + 1)


ANGLE_NODES = 24  # per sector: exact for the family's trigonometric polynomials of degree < 48


def _sectors(bounds: Array) -> tuple[Array, Array]:
    """Gauss–Legendre nodes and weights on each interval [bounds_i, bounds_{i+1}] (flattened)."""
    x, weights = np.polynomial.legendre.leggauss(ANGLE_NODES)
    t, w = jnp.asarray((x + 1) / 2, bounds.dtype), jnp.asarray(weights / 2, bounds.dtype)
    lo, hi = bounds[:-1, None], bounds[1:, None]
    return (lo + (hi - lo) * t[None]).reshape(-1), ((hi - lo) * w[None]).reshape(-1)


def _snap(cov: Array) -> Array:
    """A (2, 2) covariance whose |ρ| is within a few ulp of 1 made exactly parallel (c = ±√(q1 q2)):
    x' = −1.2·x gives ρ = −1 ± 1e-16 in floating point, and √(1 − ρ²) would turn that into 1e-8
    of spurious transverse mass (science.md: compute ρ = ±1 exactly)."""
    if cov.shape[0] != 2:
        return cov
    norm = pair_norm(cov[0, 0], cov[1, 1])
    c = 0.5 * (cov[0, 1] + cov[1, 0])
    close = jnp.abs(jnp.abs(c) - norm) <= 8 * jnp.finfo(cov.dtype).eps * norm
    c = jnp.where(close & (norm > 0), jnp.sign(c) * norm, c)
    return jnp.stack([jnp.stack([cov[0, 0], c]), jnp.stack([c, cov[1, 1]])])


def _pair_rho(cov: Array) -> tuple[Array, Array, Array]:
    q1, q2, c = cov[0, 0], cov[1, 1], 0.5 * (cov[0, 1] + cov[1, 0])
    norm = pair_norm(q1, q2)
    rho = jnp.clip(jnp.where(norm > 0, c / jnp.where(norm > 0, norm, 1.0), 0.0), -1.0, 1.0)
    return q1, q2, rho


@jax.tree_util.register_pytree_node_class
class TracedFamily:
    """φ(s) = a·s + b·|s| with (a, b) as traced values: one compiled program serves every member
    of the family (relu and abs in one run compile once). Same interface as `Activation` where
    this module uses it; its closed forms are `Activation.expectations` itself."""

    kinks = (0.0,)

    def __init__(self, a: Any, b: Any) -> None:
        self.a, self.b = a, b

    def __call__(self, s: Array) -> Array:
        return self.a * s + self.b * jnp.abs(s)

    def derivative(self, s: Array) -> Array:
        return self.a + self.b * jnp.sign(s)

    def tree_flatten(self) -> tuple[tuple[Any, Any], None]:
        return (self.a, self.b), None

    @classmethod
    def tree_unflatten(cls, _: None, leaves: tuple[Any, Any]) -> TracedFamily:
        return cls(*leaves)


# What the recursion's layer maps take: any activation, or the family with traced (a, b).
RecursionActivation = AnyActivation | TracedFamily


def _pair_nodes(kinks: tuple[float, ...], q1: Array, q2: Array, rho: Array) -> tuple[Array, Array, Array]:
    """The kink-split polar rule of one pair as flat nodes (u, v) and weights (density included)."""
    a, b, r, w_r, w_theta = polar_grid(kinks, kinks, q1[None], q2[None], rho[None])
    weights = (w_theta[..., None] * w_r * r * jnp.exp(-0.5 * r**2)).reshape(-1) / (2 * math.pi)
    return (a[..., None] * r).reshape(-1), (b[..., None] * r).reshape(-1), weights


class _Rule:
    """φ and φ' at the nodes of one Gaussian rule, so that every product moment
    E[Π_β φ(h_β)^{p_β} φ'(h_β)^{q_β}] is one weighted sum over the same nodes.

    The family is positively homogeneous (φ(λs) = λφ(s), φ'(λs) = φ'(s), λ > 0): in polar
    coordinates its radial integral is a Gamma function and only the angle is integrated, sector by
    sector, where the integrand is a trigonometric polynomial (Gauss–Legendre is exact there); one
    input's moments are closed forms. Any other φ: the kink-split polar rule of
    `ntksim.activations.gaussian` (2-D) or its 1-D rule."""

    def __init__(self, activation: RecursionActivation, cov: Array) -> None:
        """cov: (k, k), the covariance of the inputs this rule integrates over."""
        self.activation, self.cov, self.size = activation, cov, cov.shape[0]
        self.family = isinstance(activation, Activation | TracedFamily)
        kinks = tuple(activation.kinks)
        if self.size == 1:
            if self.family:
                return
            nodes, self.weights = line_grid(cov[0, 0], kinks)
            self.values = [(activation(nodes), activation.derivative(nodes))]
            return
        if self.size > 2:
            self.family = False  # no radial reduction: the nested rule integrates r too
            u, self.weights = nested_grid(cov, kinks)
            self.values = [(activation(u[:, j]), activation.derivative(u[:, j])) for j in range(self.size)]
            return
        q1, q2, rho = _pair_rho(cov)
        if self.family:
            alpha = jnp.arccos(rho)
            half = math.pi / 2
            bounds = jnp.stack([jnp.full_like(alpha, half), half + alpha, jnp.full_like(alpha, 3 * half),
                                3 * half + alpha, jnp.full_like(alpha, 5 * half)])  # fmt: skip
            theta, weights = _sectors(bounds)
            self.weights = weights / (2 * math.pi)
            cos1 = jnp.cos(theta)
            cos2 = rho * cos1 + jnp.sqrt((1 - rho) * (1 + rho)) * jnp.sin(theta)
            self.values = [(activation(c), activation.derivative(c)) for c in (cos1, cos2)]
            self.scales = (q1, q2)
            return
        u, v, self.weights = _pair_nodes(kinks, q1, q2, rho)
        self.values = [(activation(u), activation.derivative(u)), (activation(v), activation.derivative(v))]

    def moment(self, powers: Powers) -> Array:
        """The moment for powers given per input of this rule, in order."""
        if self.family and self.size == 1:
            ((p, q),) = powers
            activation = self.activation
            assert isinstance(activation, Activation | TracedFamily)  # self.family, and one input
            a, b = activation.a, activation.b
            # E[φ(√q z)^p φ'^q] = q^{p/2}·((a+b)^{p+q} + (−1)^p (a−b)^{p+q})·E|z|^p / 2
            abs_moment = 2 ** (p / 2) * math.gamma((p + 1) / 2) / math.sqrt(math.pi)
            variance = self.cov[0, 0]
            return (
                variance ** (p / 2) * ((a + b) ** (p + q) + (-1) ** p * (a - b) ** (p + q)) * abs_moment / 2
            )
        integrand = self.weights
        for (p, q), (phi, dphi) in zip(powers, self.values, strict=True):
            if p:
                integrand = integrand * phi**p
            if q:
                integrand = integrand * dphi**q
        total = jnp.sum(integrand)
        if self.family:
            (p1, _), (p2, _) = powers
            total = self.scales[0] ** (p1 / 2) * self.scales[1] ** (p2 / 2) * _radial(p1 + p2) * total
        return total


class _Moments:
    """Product moments of h ~ N(0, cov), cov (d, d), each computed once on the rule of the inputs
    it involves (one input: 1-D; two: 2-D; three or four: the nested k-D rule)."""

    def __init__(self, activation: RecursionActivation, cov: Array) -> None:
        self.activation, self.cov = activation, cov
        self.rules: dict[tuple[int, ...], _Rule] = {}
        self.cache: dict[Powers, Array] = {}

    def __call__(self, powers: Powers) -> Array:
        if powers not in self.cache:
            used = tuple(b for b, pq in enumerate(powers) if pq != (0, 0))
            if not used:
                self.cache[powers] = jnp.ones((), self.cov.dtype)
            else:
                if used not in self.rules:
                    self.rules[used] = _Rule(self.activation, self.cov[np.ix_(used, used)])
                self.cache[powers] = self.rules[used].moment(tuple(powers[b] for b in used))
        return self.cache[powers]


def _two_point(activation: RecursionActivation, cov: Array) -> tuple[Array, Array]:
    """(E_φ, E_φ')(cov) = ([⟨φ(h_β)φ(h_γ)⟩], [⟨φ'(h_β)φ'(h_γ)⟩]), each (d, d), for h ~ N(0, cov).

    cov is symmetrised first, so the derivative with respect to cov_βγ is the one in which
    cov_βγ and cov_γβ are independent variables (half of Price's ⟨∂_β∂_γ ·⟩ each). The family's
    pair entries are its closed forms (science.md), differentiable for |ρ| < 1."""
    cov = _snap(0.5 * (cov + cov.T))
    d = cov.shape[0]
    moments = _Moments(activation, cov)
    family = isinstance(activation, Activation | TracedFamily)

    def entry(b: int, g: int, p: int, q: int, closed: int) -> Array:
        if b == g:
            return moments(tuple((2 * p, 2 * q) if i == b else (0, 0) for i in range(d)))
        if family:
            return Activation.expectations(activation, cov[b, b], cov[g, g], cov[b, g])[closed]  # type: ignore[arg-type]
        return moments(tuple((p, q) if i in (b, g) else (0, 0) for i in range(d)))

    phi = [[entry(b, g, 1, 0, 0) for g in range(d)] for b in range(d)]
    dphi = [[entry(b, g, 0, 1, 1) for g in range(d)] for b in range(d)]
    return jnp.stack([jnp.stack(row) for row in phi]), jnp.stack([jnp.stack(row) for row in dphi])


def _jets(activation: RecursionActivation, G: Array) -> tuple[tuple[Array, Array], tuple[Array, Array]]:
    """Jacobians (d,d,d,d) ∂E_βγ/∂G_δε and Hessians (d,d,d,d,d,d) of (E_φ, E_φ') at G (d, d).

    Entry βγ depends only on G_ββ, G_βγ, G_γγ, so for d > 2 (several inputs at once) the
    derivatives are those of each pair's (2, 2) map, scattered: d² pair computations instead of a
    dense d⁶ one. A smooth φ (no kinks, no closed forms) takes them from Price's theorem instead."""
    if _smooth(activation):
        return _price_jets(activation, G)
    jac = jax.jacfwd(lambda c: _two_point(activation, c))
    hess = jax.jacfwd(jac)
    d = G.shape[0]
    if d <= 2:
        return jac(G), hess(G)
    pairs = np.array(list(itertools.combinations(range(d), 2)))  # (P, 2)
    sub = G[pairs[:, :, None], pairs[:, None, :]]  # (P, 2, 2)
    local_jac, local_hess = jax.vmap(jac)(sub), jax.vmap(hess)(sub)

    def scatter(local: Array, order: int) -> Array:
        # local (P, 2, …, 2) → (d, …, d); entries shared by pairs (βββ… of one input) are equal.
        positions = np.array(list(itertools.product(range(2), repeat=order)))  # (2^order, order)
        index = pairs[:, positions]  # (P, 2^order, order): each local position's input
        flat = local.reshape(local.shape[0], -1)  # row-major, as `positions` runs
        return jnp.zeros((d,) * order, G.dtype).at[tuple(index[..., t] for t in range(order))].set(flat)

    return (
        (scatter(local_jac[0], 4), scatter(local_jac[1], 4)),
        (scatter(local_hess[0], 6), scatter(local_hess[1], 6)),
    )


def _smooth(activation: RecursionActivation) -> bool:
    return not isinstance(activation, Activation | TracedFamily) and not tuple(activation.kinks)


def _derivatives(activation: RecursionActivation, order: int) -> list[Callable[[Array], Array]]:
    """φ, φ', …, φ^(order) as elementwise functions (φ' as the activation gives it, the rest by
    forward-mode differentiation of it)."""

    def differentiate(f: Callable[[Array], Array]) -> Callable[[Array], Array]:
        return lambda s: jax.jvp(f, (s,), (jnp.ones_like(s),))[1]

    out: list[Callable[[Array], Array]] = [activation, activation.derivative]
    while len(out) <= order:
        out.append(differentiate(out[-1]))
    return out


def _price_jets(activation: RecursionActivation, G: Array) -> tuple[tuple[Array, Array], tuple[Array, Array]]:
    """`_jets` for a smooth φ by Price's theorem: for (u, v) ~ N(0, [[q1, c], [c, q2]]),
    ∂E[f(u)g(v)]/∂c = E[f'g'], ∂/∂q1 = ½E[f''g], and so on to second order, all moments of
    derivatives of φ on the same quadrature nodes (φ up to its 5th derivative, for E_φ'). Autodiff
    through the rule would differentiate its ρ-dependent nodes instead, whose terms grow like
    1/√(1 − ρ²) and cancel: near ρ = ±1 that loses digits (6e-5 of the mean shift at 10 layers,
    tanh), and it costs ~20 evaluations of the rule where this needs one."""
    d = G.shape[0]
    G = 0.5 * (G + G.T)
    derivs = _derivatives(activation, 5)
    jac = [jnp.zeros((d,) * 4, G.dtype) for _ in range(2)]
    hess = [jnp.zeros((d,) * 6, G.dtype) for _ in range(2)]
    for b in range(d):
        nodes, weights = line_grid(G[b, b], ())
        values = [f(nodes) for f in derivs]

        def one(i: int, j: int, weights: Array = weights, values: list[Array] = values) -> Array:
            return jnp.sum(weights * values[i] * values[j])

        for which, o in enumerate((0, 1)):  # E_φ (f = φ) and E_φ' (f = φ')
            # E[f(u)^2] depends on q only: d/dq = E[(f^2)'']/2, d^2/dq^2 = E[(f^2)'''']/4
            first = one(o + 1, o + 1) + one(o, o + 2)
            second = 0.5 * (one(o, o + 4) + 4 * one(o + 1, o + 3) + 3 * one(o + 2, o + 2))
            jac[which] = jac[which].at[b, b, b, b].set(first)
            hess[which] = hess[which].at[b, b, b, b, b, b].set(second)
    for b, g in itertools.combinations(range(d), 2):
        q1, q2, rho = _pair_rho(_snap(G[np.ix_([b, g], [b, g])]))
        u, v, weights = _pair_nodes((), q1, q2, rho)
        U, V = [f(u) for f in derivs], [f(v) for f in derivs]

        def two(i: int, j: int, weights: Array = weights, U: list[Array] = U, V: list[Array] = V) -> Array:
            return jnp.sum(weights * U[i] * V[j])

        # the entry's variables and each G index's share of them (G_bg and G_gb half each)
        share = {(b, b): ("q1", 1.0), (g, g): ("q2", 1.0), (b, g): ("c", 0.5), (g, b): ("c", 0.5)}
        for which, o in enumerate((0, 1)):
            grad = {"q1": 0.5 * two(o + 2, o), "q2": 0.5 * two(o, o + 2), "c": two(o + 1, o + 1)}
            grad2 = {
                ("q1", "q1"): 0.25 * two(o + 4, o), ("q2", "q2"): 0.25 * two(o, o + 4),
                ("q1", "q2"): 0.25 * two(o + 2, o + 2), ("c", "c"): two(o + 2, o + 2),
                ("q1", "c"): 0.5 * two(o + 3, o + 1), ("q2", "c"): 0.5 * two(o + 1, o + 3),
            }  # fmt: skip
            for entry in ((b, g), (g, b)):
                for index, (x, fx) in share.items():
                    jac[which] = jac[which].at[(*entry, *index)].set(fx * grad[x])
                    for index2, (y, fy) in share.items():
                        value = grad2[(x, y)] if (x, y) in grad2 else grad2[(y, x)]
                        hess[which] = hess[which].at[(*entry, *index, *index2)].set(fx * fy * value)
    return (jac[0], jac[1]), (hess[0], hess[1])


def _four_point(moments: _Moments, kinds: str, d: int) -> Array:
    """T[β,γ,δ,ε] = ⟨t_1(h_β) t_2(h_γ) t_3(h_δ) t_4(h_ε)⟩, t_k = φ ('p') or φ' ('d') by `kinds`."""
    out = [moments(_tuple_powers(kinds, index, d)) for index in itertools.product(range(d), repeat=4)]
    return jnp.stack(out).reshape((d,) * 4)


FOUR_POINT_KINDS = ("pppp", "ddpp", "dddd")


def _tuple_powers(kinds: str, index: tuple[int, ...], inputs: int) -> Powers:
    powers = [[0, 0] for _ in range(inputs)]
    for kind, b in zip(kinds, index, strict=True):
        powers[b][0 if kind == "p" else 1] += 1
    return tuple((p, q) for p, q in powers)


@functools.cache
def _subset_layout(d: int) -> tuple[dict[int, np.ndarray], dict[int, list[Powers]], np.ndarray]:
    """How the (3, d, d, d, d) four-point tensors of d inputs gather from per-subset moments.

    Returns, per subset size k: the subsets (C(d, k), k) and the moment patterns over a subset's k
    inputs that index tuples using all of them need (the same for every subset of that size), and
    the (3, d⁴) positions of every tuple's moment in the concatenation over k of the (subsets ×
    patterns) tables."""
    subsets = {k: np.array(list(itertools.combinations(range(d), k))) for k in range(1, min(d, 4) + 1)}
    patterns: dict[int, list[Powers]] = {k: [] for k in subsets}
    for k in subsets:
        for kinds in FOUR_POINT_KINDS:
            for index in itertools.product(range(k), repeat=4):
                if len(set(index)) == k:
                    powers = _tuple_powers(kinds, index, k)
                    if powers not in patterns[k]:
                        patterns[k].append(powers)
    offsets, start = {}, 0
    for k in subsets:
        offsets[k] = start
        start += len(subsets[k]) * len(patterns[k])
    rank = {k: {tuple(sub): r for r, sub in enumerate(subsets[k])} for k in subsets}
    positions = np.zeros((len(FOUR_POINT_KINDS), d**4), np.int64)
    for c, kinds in enumerate(FOUR_POINT_KINDS):
        for t, index in enumerate(itertools.product(range(d), repeat=4)):
            used = tuple(sorted(set(index)))
            k = len(used)
            local = tuple(used.index(b) for b in index)
            pattern = patterns[k].index(_tuple_powers(kinds, local, k))
            positions[c, t] = offsets[k] + rank[k][used] * len(patterns[k]) + pattern
    return subsets, patterns, positions


def _four_points_by_subset(activation: RecursionActivation, G: Array) -> tuple[Array, Array, Array]:
    """(m_pppp, m_ddpp, m_dddd) (d, d, d, d) for d > 2 inputs at once: each subset of ≤ 4 inputs'
    moments on its own rule (a compiled map over the subsets of each size, one at a time for the
    large 3- and 4-input rules), gathered into the tensors."""
    d = G.shape[0]
    subsets, patterns, positions = _subset_layout(d)
    tables = []
    for k, members in subsets.items():

        def moments(sub: Array, k: int = k) -> Array:
            rule = _Rule(activation, _snap(sub) if k == 2 else sub)
            return jnp.stack([rule.moment(p) for p in patterns[k]])

        covs = G[members[:, :, None], members[:, None, :]]
        table = jax.vmap(moments)(covs) if k <= 2 else jax.lax.map(moments, covs)
        tables.append(table.reshape(-1))
    flat = jnp.concatenate(tables)
    m_pppp, m_ddpp, m_dddd = (flat[positions[c]].reshape((d,) * 4) for c in range(len(FOUR_POINT_KINDS)))
    return m_pppp, m_ddpp, m_dddd


# --- one layer of the recursion ----------------------------------------------------------------
def _outer(a: Array, b: Array) -> Array:
    return a[:, :, None, None] * b[None, None, :, :]


def _sandwich(j1: Array, x: Array, j2: Array) -> Array:
    """Σ J1[βγ,ij] X[s,ij,kl] J2[δε,kl]: a covariance pushed through two layer-map Jacobians."""
    return jnp.einsum("bgij,sijkl,dekl->sbgde", j1, x, j2)


def _layer(
    activation: RecursionActivation,
    sigma_w: float | Array,
    sigma_b: float | Array,
    first: bool,
    source: Array,
    kernels: tuple[Array, Array],
    state: dict[str, Array],
) -> tuple[tuple[Array, Array], dict[str, Array]]:
    """Layer k → k+1 for one pair: limits (G, H) (d, d) and the first-order state (S, d, …).

    source: (S,) the one-hot 1/m_k switch of this layer's width among the S hidden layers.
    first: the state is still zero (layer 1 is deterministic), so no derivative is needed — which
    also keeps an exactly (anti-)parallel first layer (x' = −x) free of infinite derivatives."""
    G, H = kernels
    sw2, sb2 = sigma_w**2, sigma_b**2
    sw4 = sw2 * sw2
    e_phi, e_dphi = _two_point(activation, G)
    G_next = sb2 + sw2 * e_phi
    H_next = G_next + sw2 * e_dphi * H
    d = G.shape[0]
    if d <= 2:
        moments = _Moments(activation, _snap(0.5 * (G + G.T)))
        m_pppp, m_ddpp, m_dddd = (_four_point(moments, kinds, d) for kinds in FOUR_POINT_KINDS)
    else:
        m_pppp, m_ddpp, m_dddd = _four_points_by_subset(activation, 0.5 * (G + G.T))
    u = source[:, None, None, None, None]
    c_pp = m_pppp - _outer(e_phi, e_phi)
    c_dp = m_ddpp - _outer(e_dphi, e_phi)
    c_dd = m_dddd - _outer(e_dphi, e_dphi)
    hh = _outer(H, H)
    Hb = H[None, :, :, None, None]  # H_βγ against the first pair of indices
    Ed = e_dphi[None, :, :, None, None]
    Hd = H[None, None, None, :, :]  # H_δε against the second pair
    Edd = e_dphi[None, None, None, :, :]
    g, h, V, D, A, F, B = (state[k] for k in STATE)
    if first:
        g_next = jnp.zeros_like(g)
        V_next = sw4 * u * c_pp[None]
        h_next = jnp.zeros_like(h)
        D_next = V_next + sw4 * u * Hb * c_dp[None]
        A_next = D_next + jnp.transpose(D_next, (0, 3, 4, 1, 2)) - V_next + sw4 * u * (hh * c_dd)[None]
        F_next = sw4 * u * Hb * m_ddpp[None]
        B_next = sw4 * u * (hh * m_dddd)[None]
    else:
        (j_phi, j_dphi), (hess_phi, hess_dphi) = _jets(activation, G)
        half_hess = lambda hs: 0.5 * jnp.einsum("bgijkl,sijkl->sbg", hs, V)  # noqa: E731
        push = lambda j, x: jnp.einsum("bgij,sij->sbg", j, x)  # noqa: E731
        g_next = sw2 * (push(j_phi, g) + half_hess(hess_phi))
        V_next = sw4 * (u * c_pp[None] + _sandwich(j_phi, V, j_phi))
        # ⟨∂_a(φ'(h_p)φ(h_r))⟩ from Price's theorem on E_φ (d, d, d): S[a, p, r].
        stein = jnp.zeros((d, d, d), G.dtype)
        for p, r in itertools.product(range(d), repeat=2):
            if p == r:
                stein = stein.at[p, p, p].set(j_phi[p, p, p, p])
            else:
                stein = stein.at[p, p, r].set(2 * j_phi[p, r, p, p])
                stein = stein.at[r, p, r].set(e_dphi[p, r])
        h_next = g_next + sw2 * (
            h * e_dphi[None]
            + H[None] * (push(j_dphi, g) + half_hess(hess_dphi))
            + jnp.einsum("bgij,sbgij->sbg", j_dphi, D)
            + 2 * jnp.einsum("bgij,sbgij->sbg", j_dphi, F)
        )
        D_next = V_next + sw4 * (
            u * Hb * c_dp[None]
            + Hb * _sandwich(j_dphi, V, j_phi)
            + Ed * jnp.einsum("sbgij,deij->sbgde", D, j_phi)
        )
        cov_y = (
            u * (hh * c_dd)[None]
            + hh[None] * _sandwich(j_dphi, V, j_dphi)
            + Hb * Edd * jnp.einsum("bgij,sdeij->sbgde", j_dphi, D)
            + Ed * Hd * jnp.einsum("sbgij,deij->sbgde", D, j_dphi)
            + Ed * Edd * A
        )
        A_next = D_next + jnp.transpose(D_next, (0, 3, 4, 1, 2)) - V_next + sw4 * cov_y
        F_next = sw4 * (u * Hb * m_ddpp[None] + jnp.einsum("sbgij,ibd,jge->sbgde", F, stein, stein))
        B_next = sw4 * (
            u * (hh * m_dddd)[None] + B * e_dphi[None, :, None, :, None] * e_dphi[None, None, :, None, :]
        )
    state = dict(zip(STATE, (g_next, h_next, V_next, D_next, A_next, F_next, B_next), strict=True))
    return (G_next, H_next), state


def _pair_statistics(
    activation: RecursionActivation, depth: int, sigma_w: Array, sigma_b: Array, gram: Array
) -> dict[str, Array]:
    """The recursion over all layers for a batch of input sets. gram: (P, d, d) input Grams
    ⟨x_β, x_γ⟩/m_0 → limits "G", "H" (P, d, d) and the state (P, S, d, …) at the output layer.

    The layers after the first share one compiled body (a scan), so compilation does not grow
    with depth; σ_w and σ_b are traced (one program per activation, depth and shape)."""
    hidden = depth - 1

    def one(gram_p: Array) -> dict[str, Array]:
        d = gram_p.shape[0]
        G = sigma_w**2 * gram_p + sigma_b**2
        zeros2 = jnp.zeros((hidden, d, d), G.dtype)
        zeros4 = jnp.zeros((hidden, d, d, d, d), G.dtype)
        state = {k: zeros2 if k in "gh" else zeros4 for k in STATE}
        sources = jnp.eye(hidden, dtype=G.dtype)
        rhos = [_correlation(G)]
        carry = _layer(activation, sigma_w, sigma_b, True, sources[0], (G, G), state)

        def body(carry: Any, source: Array) -> tuple[Any, Array]:
            return _layer(activation, sigma_w, sigma_b, False, source, *carry), _correlation(carry[0][0])

        if hidden > 1:
            carry, middle = jax.lax.scan(body, carry, sources[1:])
            rhos.extend(middle)
        (G, H), state = carry
        return {"G": G, "H": H, "rho": jnp.stack([*rhos, _correlation(G)]), **state}

    return jax.vmap(one)(gram)


# Sets per compiled call: the family's angular rules are small; other φ integrate 2-D grids of
# ~18 000 points per moment, so fewer sets at a time bound the memory (~0.5 GB a call).
FAMILY_CHUNK = 1024
QUADRATURE_CHUNK = 32


# XLA's quicker CPU compilation (ntksim.nets.cpu_compile): the d = 2 program compiles in ~60% of the
# time; these are float64 statistics, not a sweep's bit-for-bit eNTK, so its last bits may move.
_PAIR_STATISTICS = FastCompiled(_pair_statistics, static_argnums=(0, 1))


def _family_statistics(
    depth: int, a: Array, b: Array, sigma_w: Array, sigma_b: Array, gram: Array
) -> dict[str, Array]:
    return _pair_statistics(TracedFamily(a, b), depth, sigma_w, sigma_b, gram)


_FAMILY_STATISTICS = FastCompiled(_family_statistics, static_argnums=(0,))


def _correlation(G: Array) -> Array:
    """|ρ| of a (d, d) kernel's first pair (1 for one input)."""
    if G.shape[0] == 1:
        return jnp.ones((), G.dtype)
    norm = pair_norm(G[0, 0], G[1, 1])
    return jnp.abs(jnp.where(norm > 0, G[0, 1] / jnp.where(norm > 0, norm, 1.0), 0.0))


def _bucket(size: int, chunk: int) -> int:
    """Batch sizes are padded to powers of two (≥ 8, ≤ chunk): few compiled shapes for any n."""
    return min(chunk, max(8, 1 << (size - 1).bit_length()))


def _run(
    activation: AnyActivation, depth: int, sigma_w: float, sigma_b: float, grams: np.ndarray
) -> dict[str, np.ndarray]:
    """`_pair_statistics` on (P, d, d) Grams in chunks, padded with a harmless set (identity Gram)."""
    size, d = grams.shape[0], grams.shape[1]
    chunk = _bucket(size, FAMILY_CHUNK if isinstance(activation, Activation) else QUADRATURE_CHUNK)
    if d > 2:
        chunk = 1  # all inputs at once (`joint`): one set, whose 4-input rules are large
    parts = []
    for start in range(0, size, chunk):
        block = grams[start : start + chunk]
        # the last block padded only to its own bucket (33 pairs: 32 + 8, not 32 + 32)
        pad = np.broadcast_to(np.eye(d), (_bucket(block.shape[0], chunk) - block.shape[0], d, d))
        batch = jnp.asarray(np.concatenate([block, pad]))
        sigmas = (jnp.asarray(sigma_w), jnp.asarray(sigma_b))
        if isinstance(activation, Activation):
            ab = (jnp.asarray(activation.a), jnp.asarray(activation.b))
            out = _FAMILY_STATISTICS.choose(fast_compile=True)(depth, *ab, *sigmas, batch)
        else:
            out = _PAIR_STATISTICS.choose(fast_compile=True)(activation, depth, *sigmas, batch)
        parts.append({k: np.asarray(v)[: block.shape[0]] for k, v in out.items()})
    return {k: np.concatenate([part[k] for part in parts]) for k in parts[0]}


# --- the public object -------------------------------------------------------------------------
@dataclass(frozen=True)
class FiniteWidth:
    """First-order statistics of K(θ) (NTK or NNGP) of `net` on n inputs.

    Coefficient arrays hold the factor of 1/m_k for each hidden layer k (axis 0, length l − 1),
    for the entries of one output block (n, n) of Θ = n·K — the widths enter only in the
    properties below, which use `net`'s hidden widths (`at` re-evaluates them at others).

    Attributes:
      kernel: "ntk" or "nngp".
      widths: the hidden widths (m_1, …, m_{l−1}) the properties use.
      out_dim: m_l.
      limit: (n, n) the limit Θ^l (or Σ^l) on the inputs.
      mean_coef: (l−1, n, n) coefficients of E[Θ_aa(x_i, x_j)] − Θ^l(x_i, x_j).
      var_coef: (l−1, n, n) of Var Θ_aa(x_i, x_j) (a diagonal output block).
      cross_coef: (l−1, n, n) of Var Θ_ab(x_i, x_j), a ≠ b (zero for the NNGP).
      pair_coef: (l−1, n, n, 3, 3) of Cov between (Θ_aa(x_i,x_i), Θ_aa(x_i,x_j), Θ_aa(x_j,x_j)).
      block_coef: (l−1, n, n) of Cov(Θ_aa(x_i,x_j), Θ_bb(x_i,x_j)), a ≠ b (the part of the
        variance that the output blocks share: A for the NTK, V for the NNGP).
      joint_coef, joint_block_coef, joint_cross_coef: (l−1, n, n, n, n) or None — the
        covariances between any two entries (ij, kl): within one diagonal output block
        Cov(Θ_aa(ij), Θ_aa(kl)), across two Cov(Θ_aa(ij), Θ_bb(kl)), and within an off-diagonal
        block Cov(Θ_ab(ij), Θ_ab(kl)) (Cov(Θ_ab(ij), Θ_ba(kl)) is its (ij, lk) entry). They need
        the 3- and 4-input expectations of every quadruple of inputs: computed when first needed
        (`entry_covariance`, `err_op`) for n ≤ JOINT_MAX_INPUTS, or at once with joint=True.
    """

    kernel: str
    widths: tuple[int, ...]
    out_dim: int
    limit: np.ndarray
    mean_coef: np.ndarray
    var_coef: np.ndarray
    cross_coef: np.ndarray
    pair_coef: np.ndarray
    block_coef: np.ndarray
    joint_coef: np.ndarray | None = None
    joint_block_coef: np.ndarray | None = None
    joint_cross_coef: np.ndarray | None = None
    # () → the three joint coefficients, for computing them when first asked for
    deferred_joint: Callable[[], dict[str, np.ndarray]] | None = dataclasses.field(
        default=None, repr=False, compare=False
    )

    @property
    def n(self) -> int:
        return self.limit.shape[0]

    @property
    def inverse_widths(self) -> np.ndarray:
        return 1.0 / np.asarray(self.widths, np.float64)

    def at(self, widths: tuple[int, ...] | list[int]) -> FiniteWidth:
        """The same statistics at other hidden widths (same depth)."""
        widths = tuple(int(w) for w in widths)
        if len(widths) != len(self.widths):
            raise ValueError(f"finite_width: {len(widths)} widths given for {len(self.widths)} hidden layers")
        return dataclasses.replace(self, widths=widths)

    def _sum(self, coef: np.ndarray) -> np.ndarray:
        return np.tensordot(self.inverse_widths, coef, axes=1)

    def _expand(self, diagonal_block: np.ndarray, off_block: np.ndarray) -> np.ndarray:
        """(n, n) per-block values → (n·m_l, n·m_l), rows (i, a) ↦ i·m_l + a."""
        eye = np.eye(self.out_dim)
        return np.kron(diagonal_block, eye) + np.kron(off_block, 1.0 - eye)

    @property
    def per_layer(self) -> dict[str, np.ndarray]:
        """Each hidden layer's share: "mean_shift", "variance" (l−1, n·m_l, n·m_l) of K, and
        "fro_sq" (l−1,) of E‖K − K∞‖_F², each already divided by that layer's m_k."""
        w = self.inverse_widths[:, None, None]
        n2 = self.n**2
        mean = np.stack([self._expand(c, 0 * c) for c in w * self.mean_coef / self.n])
        var = np.stack(
            [
                self._expand(a, b)
                for a, b in zip(w * self.var_coef / n2, w * self.cross_coef / n2, strict=True)
            ]
        )
        return {"mean_shift": mean, "variance": var, "fro_sq": var.sum(axis=(1, 2))}

    @property
    def mean_shift(self) -> np.ndarray:
        """E[K] − K∞ to first order: (n·m_l, n·m_l) (zero off the diagonal output blocks)."""
        mean = self._sum(self.mean_coef) / self.n
        return self._expand(mean, np.zeros_like(mean))

    @property
    def variance(self) -> np.ndarray:
        """Var of each entry of K to first order: (n·m_l, n·m_l)."""
        n2 = self.n**2
        return self._expand(self._sum(self.var_coef) / n2, self._sum(self.cross_coef) / n2)

    def covariance(self, i: int, j: int) -> np.ndarray:
        """(3, 3) Cov of (K_ii, K_ij, K_jj) within one output block (entries of K = Θ/n)."""
        return self._sum(self.pair_coef[:, i, j]) / self.n**2

    @property
    def expected_fro_sq(self) -> float:
        """E‖K − K∞‖_F² to first order: the sum of the variances (‖E K − K∞‖_F² is O(1/m²))."""
        return float(self.variance.sum())

    @property
    def err_fro(self) -> float:
        """The predicted err_fro, √E‖K − K∞‖_F² (its median over draws agrees to O(1/√(n²)) when
        many entries fluctuate, as E‖·‖² concentrates; measured against Monte Carlo in tests)."""
        return math.sqrt(self.expected_fro_sq)

    def _ensure_joint(self) -> None:
        if self.joint_coef is not None:
            return
        if self.deferred_joint is None:
            raise ValueError(
                f"finite_width: covariances between entries of different pairs need every quadruple "
                f"of inputs, computed for at most JOINT_MAX_INPUTS = {JOINT_MAX_INPUTS} inputs "
                f"(these are {self.n}), by `finite_width` itself"
            )
        for name, value in self.deferred_joint().items():
            object.__setattr__(self, name, value)  # a cache: the same numbers joint=True gives

    def entry_covariance(self) -> np.ndarray:
        """Cov(K_IJ, K_KL) to first order between any two entries of K: (N, N, N, N), N = n·m_l,
        rows (i, a) ↦ i·m_l + a (computed on first use for n ≤ JOINT_MAX_INPUTS: C(n, 4)
        four-input integrals per layer, seconds for n ≤ 6)."""
        self._ensure_joint()
        assert self.joint_coef is not None and self.joint_block_coef is not None
        assert self.joint_cross_coef is not None
        n, m = self.n, self.out_dim
        within, across, cross = (self._sum(c) / n**2 for c in (self.joint_coef, self.joint_block_coef,
                                                                 self.joint_cross_coef))  # fmt: skip
        out = np.zeros((n, m, n, m, n, m, n, m))
        for a, b, c, e in itertools.product(range(m), repeat=4):
            if a == b and c == e:
                out[:, a, :, a, :, c, :, c] = within if a == c else across
            elif a != b and c != e:
                if (a, b) == (c, e):
                    out[:, a, :, b, :, c, :, e] = cross
                elif (a, b) == (e, c):
                    out[:, a, :, b, :, c, :, e] = np.swapaxes(cross, 2, 3)
        return out.reshape((n * m,) * 4)

    def err_op_quantiles(
        self, quantiles: tuple[float, ...] = (0.5,), draws: int = 20_000, seed: int = 0
    ) -> np.ndarray:
        """Quantiles of err_op = ‖K − K∞‖₂ under the Gaussian surrogate of science.md: K − K∞ =
        M + G, M the first-order mean shift and G ~ N(0, first-order covariance of the entries),
        sampled `draws` times (seeded: the same numbers every call). Needs the joint coefficients.

        Why a surrogate: K − E[K] is Gaussian to first order (its higher cumulants are O(1/m²)),
        and the spectral norm of a Gaussian matrix has no closed-form law; sampling it is cheap
        (draws × one (N, N) eigen-decomposition, N = n·m_l)."""
        return np.quantile(self.err_op_draws(draws, seed), quantiles)

    def err_op_draws(self, draws: int = 20_000, seed: int = 0) -> np.ndarray:
        """(draws,) ‖M + G‖₂ sampled from the Gaussian surrogate (see `err_op_quantiles`)."""
        return surrogate_norms(self.mean_shift, self.entry_covariance(), draws, seed)

    @property
    def err_op(self) -> float:
        """The predicted median err_op (`err_op_quantiles`; tested against Monte Carlo)."""
        return float(self.err_op_quantiles((0.5,))[0])


def surrogate_norms(mean: np.ndarray, cov: np.ndarray, draws: int, seed: int) -> np.ndarray:
    """(draws,) ‖M + G‖₂ for M (N, N) and G a symmetric Gaussian matrix with Cov(G_IJ, G_KL) =
    cov (N, N, N, N): the upper triangle is sampled with a seeded generator."""
    size = cov.shape[0]
    rows, cols = np.triu_indices(size)
    flat = cov[rows, cols][:, rows, cols]  # the upper triangle determines the symmetric matrix
    values, vectors = np.linalg.eigh(0.5 * (flat + flat.T))
    root = vectors * np.sqrt(np.clip(values, 0.0, None))
    rng = np.random.default_rng(seed)
    norms = []
    for start in range(0, draws, SURROGATE_BLOCK):  # bounded memory for large n·m_l
        count = min(SURROGATE_BLOCK, draws - start)
        upper = mean[rows, cols][None] + rng.standard_normal((count, len(rows))) @ root.T
        e = np.zeros((count, size, size))
        e[:, rows, cols] = upper
        e[:, cols, rows] = upper
        norms.append(np.abs(np.linalg.eigvalsh(e)).max(axis=1))
    return np.concatenate(norms)


SURROGATE_BLOCK = 2000


def _entry_statistics(kernel: str, state: dict[str, np.ndarray], b: int, g: int) -> tuple[np.ndarray, ...]:
    """(mean, var, cross, block) coefficients of the entry (b, g) of a set: each (P, S)."""
    if kernel == "ntk":
        A, B = state["A"], state["B"]
        var = A[..., b, g, b, g] + B[..., b, g, b, g] + B[..., b, g, g, b]
        return state["h"][..., b, g], var, B[..., b, g, b, g], A[..., b, g, b, g]
    V = state["V"][..., b, g, b, g]
    return state["g"][..., b, g], V, 0 * V, V


def _pair_cov(kernel: str, state: dict[str, np.ndarray]) -> np.ndarray:
    """(P, S, 3, 3) Cov of the entries (00, 01, 11) of 2-input sets within one output block."""
    entries = ((0, 0), (0, 1), (1, 1))
    out = np.zeros((*state["V"].shape[:2], 3, 3))
    for r, (b, g) in enumerate(entries):
        for c, (d, e) in enumerate(entries):
            if kernel == "ntk":
                out[..., r, c] = (
                    state["A"][..., b, g, d, e] + state["B"][..., b, g, d, e] + state["B"][..., b, g, e, d]
                )
            else:
                out[..., r, c] = state["V"][..., b, g, d, e]
    return out


def x64() -> Any:
    """A context with JAX's x64 on (jax ≥ 0.6 names it jax.enable_x64; 0.5.3 jax.experimental)."""
    if hasattr(jax, "enable_x64"):
        return jax.enable_x64(True)
    from jax.experimental import enable_x64  # type: ignore[attr-defined]  # jax < 0.6

    return enable_x64()


# Covariances between entries of different pairs (and the err_op surrogate) for up to this many
# inputs: C(n, 4) four-input rules of ~2.6e6 points per layer (n = 6: ~7 s at depth 4, relu).
JOINT_MAX_INPUTS = 12
# The studies predict err_op (the surrogate's joint covariances) for up to this many inputs: C(8, 4)
# = 70 four-input rules per layer, ~30 s at depth 4 for relu on a 2-core CPU.
ERR_OP_MAX_INPUTS = 8


@overload
def finite_width(net: MLP, x: npt.ArrayLike, kernel: Kernel = "ntk", joint: bool = False) -> FiniteWidth: ...
@overload
def finite_width(
    net: MLP, x: npt.ArrayLike, kernel: tuple[Kernel, ...], joint: bool = False
) -> tuple[FiniteWidth, ...]: ...
def finite_width(
    net: MLP, x: npt.ArrayLike, kernel: Kernel | tuple[Kernel, ...] = "ntk", joint: bool = False
) -> FiniteWidth | tuple[FiniteWidth, ...]:
    """First-order (1/m) mean shift and covariances of `net`'s empirical NTK or NNGP on x.

    Args:
      net: the MLP (any activation, σ_w, σ_b, schedule, out_dim); depth ≥ 2 (a network without
        hidden layers has a deterministic kernel).
      x: (n, m_0) inputs (any norms).
      kernel: "ntk" (K(θ) = (1/n)[Θ_θ(x_i, x_j)]) or "nngp" (the readout layer's kernel), or a
        tuple of them: one recursion serves both (a tuple of results in the same order).
      joint: compute the covariances between entries of different pairs of inputs (4-input
        expectations: `FiniteWidth.entry_covariance`, `err_op`) now rather than on first use;
        either way they need n ≤ JOINT_MAX_INPUTS.
    Returns:
      a `FiniteWidth` (float64; computed with x64 on, whatever JAX's flag outside).
    """
    kernels = tuple(kernel) if isinstance(kernel, tuple | list) else (kernel,)
    for k in kernels:
        if k not in ("ntk", "nngp"):
            raise ValueError(f"finite_width: unknown kernel {k!r}; choose ntk or nngp")
    if net.depth < 2:
        raise ValueError("finite_width: depth 1 has no hidden layer, so its kernel is not random")
    x = np.asarray(x, np.float64)
    if x.ndim != 2:
        raise ValueError(f"finite_width expects inputs of shape (n, in_dim), got {x.shape}")
    n = x.shape[0]
    if joint and n > JOINT_MAX_INPUTS:
        raise ValueError(
            f"finite_width: joint covariances integrate every quadruple of inputs; {n} inputs is more "
            f"than {JOINT_MAX_INPUTS} (pass joint=False, or fewer inputs)"
        )
    sigma_w, sigma_b = net.sigmas
    hidden = net.hidden
    with x64():
        results = _finite_width(
            net.activation, net.depth, float(sigma_w), float(sigma_b), hidden, net.out_dim, x, kernels, joint
        )
    return tuple(results) if isinstance(kernel, tuple | list) else results[0]


FIELDS = ("mean", "var", "cross", "block")


def _finite_width(
    activation: AnyActivation,
    depth: int,
    sigma_w: float,
    sigma_b: float,
    hidden: tuple[int, ...],
    out_dim: int,
    x: np.ndarray,
    kernels: tuple[str, ...],
    joint: bool,
) -> list[FiniteWidth]:
    n = x.shape[0]
    gram = x @ x.T / x.shape[1]
    run: Callable[[_Key], dict[str, np.ndarray]] = functools.cache(
        lambda grams: _run(activation, depth, sigma_w, sigma_b, grams.array)
    )
    results = []
    for kernel in kernels:
        first, parallel = _from_pairs(lambda g: run(_Key(g)), kernel, activation, gram, depth)

        @functools.cache  # shared by every copy `at` makes
        def deferred(kernel: str = kernel, limit: np.ndarray = first.limit, parallel: np.ndarray = parallel):
            with x64():
                return _joint(lambda g: run(_Key(g)), kernel, gram, limit, parallel)

        lazy = deferred if n <= JOINT_MAX_INPUTS else None
        first = dataclasses.replace(first, widths=tuple(hidden), out_dim=out_dim, deferred_joint=lazy)
        if joint:
            first._ensure_joint()
        results.append(first)
    return results


class _Key:
    """A float64 array as a cache key (by value), so both kernels share one run of the recursion."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = np.ascontiguousarray(array, np.float64)
        self._hash = hash((self.array.shape, self.array.tobytes()))

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Key) and np.array_equal(self.array, other.array)


def _from_pairs(
    run: Callable[[np.ndarray], dict[str, np.ndarray]],
    kernel: str,
    activation: AnyActivation,
    gram: np.ndarray,
    depth: int,
) -> tuple[FiniteWidth, np.ndarray]:
    """Every entry's statistics and every pair's (3, 3) covariance, one pair of inputs at a time;
    and (n, n) which pairs (i < j) are exact multiples of each other at every layer."""
    n = gram.shape[0]
    S = depth - 1
    single = run(np.diag(gram).reshape(n, 1, 1))
    diagonal = dict(zip(FIELDS, _entry_statistics(kernel, single, 0, 0), strict=True))
    out = {k: np.zeros((S, n, n)) for k in FIELDS}
    pair = np.zeros((S, n, n, 3, 3))
    limit = np.diag(single["H" if kernel == "ntk" else "G"][:, 0, 0])
    index = np.arange(n)
    for k in FIELDS:
        out[k][:, index, index] = diagonal[k].T
    pair[:, index, index] = diagonal["var"].T[..., None, None]  # (K_ii, K_ii, K_ii): one entry thrice
    rows, cols = np.triu_indices(n, k=1)
    parallel = np.zeros((n, n), bool)
    if len(rows):
        pairs = _equal_variance_pairs(run, kernel, activation, gram, rows, cols)
        if pairs is None:
            pair_grams = np.stack([gram[np.ix_([i, j], [i, j])] for i, j in zip(rows, cols, strict=True)])
            pairs = _pairs(run, kernel, pair_grams)
            parallel[rows, cols] = pairs.pop("parallel")
        limit[rows, cols] = limit[cols, rows] = pairs["limit"]
        for k in FIELDS:
            out[k][:, rows, cols] = out[k][:, cols, rows] = pairs[k].T
        pair[:, rows, cols] = np.moveaxis(pairs["pair"], 0, 1)
        pair[:, cols, rows] = np.moveaxis(pairs["pair"], 0, 1)[..., ::-1, ::-1]
    first = FiniteWidth(kernel, (), 1, limit, out["mean"], out["var"], out["cross"], pair, out["block"])
    return first, parallel


def _joint(
    run: Callable[[np.ndarray], dict[str, np.ndarray]],
    kernel: str,
    gram: np.ndarray,
    limit: np.ndarray,
    parallel: np.ndarray | None,
) -> dict[str, np.ndarray]:
    """The (l−1, n, n, n, n) joint coefficients: the recursion on all n inputs at once.

    An input that is an exact multiple of an earlier one at every layer (x' = −x for odd φ, x' = 2x
    for the family without biases) has K(x', ·) = κ·K(x, ·) exactly, κ = K∞(x, x')/K∞(x, x): it is
    left out of the recursion (whose derivatives are infinite there) and put back scaled."""
    n = gram.shape[0]
    source = np.arange(n)
    if parallel is not None:
        for j in range(n):
            earlier = np.flatnonzero(parallel[:j, j])
            if len(earlier):
                source[j] = source[earlier[0]]
    kept = np.unique(source)
    kappa = limit[source, np.arange(n)] / limit[source, source]
    stats = run(gram[np.ix_(kept, kept)][None])
    A, B, V = (stats[k][0] for k in ("A", "B", "V"))
    if kernel == "ntk":
        within, across, cross = A + B + np.swapaxes(B, 3, 4), A, B
    else:
        within, across, cross = V, V, np.zeros_like(V)
    where = np.searchsorted(kept, source)
    scale = np.einsum("i,j,k,l->ijkl", kappa, kappa, kappa, kappa)

    def expand(c: np.ndarray) -> np.ndarray:
        return c[:, where][:, :, where][:, :, :, where][:, :, :, :, where] * scale

    return {"joint_coef": expand(within), "joint_block_coef": expand(across),
            "joint_cross_coef": expand(cross)}  # fmt: skip


def _pairs(
    run: Callable[[np.ndarray], dict[str, np.ndarray]], kernel: str, grams: np.ndarray
) -> dict[str, np.ndarray]:
    """Statistics of the pairs with Grams (P, 2, 2): "mean", "var", "cross", "block" (P, S) of the
    entry (x, x'), "pair" (P, S, 3, 3) Cov of (K_xx, K_xx', K_x'x'), "limit" (P,)."""
    stats = run(grams)
    # copies: `stats` is cached for the other kernel, and the parallel pairs are written below
    out = {k: np.array(v) for k, v in zip(FIELDS, _entry_statistics(kernel, stats, 0, 1), strict=True)}
    out["pair"] = _pair_cov(kernel, stats)
    last = stats["H" if kernel == "ntk" else "G"]
    out["limit"] = last[:, 0, 1]
    flags = _parallel_pairs(stats["rho"])
    out["parallel"] = flags
    parallel = np.flatnonzero(flags)
    if len(parallel):
        # Θ(x, x') = κ·Θ(x, x) and Θ(x', x') = κ'·Θ(x, x) exactly, at every width.
        first = dict(
            zip(FIELDS, _entry_statistics(kernel, run(grams[parallel][:, :1, :1]), 0, 0), strict=True)
        )
        kappa = last[parallel, 0, 1] / last[parallel, 0, 0]
        scale = np.stack([np.ones_like(kappa), kappa, last[parallel, 1, 1] / last[parallel, 0, 0]], axis=-1)
        for k, power in zip(FIELDS, (1, 2, 2, 2), strict=True):
            out[k][parallel] = kappa[:, None] ** power * first[k]
        out["pair"][parallel] = first["var"][..., None, None] * (
            scale[:, None, :, None] * scale[:, None, None, :]
        )
    return out


def _equal_variance_pairs(
    run: Callable[[np.ndarray], dict[str, np.ndarray]],
    kernel: str,
    activation: AnyActivation,
    gram: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
) -> dict[str, np.ndarray] | None:
    """For many inputs of one norm and φ without a closed form, the pair statistics as functions of
    the angle α = arccos ρ, interpolated from Chebyshev points (as `ntksim.activations.interpolate`
    does for the limit; analytic in α for kinks at 0), accepted when a twice finer set agrees to
    INTERPOLATION_TOLERANCE of each statistic's scale; None where it does not apply or converge."""
    q = np.diag(gram)
    if (
        isinstance(activation, Activation)
        or len(rows) < INTERPOLATE_MIN_PAIRS
        or any(k != 0.0 for k in activation.kinks)
        or q[0] <= 0
        or np.max(np.abs(q - q[0])) > 64 * np.finfo(np.float64).eps * q[0]
    ):
        return None
    q0 = float(q[0])
    alpha = np.arccos(np.clip(gram[rows, cols] / q0, -1.0, 1.0))

    def at(angles: np.ndarray) -> dict[str, np.ndarray]:
        rho = np.cos(angles)
        rho[angles == 0.0], rho[angles == math.pi] = 1.0, -1.0
        grams = q0 * np.stack([np.ones_like(rho), rho, rho, np.ones_like(rho)], axis=-1).reshape(-1, 2, 2)
        out = _pairs(run, kernel, grams)
        out.pop("parallel")
        return out

    count = FIRST_NODES
    angles = _chebyshev_angles(count)
    values = at(angles)
    while count <= INTERPOLATION_MAX_NODES:
        finer = _chebyshev_angles(2 * count - 1)
        new = at(finer[1::2])
        error = 0.0
        for key, coarse in values.items():
            predicted = _interpolate(angles, coarse, finer[1::2])
            scale = max(np.abs(coarse).max(), np.abs(new[key]).max(), 1e-300)
            error = max(error, float(np.abs(predicted - new[key]).max()) / scale)
        merged = {k: np.zeros((2 * count - 1, *v.shape[1:])) for k, v in values.items()}
        for k in merged:
            merged[k][0::2], merged[k][1::2] = values[k], new[k]
        angles, values, count = finer, merged, 2 * count - 1
        if error < INTERPOLATION_TOLERANCE:
            return {k: _interpolate(angles, v, alpha) for k, v in values.items()}
    return None


def _interpolate(nodes: np.ndarray, values: np.ndarray, points: np.ndarray) -> np.ndarray:
    """`_barycentric` of values (N, …) at Chebyshev `nodes`, at `points` (P,) → (P, …)."""
    flat = jnp.asarray(values.reshape(len(nodes), -1))
    out = np.asarray(_barycentric(jnp.asarray(nodes), flat, jnp.asarray(points)))
    return out.reshape((len(points), *values.shape[1:]))


def _parallel_pairs(rho: np.ndarray) -> np.ndarray:
    """(P,) bool from |ρ| (P, depth) at every layer: pairs whose pre-activations are exactly
    ±proportional throughout (computed from their diagonal instead).

    A pair parallel at a hidden layer after the first without being so throughout is refused:
    its transverse derivatives are infinite there (ValueError)."""
    flat = rho >= 1 - PARALLEL
    everywhere = flat.all(axis=1)
    later = flat[:, 1:-1].any(axis=1)  # layers whose map is differentiated (not the first, not the output)
    if (later & ~everywhere).any():
        raise ValueError(
            "finite_width: an input pair becomes exactly parallel at a hidden layer after the "
            "first without being so throughout; its first-order statistics are not defined there"
        )
    return cast(np.ndarray, everywhere)  # rho is (P, depth), so this is (P,), not a scalar
