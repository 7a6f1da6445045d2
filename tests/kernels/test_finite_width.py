"""The 1/m theory of finite-width kernels (ntksim.kernels.finite_width) against independent references:
cases exact at every width (derived in closed form here, integrated with SciPy), known zeros and
rates from the literature, and Monte Carlo of ntksim's structured eNTK (an independent computation
of the same random kernel)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

import ntksim
from ntksim.kernels.finite_width import finite_width, x64
from ntksim.kernels.limits import limit_kernels
from ntksim.nets.empirical import empirical_nngp_seeds, empirical_ntk_seeds
from ntksim.studies.fluctuations import inputs as study_inputs
from tests.conftest import REFERENCE, X64

# finite_width computes in float64 whatever JAX's flag (and these tests draw float64 kernels), so
# the heavier tests run once, in the x64 pass; the float32 pass keeps the light ones, which check
# that the flag being off changes nothing. The Monte Carlo runs in the current profile only.
ONCE = pytest.mark.skipif(not X64, reason="float64 whatever the flag: runs in the x64 pass")
CURRENT_ONLY = pytest.mark.skipif(
    REFERENCE, reason="heavy (Monte Carlo, many pairs): the current profile runs it"
)


def inputs(cosines: tuple[float, ...], norms: tuple[float, ...] | None = None, dim: int = 3) -> np.ndarray:
    """x_0 = √dim·e_1 and x_k at cosine c_k to it, scaled by `norms` (the fluctuations study's points)."""
    return study_inputs(list(cosines), None if norms is None else list(norms), dim)


def gaussian_moment(f, q1: float, q2: float, c: float) -> float:
    """E[f(u, v)], (u, v) ~ N(0, [[q1, c], [c, q2]]), by SciPy's adaptive quadrature in the standard
    coordinates, split where u or v changes sign (the family's kinks)."""
    rho = c / math.sqrt(q1 * q2)
    s = math.sqrt(max(0.0, 1 - rho * rho))

    def integrand(z2: float, z1: float) -> float:
        u, v = math.sqrt(q1) * z1, math.sqrt(q2) * (rho * z1 + s * z2)
        return f(u, v) * math.exp(-0.5 * (z1 * z1 + z2 * z2)) / (2 * math.pi)

    total = 0.0
    for lo, hi in ((-9.0, 0.0), (0.0, 9.0)):
        # the inner kink v = 0 sits at z2 = −ρ z1 / s
        def inner(z1: float) -> float:
            cut = -rho * z1 / s if s > 0 else 0.0
            pieces = [(-9.0, min(max(cut, -9.0), 9.0)), (min(max(cut, -9.0), 9.0), 9.0)]
            return sum(
                integrate.quad(integrand, a, b, args=(z1,), epsabs=1e-13, epsrel=1e-12)[0] for a, b in pieces
            )

        total += integrate.quad(inner, lo, hi, epsabs=1e-12, epsrel=1e-11, limit=200)[0]
    return total


# φ and φ' written again in NumPy for the SciPy references (not ntksim's JAX definitions).
NUMPY_PHI = {
    "relu": (lambda s: max(s, 0.0), lambda s: float(s > 0)),
    "abs": (abs, lambda s: math.copysign(1.0, s)),
    "tanh": (math.tanh, lambda s: 1 - math.tanh(s) ** 2),
    "elu": (lambda s: s if s > 0 else math.expm1(s), lambda s: 1.0 if s > 0 else math.exp(s)),
    "gelu": (lambda s: 0.5 * s * (1 + math.erf(s / math.sqrt(2))),
             lambda s: 0.5 * (1 + math.erf(s / math.sqrt(2))) + s * math.exp(-s * s / 2) / math.sqrt(2 * math.pi)),  # noqa: E501
}  # fmt: skip

FAMILY = {"relu": (0.5, 0.5), "abs": (0.0, 1.0), "linear": (1.0, 0.0), "leaky_relu(0.2)": (0.6, 0.4)}


# --- exact at every width -------------------------------------------------------------------
@pytest.mark.parametrize("name", list(FAMILY))
@pytest.mark.parametrize("sigma_w_factor", [1.0, 1.3])
def test_family_nngp_of_one_input_is_a_product_of_independent_layer_factors(name, sigma_w_factor):
    """For φ = a·s + b·|s| and one input, Σ̂^{k+1} = Σ̂^k·X_k with X_k = (σ_w²/m_k)Σ_a φ(z_a)², z iid
    N(0, 1), independent across layers: E Σ̂^l = G¹χ^{l−1} exactly and Var Σ̂^l =
    (G¹)²[Π_k(χ² + σ_w⁴ Var φ(z)²/m_k) − χ^{2(l−1)}], Var φ(z)² = 2(a²+b²)² + 12a²b². Its 1/m_k
    coefficient (G¹)² χ^{2(l−2)} σ_w⁴ Var φ(z)² is what the recursion must give, with no mean shift."""
    a, b = FAMILY[name]
    depth = 4
    sigma_w = sigma_w_factor / math.sqrt(a * a + b * b)
    net = ntksim.MLP(name, depth=depth, width=10, schedule=[10, 20, 30], sigma_w=sigma_w)
    x = inputs(()) * 1.7
    fw = finite_width(net, x, "nngp")
    g1 = sigma_w**2 * float(x[0] @ x[0]) / x.shape[1]
    chi = sigma_w**2 * (a * a + b * b)
    var_phi2 = 2 * (a * a + b * b) ** 2 + 12 * a * a * b * b
    expected = g1**2 * chi ** (2 * (depth - 2)) * sigma_w**4 * var_phi2
    np.testing.assert_allclose(fw.var_coef[:, 0, 0], expected, rtol=1e-11)
    np.testing.assert_allclose(fw.mean_coef[:, 0, 0], 0.0, atol=1e-12 * g1)
    np.testing.assert_allclose(fw.limit[0, 0], g1 * chi ** (depth - 1), rtol=1e-12)


def test_family_nngp_of_one_input_monte_carlo_matches_the_exact_product_formula():
    """The exact formula above against ntksim's empirical NNGP at a narrow width (m = 6, where first
    order alone is off by 20%): the simulation and the derivation agree at every width, and the
    first-order prediction is the formula's expansion (so it sits below the measurement)."""
    depth, width, seeds = 4, 6, 6000
    net = ntksim.MLP("relu", depth=depth, width=width, schedule="constant")
    x = inputs(())
    keys = jax.random.split(jax.random.PRNGKey(3), seeds)
    with x64():
        net64 = ntksim.MLP("relu", depth=depth, width=width, schedule="constant", dtype=jnp.float64)
        k = np.asarray(empirical_nngp_seeds(net64, keys, jnp.asarray(x)))[:, 0, 0]
    g1 = 2.0
    exact = g1**2 * ((1 + 5 / width) ** (depth - 1) - 1)
    measured, se = k.var(), math.sqrt((np.mean((k - k.mean()) ** 4) - k.var() ** 2) / seeds)
    assert abs(measured - exact) < 3.5 * se, (measured, exact, se)
    first_order = finite_width(net, x, "nngp").variance[0, 0]
    assert first_order == pytest.approx(g1**2 * 5 * (depth - 1) / width, rel=1e-12)
    assert first_order < exact - 3 * se  # the remainder is positive and resolved here


@ONCE
@pytest.mark.parametrize("name, sigma_b, cosine", [("relu", 0.0, 0.5), ("abs", 0.0, -0.5), ("tanh", 0.3, 0.2),
                                                   ("elu", 0.2, 0.9), ("gelu", 0.5, -0.3)])  # fmt: skip
def test_one_hidden_layer_is_a_mean_of_iid_terms(name, sigma_b, cosine):
    """With one hidden layer Θ(x, x') = σ_b² + (1/m)Σ_i t_i exactly, t_i = σ_w²[φ(u_i)φ(v_i) +
    w_i² φ'(u_i)φ'(v_i) G¹(x, x')] iid: Var Θ = Var t/m, no mean shift, and with two outputs
    Var Θ_ab = σ_w⁴ G¹² E[φ'(u)²φ'(v)²]/m and Cov(Θ_aa, Θ_bb) = Var(σ_w²[φφ + φ'φ'G¹])/m. The
    moments here come from SciPy's adaptive quadrature, not from ntksim."""
    act = ntksim.activation(name)
    net = ntksim.MLP(act, depth=2, width=7, out_dim=2, sigma_b=sigma_b or None)
    sigma_w, sigma_b = net.sigmas
    x = inputs((cosine,), norms=(1.0, 0.8))
    fw = finite_width(net, x)
    gram = x @ x.T / x.shape[1]
    g = sigma_w**2 * gram + sigma_b**2
    q1, q2, c = g[0, 0], g[1, 1], g[0, 1]
    phi, dphi = NUMPY_PHI[name]
    cache = {}

    def moment(key, f):
        if key not in cache:
            cache[key] = gaussian_moment(f, q1, q2, c)
        return cache[key]

    pp = moment("pp", lambda u, v: phi(u) * phi(v))
    dd = moment("dd", lambda u, v: dphi(u) * dphi(v))
    pp2 = moment("pp2", lambda u, v: (phi(u) * phi(v)) ** 2)
    dd2 = moment("dd2", lambda u, v: (dphi(u) * dphi(v)) ** 2)
    pd = moment("pd", lambda u, v: phi(u) * phi(v) * dphi(u) * dphi(v))
    var_t = sigma_w**4 * (pp2 - pp**2 + 2 * c * (pd - pp * dd) + c**2 * (3 * dd2 - dd**2))
    block = sigma_w**4 * (pp2 - pp**2 + 2 * c * (pd - pp * dd) + c**2 * (dd2 - dd**2))
    np.testing.assert_allclose(fw.var_coef[0, 0, 1], var_t, rtol=1e-9)
    np.testing.assert_allclose(fw.cross_coef[0, 0, 1], sigma_w**4 * c**2 * dd2, rtol=1e-9)
    np.testing.assert_allclose(fw.block_coef[0, 0, 1], block, rtol=1e-9)
    np.testing.assert_allclose(fw.mean_coef[0], 0.0, atol=1e-13)
    # and the variances and (i, j) covariances appear where the API says
    assert fw.variance.shape == (4, 4) and fw.mean_shift.shape == (4, 4)
    np.testing.assert_allclose(fw.variance[0, 2], var_t / 7 / 4, rtol=1e-12)  # (i=0,a=0), (j=1,a=0)
    np.testing.assert_allclose(fw.variance[0, 3], sigma_w**4 * c**2 * dd2 / 7 / 4, rtol=1e-9)
    np.testing.assert_allclose(fw.covariance(0, 1)[1, 1], fw.variance[0, 2], rtol=1e-12)


# --- known facts ---------------------------------------------------------------------------
@ONCE
@pytest.mark.parametrize("name", list(FAMILY))
def test_family_diagonal_ntk_has_no_mean_shift(name):
    """Scale-invariant φ without bias: E Θ(x, x) = Θ^l(x, x) to first order (Guillen et al.), at
    every depth; off the diagonal the shift is not zero (so the test is not vacuous)."""
    net = ntksim.MLP(name, depth=6, width=32, schedule="constant")
    fw = finite_width(net, inputs((0.3,)))
    np.testing.assert_allclose(np.diagonal(fw.mean_coef, axis1=1, axis2=2), 0.0, atol=1e-11)
    if name != "linear":
        assert np.abs(fw.mean_coef[:, 0, 1]).max() > 1e-3


@ONCE
def test_relu_forward_norm_fluctuates_like_exp_5_beta():
    """Hanin (2018), Hanin & Nica: for ReLU without bias E[Σ̂(x,x)²]/E[Σ̂(x,x)]² = Π_k(1 + 5/m_k) ≈
    e^{5β}, β = Σ_k 1/m_k: every hidden layer adds exactly 5/m_k to the relative variance of the
    forward kernel (Var φ(z)²·σ_w⁴ = (3/2 − 1/4)·4). For the NTK Hanin & Nica state the same growth
    e^{5β} only up to constants; its first-order coefficients (tested against Monte Carlo below)
    are smaller, 3 to 3.5 per layer in the NTK parameterization, largest at both ends."""
    depth = 12
    net = ntksim.MLP("relu", depth=depth, width=50, schedule="constant")
    x = inputs(())
    nngp = finite_width(net, x, "nngp")
    np.testing.assert_allclose(nngp.var_coef[:, 0, 0] / nngp.limit[0, 0] ** 2, 5.0, rtol=1e-12)
    ntk = finite_width(net, x, "ntk")
    per_layer = ntk.var_coef[:, 0, 0] / ntk.limit[0, 0] ** 2
    assert np.all((per_layer > 2.5) & (per_layer < 5.0)), per_layer
    np.testing.assert_allclose(per_layer, per_layer[::-1], rtol=1e-9)  # forward ↔ backward symmetry


# --- consistency of the object ----------------------------------------------------------------
@ONCE
def test_limit_and_per_layer_and_widths_are_consistent():
    net = ntksim.MLP("tanh", depth=4, width=16, sigma_b=0.1)
    x = inputs((0.4, -0.7), norms=(1.0, 1.5, 0.6))
    fw = finite_width(net, x)
    _sigma, theta = limit_kernels(net, jnp.asarray(x, jnp.float64) if jax.config.jax_enable_x64 else x)
    np.testing.assert_allclose(
        fw.limit, np.asarray(theta), rtol=2e-5 if not jax.config.jax_enable_x64 else 1e-10
    )
    parts = fw.per_layer
    np.testing.assert_allclose(parts["variance"].sum(0), fw.variance, rtol=1e-12)
    np.testing.assert_allclose(parts["mean_shift"].sum(0), fw.mean_shift, rtol=1e-12, atol=1e-300)
    assert fw.expected_fro_sq == pytest.approx(parts["fro_sq"].sum(), rel=1e-12)
    wider = fw.at([2 * w for w in net.hidden])
    np.testing.assert_allclose(wider.variance, fw.variance / 2, rtol=1e-12)
    cov = fw.covariance(0, 2)
    np.testing.assert_allclose(
        np.diag(cov), [fw.variance[0, 0], fw.variance[0, 2], fw.variance[2, 2]], rtol=1e-12
    )
    assert np.all(np.linalg.eigvalsh(cov) > -1e-12 * np.abs(cov).max())  # a covariance


@ONCE
@pytest.mark.parametrize("name, scale", [("abs", -1.0), ("linear", -1.0), ("relu", 2.0), ("tanh", -1.0)])
def test_parallel_pairs_are_multiples_of_the_diagonal(name, scale):
    """x' = s·x without biases, for φ that keep the pair parallel (even φ and s = −1; odd φ and
    s = −1; positively homogeneous φ and s > 0): Θ(x, x') = κΘ(x, x) for every draw, so its
    statistics are the diagonal's times κ (mean) and κ² (variance)."""
    x = inputs(())
    x = np.concatenate([x, scale * x])
    fw = finite_width(ntksim.MLP(name, depth=4, width=32), x)
    kappa = fw.limit[0, 1] / fw.limit[0, 0]
    np.testing.assert_allclose(fw.var_coef[:, 0, 1], kappa**2 * fw.var_coef[:, 0, 0], rtol=1e-12)
    np.testing.assert_allclose(fw.mean_coef[:, 0, 1], kappa * fw.mean_coef[:, 0, 0], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(
    "bad, message", [({"kernel": "cka"}, "unknown kernel"), ({"depth": 1}, "no hidden layer")]
)
def test_bad_arguments_are_one_clear_error(bad, message):
    net = ntksim.MLP("relu", depth=bad.get("depth", 3), width=8)
    with pytest.raises(ValueError, match=message):
        finite_width(net, inputs(()), bad.get("kernel", "ntk"))


# --- Monte Carlo of the structured eNTK ----------------------------------------------------------
def measured(net: ntksim.MLP, x: np.ndarray, kernel: str, seeds: int, seed: int = 0):
    """Mean and variance of K(θ) − K∞ over seeds, with their standard errors (float64 kernels)."""
    keys = jax.random.split(jax.random.PRNGKey(seed), seeds)
    with x64():
        net64 = net.clone(dtype=jnp.float64)
        fn = empirical_ntk_seeds if kernel == "ntk" else empirical_nngp_seeds
        k = np.asarray(fn(net64, keys, jnp.asarray(x, jnp.float64)))
    return k


CASES = [  # activation, σ_b, depth, width, schedule, cosines, kernel
    ("relu", 0.0, 3, 64, "constant", (0.5, -1.0), "ntk"),
    ("relu", 0.0, 3, 64, "constant", (0.5, -1.0), "nngp"),
    ("relu", 0.0, 8, 128, "constant", (0.5,), "ntk"),
    ("abs", 0.0, 4, 64, "quadratic", (0.0, 0.99), "ntk"),
    ("leaky_relu(0.2)", 0.0, 3, 64, "constant", (-0.5,), "ntk"),
    ("linear", 0.0, 4, 64, "constant", (0.5,), "nngp"),
    ("tanh", 0.0, 3, 64, "constant", (0.5, -1.0), "ntk"),
    ("elu", 0.2, 3, 64, "constant", (0.0,), "ntk"),
    ("elu", 0.2, 3, 64, "constant", (0.0,), "nngp"),
    ("gelu", 0.5, 3, 64, "constant", (-0.5,), "ntk"),
]


@ONCE
@CURRENT_ONLY
@pytest.mark.slow
@pytest.mark.parametrize("name, sigma_b, depth, width, schedule, cosines, kernel", CASES)
def test_first_order_statistics_match_monte_carlo(name, sigma_b, depth, width, schedule, cosines, kernel):
    """Predicted variance and mean shift of every entry against 3 000 draws of ntksim's eNTK/eNNGP:
    within 3.5 standard errors plus the O(1/m²) remainder. The remainder is bounded by
    4β·|first order| + 2β²·k², β = Σ_k 1/m_k and k the largest |K∞| entry: second-order terms are
    products of two first-order ones (relative 2–3β where the first order is large; measured at
    m = 16 … 128, shrinking like 1/m²), and an entry whose first-order coefficient is accidentally
    small (an off-diagonal output block of a pair at cosine 0: Var ∝ H(x, x')² ≈ 0) is governed
    by the β² term. 1e-8·max Var absorbs the limit's √eps round-off at ρ = −1 (x' = −1.1·x)."""
    net = ntksim.MLP(name, depth=depth, width=width, schedule=schedule, sigma_b=sigma_b or None, out_dim=2)
    x = inputs(cosines, norms=(1.0, *tuple(0.8 + 0.3 * k for k in range(len(cosines)))))
    fw = finite_width(net, x, kernel)
    seeds = 3000
    k = measured(net, x, kernel, seeds)
    e = k - np.kron(fw.limit, np.eye(2)) / x.shape[0]
    mean, var = e.mean(0), e.var(0)
    se_mean = e.std(0) / math.sqrt(seeds)
    se_var = np.sqrt(np.maximum(((e - mean) ** 4).mean(0) - var**2, 0) / seeds)
    beta = float(np.sum(1.0 / np.asarray(net.hidden)))
    scale = np.abs(fw.limit).max() / x.shape[0]
    floor = 1e-8 * fw.variance.max()
    remainder_var = 4 * beta * fw.variance + 2 * beta**2 * scale**2 + floor
    remainder_mean = 4 * beta * np.abs(fw.mean_shift) + 2 * beta**2 * scale + math.sqrt(floor)
    assert np.all(np.abs(var - fw.variance) <= 3.5 * se_var + remainder_var), (var, fw.variance, se_var)
    assert np.all(np.abs(mean - fw.mean_shift) <= 3.5 * se_mean + remainder_mean), (
        mean,
        fw.mean_shift,
        se_mean,
    )
    # the check has teeth: the variances are resolved well beyond their remainder and noise
    diagonal = np.diag(fw.variance)
    assert np.all(3.5 * np.diag(se_var) + np.diag(remainder_var) < 0.5 * diagonal)


@ONCE
@CURRENT_ONLY
@pytest.mark.parametrize("depth", [3, 10])
def test_equal_norm_inputs_interpolated_in_the_angle_match_every_pair_integrated(monkeypatch, depth):
    """Many points on the sphere and φ without closed forms: the statistics interpolated in
    α = arccos ρ equal those integrated pair by pair (to the interpolation's 1e-8 of each scale).
    At depth 10 the interpolation converges only if the layer maps' derivatives keep their digits
    near ρ = ±1 (Price's theorem; autodiff through the rule's nodes lost 6e-5 there)."""
    import importlib

    module = importlib.import_module("ntksim.kernels.finite_width")
    x = np.asarray(ntksim.sphere(jax.random.PRNGKey(3), 17, 4), np.float64)  # 136 pairs
    net = ntksim.MLP("tanh", depth=depth, width=8, sigma_b=0.1)
    calls = []
    spy = module._equal_variance_pairs
    monkeypatch.setattr(module, "_equal_variance_pairs", lambda *a: calls.append(spy(*a)) or calls[-1])
    interpolated = finite_width(net, x)
    assert calls and calls[0] is not None  # the interpolation converged
    monkeypatch.setattr(module, "INTERPOLATE_MIN_PAIRS", 10**9)
    direct = finite_width(net, x)
    for name in ("mean_coef", "var_coef", "cross_coef", "block_coef", "pair_coef", "limit"):
        a, b = getattr(interpolated, name), getattr(direct, name)
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-7 * np.abs(b).max(), err_msg=name)


# --- covariances between entries of different pairs (4-input expectations) --------------------
@ONCE
def test_nested_rule_matches_isserlis_and_a_semi_analytic_three_input_moment():
    """The k-D rule behind the joint covariances: Gaussian polynomial moments by Isserlis' theorem
    (4 inputs, one of them a combination of the others: a singular covariance) to 1e-5 of the
    moment's scale Π_j σ_j^{p_j}, and
    E[relu(u1) relu(u2) relu(u3)] by SciPy's adaptive 2-D quadrature over (z1, z2) with the third
    factor's conditional mean in closed form (c·Φ(c/s) + s·ϕ(c/s))."""
    from scipy import stats

    from ntksim.activations.gaussian import nested_grid

    rng = np.random.default_rng(4)
    a = rng.normal(size=(4, 6))
    cov = a @ a.T / 6
    singular = cov.copy()
    singular[3], singular[:, 3] = -0.8 * cov[0], -0.8 * cov[:, 0]
    singular[3, 3] = 0.64 * cov[0, 0]
    with x64():
        for c in (cov, singular):
            u, w = (np.asarray(v) for v in nested_grid(jnp.asarray(c), (0.0,)))
            isserlis = c[0, 1] * c[2, 3] + c[0, 2] * c[1, 3] + c[0, 3] * c[1, 2]
            sd = np.sqrt(np.diag(c))  # tolerances relative to each moment's scale Π_j sd_j^{p_j}
            np.testing.assert_allclose(np.sum(w * u.prod(axis=1)), isserlis, rtol=0, atol=1e-5 * sd.prod())
            # a square on one input, as the 3-input moments have: E[u0² u1 u2] = c00 c12 + 2 c01 c02
            squared = np.sum(w * u[:, 0] ** 2 * u[:, 1] * u[:, 2])
            exact = c[0, 0] * c[1, 2] + 2 * c[0, 1] * c[0, 2]
            np.testing.assert_allclose(squared, exact, rtol=0, atol=1e-5 * sd[0] ** 2 * sd[1] * sd[2])
        u, w = (np.asarray(v) for v in nested_grid(jnp.asarray(cov[:3, :3]), (0.0,)))
    rule = np.sum(w * np.maximum(u, 0).prod(axis=1))
    chol = np.linalg.cholesky(cov[:3, :3])

    def integrand(z2: float, z1: float) -> float:
        u1, u2 = chol[0, 0] * z1, chol[1, 0] * z1 + chol[1, 1] * z2
        c, s = chol[2, 0] * z1 + chol[2, 1] * z2, chol[2, 2]
        inner = c * stats.norm.cdf(c / s) + s * stats.norm.pdf(c / s)
        return max(u1, 0) * max(u2, 0) * inner * stats.norm.pdf(z1) * stats.norm.pdf(z2)

    # u1 > 0 ⇔ z1 > 0; u2 > 0 ⇔ z2 > −chol[1,0] z1 / chol[1,1]
    reference = integrate.dblquad(integrand, 0, 12, lambda z1: -chol[1, 0] * z1 / chol[1, 1], 12,
                                  epsabs=1e-13, epsrel=1e-10)[0]  # fmt: skip
    np.testing.assert_allclose(rule, reference, rtol=1e-6)


@ONCE
@pytest.mark.parametrize("name, sigma_b", [("relu", 0.0), ("tanh", 0.3)])
def test_joint_statistics_agree_with_the_pairwise_ones(name, sigma_b):
    """The recursion on all inputs at once and pair by pair are the same recursion on different
    sets: every entry's variance and every pair's (3, 3) covariance agree (and the API's views of
    the joint tensor: `entry_covariance`'s diagonal is `variance`)."""
    net = ntksim.MLP(name, depth=3, width=16, out_dim=2, sigma_b=sigma_b or None)
    x = inputs((0.5, -1.0, 0.2), norms=(1.0, 0.9, 1.1, 1.2))
    fw = finite_width(net, x, joint=True)
    cov = fw.entry_covariance()
    size = cov.shape[0]
    diagonal = cov.reshape(size * size, size * size)[np.arange(size * size), np.arange(size * size)]
    tolerance = 1e-9 * fw.variance.max()
    np.testing.assert_allclose(diagonal.reshape(size, size), fw.variance, rtol=1e-9, atol=tolerance)
    for i, j in ((0, 1), (0, 2), (2, 3)):
        entries = ((i, i), (i, j), (j, j))
        joint = np.array([[cov[2 * a, 2 * b, 2 * c, 2 * d] for c, d in entries] for a, b in entries])
        np.testing.assert_allclose(joint, fw.covariance(i, j), rtol=1e-9, atol=1e-9 * np.abs(joint).max())
    lazy = finite_width(net, x)  # computed on first use, the same numbers
    assert lazy.joint_coef is None
    np.testing.assert_array_equal(lazy.at(fw.widths).entry_covariance(), cov)
    with pytest.raises(ValueError, match="more than"):
        finite_width(net, np.ones((13, 3)), joint=True)


@ONCE
@pytest.mark.parametrize("name, sigma_b", [("relu", 0.0), ("tanh", 0.3), ("elu", 0.2)])
def test_one_hidden_layer_joint_covariances_are_those_of_iid_terms(name, sigma_b):
    """With one hidden layer Θ_ab(x, x') = δ_ab σ_b² + (1/m)Σ_i t_i^{ab}(x, x') exactly, t_i^{ab} =
    σ_w²[δ_ab φ(u_i)φ(v_i) + w_ia w_ib φ'(u_i)φ'(v_i) G¹(x, x')], iid over i: Cov between any two
    entries is Cov(t, t')/m. The reference draws (u_1 … u_4, w) directly: 10⁶ draws, 4.5 standard
    errors (the comparisons share draws)."""
    x = inputs((0.5, -1.0, 0.2), norms=(1.0, 0.9, 1.1, 1.2))
    net = ntksim.MLP(name, depth=2, width=7, out_dim=2, sigma_b=sigma_b or None)
    sigma_w, sigma_b = net.sigmas
    cov = finite_width(net, x).at((1,)).entry_covariance() * x.shape[0] ** 2  # Θ's, per 1/m
    g = sigma_w**2 * (x @ x.T / x.shape[1]) + sigma_b**2
    rng = np.random.default_rng(11)
    draws = 1_000_000
    u = rng.multivariate_normal(np.zeros(4), g, size=draws, method="eigh")
    w = rng.standard_normal((draws, 2))
    phi_np, dphi_np = (np.vectorize(f) for f in NUMPY_PHI[name])
    phi, dphi = phi_np(u), dphi_np(u)

    def t(a: int, b: int, i: int, j: int) -> np.ndarray:
        readout = w[:, a] * w[:, b] * dphi[:, i] * dphi[:, j] * g[i, j]
        return sigma_w**2 * ((a == b) * phi[:, i] * phi[:, j] + readout)

    pairs_of_entries = [
        ((0, 0, 0, 1), (0, 0, 2, 3)),
        ((0, 0, 0, 0), (0, 0, 2, 3)),
        ((0, 0, 0, 1), (1, 1, 2, 3)),
        ((0, 1, 0, 1), (0, 1, 2, 3)),
        ((0, 1, 0, 2), (1, 0, 1, 3)),
        ((0, 0, 1, 2), (0, 0, 1, 3)),
    ]
    for (a, b, i, j), (c, e, k, l) in pairs_of_entries:
        p, q = t(a, b, i, j), t(c, e, k, l)
        product = (p - p.mean()) * (q - q.mean())
        predicted = cov[2 * i + a, 2 * j + b, 2 * k + c, 2 * l + e]
        assert abs(product.mean() - predicted) <= 4.5 * product.std() / math.sqrt(draws) + 1e-12, (
            (a, b, i, j), (c, e, k, l), product.mean(), predicted)  # fmt: skip


JOINT_CASES = [  # activation, σ_b, depth, width, out_dim, kernel, cosines (x_0 and partners), norms
    ("relu", 0.0, 3, 512, 1, "ntk", (0.5, -1.0, 0.0), (1.0, 0.9, 1.1, 1.2)),
    # x_2 = −x_0 stays antiparallel through tanh without bias: K(x_2, ·) = −K(x_0, ·) exactly, so
    # x_2 is left out of the joint recursion and put back scaled (`_joint`)
    ("tanh", 0.0, 3, 128, 2, "ntk", (0.5, -1.0, 0.2), (1.0, 0.9, 1.0, 1.2)),
    ("elu", 0.2, 3, 128, 1, "nngp", (0.5, -0.5, 0.9), (1.0, 0.9, 1.1, 1.2)),
]


@ONCE
@CURRENT_ONLY
@pytest.mark.slow
@pytest.mark.parametrize("name, sigma_b, depth, width, out_dim, kernel, cosines, norms", JOINT_CASES)
def test_joint_covariances_and_err_op_match_monte_carlo(
    name, sigma_b, depth, width, out_dim, kernel, cosines, norms
):
    """Cov between any two entries of K (4 inputs: entries of different pairs too) and the Gaussian
    surrogate's err_op quartiles against 3 000 draws of ntksim's eNTK/eNNGP: within 4.5 standard
    errors (hundreds of correlated comparisons) plus the O(1/m²) remainder bound of the pairwise
    test. Measured with 16 000 draws at m = 1 024 (tanh, two outputs): the worst |z| 3.7 of 528, the
    median err_op 0.1223 ± 0.0004 against 0.1228 predicted."""
    net = ntksim.MLP(
        name, depth=depth, width=width, sigma_b=sigma_b or None, out_dim=out_dim, schedule="constant"
    )
    x = inputs(cosines, norms=norms)
    fw = finite_width(net, x, kernel, joint=True)
    seeds = 3000
    e = measured(net, x, kernel, seeds) - np.kron(fw.limit, np.eye(out_dim)) / x.shape[0]
    size = e.shape[1]
    rows, cols = np.triu_indices(size)
    v = e[:, rows, cols] - e[:, rows, cols].mean(0)
    products = v[:, :, None] * v[:, None, :]
    measured_cov = products.mean(0)
    se = products.std(0) / math.sqrt(seeds)
    predicted = fw.entry_covariance()[rows, cols][:, rows, cols]
    beta = float(np.sum(1.0 / np.asarray(net.hidden)))
    scale = np.abs(fw.limit).max() / x.shape[0]
    remainder = 4 * beta * np.abs(predicted) + 2 * beta**2 * scale**2
    assert np.all(np.abs(measured_cov - predicted) <= 4.5 * se + remainder), np.max(
        np.abs(measured_cov - predicted) / (4.5 * se + remainder)
    )
    block = out_dim
    distinct = np.array([[len({rows[a] // block, cols[a] // block, rows[b] // block, cols[b] // block}) >= 3
                          for b in range(len(rows))] for a in range(len(rows))])  # fmt: skip
    # teeth: covariances between entries spanning three or four inputs are resolved, so predicting
    # them as 0 (a pairwise theory) would fail the check above (measured: 4.8–6.6 times its bound)
    assert np.any(distinct & (np.abs(measured_cov) > 4.5 * se + 2 * beta**2 * scale**2))
    op = np.abs(np.linalg.eigvalsh(e)).max(axis=1)
    quartiles = np.quantile(op, (0.25, 0.5, 0.75))
    se_median = 1.2533 * op.std() / math.sqrt(seeds)
    predicted_quartiles = fw.err_op_quantiles((0.25, 0.5, 0.75))
    np.testing.assert_allclose(quartiles, predicted_quartiles, rtol=4 * beta, atol=4 * se_median)


@ONCE
@pytest.mark.parametrize("name", ["tanh", "gelu"])
def test_price_theorem_derivatives_equal_autodiff_through_the_rule(name):
    """A smooth φ's Jacobians and Hessians of (E_φ, E_φ') from Price's theorem against forward-mode
    autodiff of the quadrature itself (the path kinked φ take), on pairs and on three inputs."""
    import importlib

    module = importlib.import_module("ntksim.kernels.finite_width")
    act = ntksim.activation(name)
    with x64():
        for gram in ([[1.2, 0.3], [0.3, 0.8]], [[1.0, -0.9], [-0.9, 1.1]],
                     [[2.0, 0.5, 0.1], [0.5, 1.0, -0.3], [0.1, -0.3, 0.7]]):  # fmt: skip
            g = jnp.asarray(gram, jnp.float64)
            price = module._price_jets(act, g)
            jac = jax.jacfwd(lambda c: module._two_point(act, c))
            autodiff = (jac(g), jax.jacfwd(jac)(g))
            for order in range(2):
                for which in range(2):
                    a, b = np.asarray(price[order][which]), np.asarray(autodiff[order][which])
                    np.testing.assert_allclose(a, b, rtol=0, atol=1e-11 * np.abs(b).max())


@ONCE
def test_exact_multiples_are_left_out_of_the_joint_recursion_and_put_back_scaled():
    """x_2 = −x_0 through tanh without bias: K(x_2, ·) = −K(x_0, ·) at every width, so each index on
    x_2 flips the sign of a covariance; and the pair (x_0, x_2), which the pairwise path computes
    from the diagonal, agrees with the joint tensor."""
    net = ntksim.MLP("tanh", depth=3, width=16)
    x = inputs((0.5, -1.0), norms=(1.0, 0.9, 1.0))
    fw = finite_width(net, x, joint=True)
    cov = fw.entry_covariance()
    scale = np.abs(cov).max()
    np.testing.assert_allclose(cov[2, 1], -cov[0, 1], rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(cov[2, 2], cov[0, 0], rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(cov[:, :, 1, 2], -cov[:, :, 1, 0], rtol=0, atol=1e-12 * scale)
    entries = ((0, 0), (0, 2), (2, 2))
    joint = np.array([[cov[a, b, c, d] for c, d in entries] for a, b in entries])
    np.testing.assert_allclose(joint, fw.covariance(0, 2), rtol=1e-9, atol=1e-12 * scale)
    assert abs(fw.covariance(0, 2)[0, 1]) > 0.1 * scale  # not trivially zero
