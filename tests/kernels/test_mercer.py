"""Funk–Hecke eigenvalues against independent references: adaptive quadrature of a closed form
written here, Gram-matrix eigenvalues on random sphere points, Mercer's trace, and the exact zeros
that parity and polynomial φ force. float64 whatever the x64 flag (mercer runs in its own scope)."""

from __future__ import annotations

import itertools
import math
import warnings

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, interpolate, special

import ntksim
from ntksim.activations import activation
from ntksim.kernels.limits import pair_recursion
from ntksim.kernels.mercer import (
    angular_kernels,
    gegenbauer,
    harmonic_dimension,
    kernel_at_one,
    kernel_function,
    kink_order,
    mercer_eigenvalues,
    multiplicities,
    predicted_decay,
)

EPS = float(np.finfo(np.float64).eps)


def relu_ntk_depth2(theta: np.ndarray) -> np.ndarray:
    """Θ² of relu at σ_w = √2, σ_b = 0 for inputs of norm √d at angle θ (arc-cosine kernels of
    degree 1 and 0, Cho & Saul): Σ² = (sin θ + (π − θ) cos θ)/π · 2·... written out here."""
    sigma2 = 2 * (np.sin(theta) + (np.pi - theta) * np.cos(theta)) / np.pi  # σ_w² E[relu relu], q = 2
    dot = (np.pi - theta) / np.pi  # σ_w² E[relu' relu'] = 2 · (π − θ)/(2π)
    return sigma2 + dot * 2 * np.cos(theta)


def normalised_gegenbauer(dim: int, k: int, t: float) -> float:
    if dim == 2:
        return float(special.eval_chebyt(k, t))
    if dim == 3:
        return float(special.eval_legendre(k, t))
    lam = (dim - 2) / 2
    return float(special.eval_gegenbauer(k, lam, t) / special.eval_gegenbauer(k, lam, 1.0))


def adaptive_funk_hecke(kappa, dim: int, k: int) -> float:
    """μ_k by scipy's adaptive quadrature in θ over max(k, 4) panels (independent of mercer.py)."""
    c = math.gamma(dim / 2) / (math.sqrt(math.pi) * math.gamma((dim - 1) / 2))

    def f(theta: float) -> float:
        return kappa(theta) * normalised_gegenbauer(dim, k, math.cos(theta)) * math.sin(theta) ** (dim - 2)

    edges = np.linspace(0, math.pi, max(k, 4) + 1)
    with warnings.catch_warnings():  # quad warns when round-off stops it short of 1e-13: fine at 1e-7
        warnings.simplefilter("ignore", integrate.IntegrationWarning)
        return c * sum(
            integrate.quad(f, a, b, epsabs=1e-17, epsrel=1e-13, limit=200)[0]
            for a, b in itertools.pairwise(edges)
        )


@pytest.mark.parametrize("dim", [2, 3, 5])
def test_relu_eigenvalues_match_adaptive_quadrature_to_k_200(dim: int) -> None:
    mu = mercer_eigenvalues("relu", depth=2, dim=dim, kmax=200)
    scale = relu_ntk_depth2(np.array(0.0))
    for k in (0, 1, 2, 3, 4, 7, 10, 51, 100, 150, 199, 200):
        ref = adaptive_funk_hecke(lambda t: float(relu_ntk_depth2(np.array(t))), dim, k)
        if abs(ref) < 1e-14 * scale:  # an exact zero (odd k ≥ 3 at depth 2): only the floor
            assert abs(mu[k]) < 100 * EPS * scale, (k, mu[k])  # the sum's round-off, π·κ(1)·eps·(a few)
        else:
            assert mu[k] == pytest.approx(ref, rel=1e-7), k


def test_multiplicities_and_normalisation() -> None:
    assert [harmonic_dimension(3, k) for k in range(5)] == [1, 3, 5, 7, 9]
    assert [harmonic_dimension(2, k) for k in range(4)] == [1, 2, 2, 2]
    # N(d, k) = C(k+d−1, d−1) − C(k+d−3, d−1): harmonic polynomials of degree k in d variables
    for dim in (4, 5, 9):
        for k in range(1, 8):
            assert harmonic_dimension(dim, k) == math.comb(k + dim - 1, dim - 1) - math.comb(
                k + dim - 3, dim - 1
            )
    t = np.linspace(-1, 1, 7)
    for dim in (2, 3, 6):
        p = gegenbauer(dim, 12, t)
        assert np.allclose(p[:, -1], 1.0)
        assert np.allclose(p[7], [normalised_gegenbauer(dim, 7, v) for v in t], atol=1e-13)


@pytest.mark.parametrize(
    ("name", "kernel", "kmax"),
    [("tanh", "ntk", 60), ("elu", "ntk", 150), ("elu", "nngp", 80), ("relu", "nngp", 400)],
)
def test_trace_is_the_kernel_on_the_diagonal(name: str, kernel: str, kmax: int) -> None:
    """Σ_k N(d, k) μ_k = κ(1) (Mercer); the tail beyond kmax is bounded by its power law."""
    act = activation(name)
    sigma_w, sigma_b = ntksim.resolve_sigmas(act)
    mu = mercer_eigenvalues(act, 3, 3, kmax, kernel)
    total = float(multiplicities(3, kmax) @ mu)
    kappa_one = kernel_at_one(act, 3, sigma_w, sigma_b, kernel)
    s = predicted_decay(act, kernel, 3)
    # Σ_{k>K} (2k+1)·μ̄_K (k/K)^{−s} ≈ μ̄_K (2K+1) K/(s − 2), μ̄_K the mean of the last even and odd μ
    # (their constants differ: ELU's odd μ_k are twice its even ones at depth 3)
    mean_last = (mu[kmax] + mu[kmax - 1]) / 2
    tail = 0.0 if not np.isfinite(s) else mean_last * (2 * kmax + 1) * kmax / (s - 2)
    assert abs(kappa_one - total - tail) < 0.1 * tail + 1e-12 * kappa_one, (kappa_one, total, tail)


def _gram_kernel(act, depth: int, kernel: str):
    """κ(t) from ntksim.kernels.limits.pair_recursion (direct 2-D quadrature pair by pair, not the
    interpolant mercer.py uses), on a fine θ grid, splined in θ."""
    sigma_w, sigma_b = ntksim.resolve_sigmas(act)
    theta = np.linspace(0, np.pi, 801)
    ones = np.ones_like(theta)
    out = pair_recursion(act, sigma_w, sigma_b, ones, ones, np.cos(theta), depth)
    values = out["t12" if kernel == "ntk" else "s12"][depth - 1]
    spline = interpolate.CubicSpline(theta, values)
    return lambda t: spline(np.arccos(np.clip(t, -1, 1)))


@pytest.mark.parametrize(
    ("name", "depth", "kernel"), [("relu", 3, "ntk"), ("tanh", 3, "ntk"), ("elu", 3, "nngp")]
)
def test_gram_eigenvalues_approach_funk_hecke_in_blocks(name: str, depth: int, kernel: str) -> None:
    """On n = 2500 uniform points of S², the eigenvalues of [κ(x_i·x_j/3)]/n come in blocks of
    2k + 1 near μ_k; block means agree to the O(n^{-1/2}) the sample allows."""
    act = activation(name)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2500, 3))
    x *= np.sqrt(3) / np.linalg.norm(x, axis=1, keepdims=True)
    t = np.clip(x @ x.T / 3, -1, 1)
    if name == "relu":  # the family's closed form through the public API
        net = ntksim.MLP(act, depth=depth, width=1)
        with_x64 = jnp.asarray(x)
        gram = np.asarray(ntksim.limit_ntk(net, with_x64), np.float64)  # already / n
    else:
        gram = _gram_kernel(act, depth, kernel)(t) / len(x)
    eig = np.sort(np.linalg.eigvalsh(gram))[::-1]
    mu = mercer_eigenvalues(act, depth, 3, 12, kernel)
    expected = np.sort(np.repeat(mu, multiplicities(3, 12).astype(int)))[::-1]
    top = int(np.sum(expected > 0.02 * expected[0]))  # the well-separated leading eigenvalues
    assert top >= 4
    assert np.allclose(eig[:top], expected[:top], rtol=0.08, atol=0.004 * expected[0]), (
        eig[:top],
        expected[:top],
    )


def test_linear_network_has_one_eigenvalue_and_bias_adds_k0() -> None:
    for depth in (2, 3, 5):
        for kernel in ("ntk", "nngp"):
            mu = mercer_eigenvalues("linear", depth, 3, 20, kernel)
            assert mu[1] > 0.1 and np.all(np.abs(np.delete(mu, 1)) < 20 * EPS * mu[1])
            mu = mercer_eigenvalues("linear", depth, 3, 20, kernel, sigma_w=1.0, sigma_b=0.5)
            assert mu[0] > 0.01 and mu[1] > 0.1
            assert np.all(np.abs(mu[2:]) < 20 * EPS * mu[1])


@pytest.mark.parametrize("power", [2, 3])
def test_monomial_count_grows_like_the_polynomial_degree(power: int) -> None:
    """s^p without bias: κ is a polynomial of degree D = p^(l−1) in t with only D's parity, so
    exactly ⌊D/2⌋ + 1 eigenvalues are non-zero, at k ≤ D of D's parity."""
    for depth in (2, 3, 4) if power == 2 else (2, 3):
        degree = power ** (depth - 1)
        mu = mercer_eigenvalues(f"monomial({power})", depth, 3, 40, "ntk", sigma_w=1.0)
        scale = np.max(np.abs(mu))
        nonzero = set(np.flatnonzero(np.abs(mu) > 1e-13 * scale))
        assert nonzero == {k for k in range(degree + 1) if k % 2 == degree % 2}, (depth, sorted(nonzero))


@pytest.mark.parametrize("depth", [2, 3, 5])
def test_abs_without_bias_has_no_odd_eigenvalue(depth: int) -> None:
    for kernel in ("ntk", "nngp"):
        mu = mercer_eigenvalues("abs", depth, 3, 200, kernel)
        odd, even = mu[1::2], mu[0::2]
        assert np.max(np.abs(odd)) < 10 * EPS * mu[0]
        assert np.all(even[:50] > 1e3 * 10 * EPS * mu[0])


def test_relu_depth_two_loses_odd_harmonics_above_one_and_depth_three_has_them() -> None:
    two = mercer_eigenvalues("relu", 2, 3, 60)
    three = mercer_eigenvalues("relu", 3, 3, 60)
    assert two[1] > 0.1 and np.max(np.abs(two[3::2])) < 10 * EPS * two[0]
    assert np.all(three[3::2] > 1e-9)


def test_mercer_is_float64_without_x64_and_matches_a_forced_node_count() -> None:
    mu = mercer_eigenvalues("elu", 4, 3, 120, "ntk")
    assert mu.dtype == np.float64
    finer = mercer_eigenvalues("elu", 4, 3, 120, "ntk", nodes=1200)
    assert np.max(np.abs(mu - finer)) < 1e-12 * np.max(mu)  # the quadrature's floor: ~1e-14 of κ(1)


def test_kernel_function_interpolates_the_recursion() -> None:
    act = activation("selu")
    sigma_w, sigma_b = ntksim.resolve_sigmas(act)
    kappa = kernel_function(act, 4, sigma_w, sigma_b, "nngp")
    t = np.r_[np.linspace(-1, 1, 57), 1 - np.logspace(-12, -1, 9)]
    direct = angular_kernels(act, 4, sigma_w, sigma_b, t)[0]
    assert np.max(np.abs(kappa(t) - direct)) < 1e-12 * direct.max()


def test_kink_orders_give_science_md_exponents() -> None:
    assert [kink_order(activation(n)) for n in ("relu", "abs", "selu", "elu", "elu(0.5)", "tanh")] == [
        1,
        1,
        1,
        2,
        1,
        None,
    ]
    assert predicted_decay(activation("relu"), "ntk", 3) == 3
    assert predicted_decay(activation("relu"), "nngp", 3) == 5
    assert predicted_decay(activation("elu"), "ntk", 5) == 7
    assert math.isnan(predicted_decay(activation("gelu"), "ntk", 3))


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"dim": 1}, "dim must be an integer from 2"),
        ({"kmax": -1}, "kmax must be an integer from 0"),
        ({"depth": 0}, "depth must be a positive integer"),
        ({"kernel": "cntk"}, "unknown kernel"),
    ],
)
def test_bad_arguments_are_one_line_errors(kwargs: dict, words: str) -> None:
    args = {"act": "relu", "depth": 2, "dim": 3, "kmax": 10} | kwargs
    with pytest.raises(ValueError, match=words):
        mercer_eigenvalues(**args)


def test_an_activation_without_eoc_needs_sigma_w() -> None:
    with pytest.raises(ntksim.NoEOCPoint, match="gelu"):
        mercer_eigenvalues("gelu", 2, 3, 10)
    assert mercer_eigenvalues("gelu", 2, 3, 10, sigma_b=0.5)[1] > 0


@pytest.mark.parametrize("dim", [2, 4, 7, 50, 300])
def test_funk_hecke_of_exp_matches_bessel_in_every_dimension(dim: int) -> None:
    """κ(t) = e^t has μ_k = Γ(d/2) 2^{(d−2)/2} I_{k+(d−2)/2}(1) (a Bessel closed form independent of
    the Gegenbauer recurrence); the default rule must resolve the weight sin^{d−2}θ in high d."""
    from ntksim.kernels.mercer import default_nodes, funk_hecke, theta_rule

    kmax = 12
    nodes, _ = theta_rule(default_nodes(kmax, dim))
    mu = funk_hecke(np.exp(np.cos(nodes)), dim, kmax)
    nu = np.arange(kmax + 1) + (dim - 2) / 2
    # log I_ν(1) from its series Σ_j (1/2)^{2j+ν} / (j! Γ(j+ν+1)) (special.iv underflows at ν ≳ 150)
    j = np.arange(30)[:, None]
    terms = -(2 * j + nu) * math.log(2) - special.gammaln(j + 1) - special.gammaln(j + nu + 1)
    log_iv = special.logsumexp(terms, axis=0)
    log_expected = math.lgamma(dim / 2) + (dim - 2) / 2 * math.log(2) + log_iv
    np.testing.assert_allclose(mu, np.exp(log_expected), rtol=1e-11, atol=1e-15 * mu[0])  # round-off floor


def test_too_few_nodes_are_refused() -> None:
    with pytest.raises(ValueError, match="nodes: 8 cannot resolve k ≤ 200"):
        mercer_eigenvalues("relu", 2, 3, 200, nodes=8)
    assert np.isinf(multiplicities(1000, 400)[-1])  # N(1000, 400) > 1e308: inf, not a crash
