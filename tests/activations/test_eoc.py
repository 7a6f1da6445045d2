"""Edge of Chaos: σ_w² = 1/(a²+b²), and the pre-activation variance stays q across depth."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

import ntksim
from ntksim.activations.eoc import chi
from ntksim.nets.model import forward, init_params


@pytest.mark.parametrize(("name", "sigma_w2"), [("relu", 2.0), ("abs", 1.0), ("linear", 1.0)])
def test_eoc_values(name: str, sigma_w2: float) -> None:
    act = ntksim.Activation.preset(name)
    assert ntksim.eoc_sigma_w(act) ** 2 == pytest.approx(sigma_w2)
    assert chi(act, ntksim.eoc_sigma_w(act)) == pytest.approx(1.0)
    assert ntksim.resolve_sigmas(act) == (pytest.approx(math.sqrt(sigma_w2)), 0.0)


def test_resolve_sigmas_rejects_bad_overrides() -> None:
    act = ntksim.Activation.preset("relu")
    with pytest.raises(ValueError, match="sigma_w"):
        ntksim.resolve_sigmas(act, sigma_w=0.0)
    with pytest.raises(ValueError, match="sigma_b"):
        ntksim.resolve_sigmas(act, sigma_b=-1.0)


def _layer_variances(net: ntksim.MLP, x: jax.Array, seeds: int) -> tuple[np.ndarray, np.ndarray]:
    """Monte Carlo E[(h^k_j)²] per layer k (mean over units, inputs, seeds) and its standard error."""

    def one(key: jax.Array) -> jax.Array:
        params = init_params(net, key, x.shape[1])
        _, pre = forward(params, x.astype(net.compute_dtype), net.activation, *net.sigmas)
        return jnp.stack([jnp.mean(h**2) for h in pre])

    keys = jax.random.split(jax.random.PRNGKey(7), seeds)
    per_seed = np.asarray(jax.jit(jax.vmap(one))(keys), np.float64)  # (seeds, depth)
    return per_seed.mean(axis=0), per_seed.std(axis=0, ddof=1) / np.sqrt(seeds)


@pytest.mark.parametrize("name", ["relu", "abs", "leaky_relu(0.2)"])
def test_variance_is_constant_across_depth_at_eoc(name: str) -> None:
    """On the sphere of radius √m_0, q = σ_w² at every layer (science.md, Edge of Chaos)."""
    act = ntksim.Activation.preset(name)
    net = ntksim.MLP(activation=act, depth=8, width=256, out_dim=256, schedule="constant")
    x = ntksim.sphere(jax.random.PRNGKey(0), 8, 16)
    q = net.sigmas[0] ** 2
    variances, stderr = _layer_variances(net, x, seeds=256)
    # E[q_k] = q exactly at every width (the variance map is linear here); seed-to-seed
    # fluctuations grow with depth, so compare within 4 standard errors of the mean.
    assert np.all(np.abs(variances - q) < 4 * stderr + 1e-3 * q), (variances / q, stderr / q)
    assert np.all(stderr < 0.03 * q)  # the test has the power to see a 12% drift


def test_variance_grows_off_eoc() -> None:
    """The same measurement sees q_k = χ^{k-1} q_1 in the chaotic phase, so it can fail."""
    act = ntksim.Activation.preset("relu")
    sigma_w = 1.3 * ntksim.eoc_sigma_w(act)
    net = ntksim.MLP(act, depth=6, width=256, out_dim=256, schedule="constant", sigma_w=sigma_w)
    x = ntksim.sphere(jax.random.PRNGKey(0), 8, 16)
    variances, stderr = _layer_variances(net, x, seeds=256)
    expected = sigma_w**2 * chi(act, sigma_w) ** np.arange(6)
    assert np.all(np.abs(variances - expected) < 4 * stderr + 1e-3 * expected), variances / expected
    assert variances[-1] > 5 * variances[0]


# --- the EOC of any activation ----------------------------------------------------------------
def _scipy_moment(f, q: float) -> float:
    """E[f(√q Z)] by scipy's adaptive quadrature on each half-line (independent of ntksim)."""
    pdf = lambda z: math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)  # noqa: E731
    g = lambda z: f(math.sqrt(q) * z) * pdf(z)  # noqa: E731
    opts = {"epsabs": 1e-15, "epsrel": 1e-13, "limit": 400}
    return integrate.quad(g, -np.inf, 0, **opts)[0] + integrate.quad(g, 0, np.inf, **opts)[0]


SCIPY_PHI = {
    "tanh": (math.tanh, lambda s: 1 - math.tanh(s) ** 2),
    "erf": (math.erf, lambda s: 2 / math.sqrt(math.pi) * math.exp(-s * s)),
    "elu": (lambda s: s if s > 0 else math.expm1(s), lambda s: 1.0 if s > 0 else math.exp(s)),
}


@pytest.mark.parametrize("name", sorted(SCIPY_PHI))
@pytest.mark.parametrize("sigma_b", [0.1, 0.2, 0.5])
def test_eoc_point_has_chi_one_at_its_fixed_point(name: str, sigma_b: float, x64: bool) -> None:
    """With E[φ²], E[φ'²] from scipy: χ = σ_w² E[φ'(√q* Z)²] = 1 and q* = σ_b² + σ_w² E[φ(√q* Z)²]."""
    f, df = SCIPY_PHI[name]
    point = ntksim.eoc(ntksim.activation(name), sigma_b)
    assert point.sigma_b == sigma_b and point.q_star > 0
    tol = 1e-10 if x64 else 2e-5
    chi_value = point.sigma_w**2 * _scipy_moment(lambda s: df(s) ** 2, point.q_star)
    assert chi_value == pytest.approx(1.0, abs=tol)
    fixed = sigma_b**2 + point.sigma_w**2 * _scipy_moment(lambda s: f(s) ** 2, point.q_star)
    assert fixed == pytest.approx(point.q_star, rel=tol)
    assert ntksim.chi(ntksim.activation(name), point.sigma_w, sigma_b, q=point.q_star) == pytest.approx(
        1.0, abs=tol
    )


def test_family_eoc_is_its_single_point() -> None:
    point = ntksim.eoc(ntksim.activation("relu"))
    assert point.sigma_w == pytest.approx(math.sqrt(2)) and point.sigma_b == 0.0 and math.isnan(point.q_star)
    with pytest.raises(ntksim.NoEOCPoint, match=r"relu.*sigma_b=0\.2"):
        ntksim.eoc(ntksim.activation("relu"), 0.2)


@pytest.mark.parametrize(("name", "sigma_w"), [("tanh", 1.0), ("erf", math.sqrt(math.pi) / 2), ("sin", 1.0)])
def test_odd_activations_start_at_q_zero(name: str, sigma_w: float) -> None:
    """σ_b = 0: q* = 0 and σ_w = 1/|φ'(0)| (science.md)."""
    point = ntksim.eoc(ntksim.activation(name), 0.0)
    assert point.q_star == 0.0 and point.sigma_w == pytest.approx(sigma_w, rel=1e-6)


def test_selu_at_sigma_b_zero_uses_both_slopes_of_its_kink() -> None:
    """SELU's φ' jumps at 0 (λ and λα): lim E[φ'(√q Z)²] = λ²(1 + α²)/2, not one side's square."""
    lam, alpha = 1.0507009873554805, 1.6732632423543772
    point = ntksim.eoc(ntksim.activation("selu"), 0.0)
    assert point.sigma_w == pytest.approx(1 / math.sqrt(lam**2 * (1 + alpha**2) / 2), rel=1e-6)


@pytest.mark.parametrize("name", ["gelu", "silu", "softplus"])
def test_no_eoc_point_is_an_error_naming_activation_and_sigma_b(name: str) -> None:
    """GELU and SiLU have none at σ_b = 0 (the variance escapes q = 0); softplus has none at all."""
    with pytest.raises(ntksim.NoEOCPoint, match=rf"{name}.*sigma_b=0\b"):
        ntksim.eoc(ntksim.activation(name), 0.0)
    assert ntksim.eoc_curve(ntksim.activation(name), [0.0])[0] is None


def test_chi_is_below_one_when_ordered_and_above_when_chaotic() -> None:
    act = ntksim.activation("tanh")
    point = ntksim.eoc(act, 0.2)
    assert ntksim.chi(act, 0.8 * point.sigma_w, 0.2) < 1 < ntksim.chi(act, 1.25 * point.sigma_w, 0.2)
    xi = ntksim.correlation_depth(act, 0.8 * point.sigma_w, 0.2)
    assert xi == pytest.approx(-1 / math.log(ntksim.chi(act, 0.8 * point.sigma_w, 0.2)))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tanh", "elu"])
def test_variance_stays_at_q_star_along_depth_for_any_phi(name: str) -> None:
    """Monte Carlo network check at the EOC point for σ_b = 0.2: inputs scaled so that q¹ = q*;
    E[(h^k)²] stays q* at every layer (within 4 standard errors and the O(1/m) finite-width bias)."""
    act = ntksim.activation(name)
    point = ntksim.eoc(act, 0.2)
    net = ntksim.MLP(act, depth=6, width=512, out_dim=512, schedule="constant", sigma_b=0.2)
    radius2 = (point.q_star - 0.2**2) / point.sigma_w**2  # ‖x‖²/m_0 giving Σ¹(x, x) = q*
    x = ntksim.sphere(jax.random.PRNGKey(0), 4, 16) * math.sqrt(radius2)
    variances, stderr = _layer_variances(net, x, seeds=64)
    q = point.q_star
    assert np.all(np.abs(variances - q) < 4 * stderr + 0.01 * q), (variances / q, stderr / q)
    assert np.all(stderr < 0.02 * q)


# --- stability of the fixed point (issue 25, bug 10) ------------------------------------------
def _gelu(s: float) -> float:
    return 0.5 * s * (1 + math.erf(s / math.sqrt(2)))


def _gelu_d1(s: float) -> float:
    return 0.5 * (1 + math.erf(s / math.sqrt(2))) + s * math.exp(-s * s / 2) / math.sqrt(2 * math.pi)


def _gelu_d2(s: float) -> float:
    return (2 - s * s) * math.exp(-s * s / 2) / math.sqrt(2 * math.pi)


def _scipy_variance_slope(sigma_w: float, q: float) -> float:
    """V'(q) = σ_w² dE[φ(√q Z)²]/dq = σ_w² E[φ'² + φφ''] (Stein's lemma) for GELU, by scipy."""
    return sigma_w**2 * _scipy_moment(lambda s: _gelu_d1(s) ** 2 + _gelu(s) * _gelu_d2(s), q)


@pytest.mark.parametrize("sigma_b", [0.1, 0.2, 0.3])
def test_gelu_below_its_threshold_has_only_an_unstable_point(sigma_b: float, x64: bool) -> None:
    """χ = 1 holds at q* there, but V'(q*) > 1 (Stein's lemma with scipy): iterating the variance
    map runs away from q*, so `eoc` refuses, saying why, unless allow_unstable."""
    act = ntksim.activation("gelu")
    with pytest.raises(ntksim.NoEOCPoint, match=rf"gelu has no stable .*sigma_b={sigma_b:g}.*slope"):
        ntksim.eoc(act, sigma_b)
    point = ntksim.eoc(act, sigma_b, allow_unstable=True)
    slope = _scipy_variance_slope(point.sigma_w, point.q_star)
    assert slope > 1.04 and not point.stable
    assert point.variance_slope == pytest.approx(slope, rel=1e-7 if x64 else 1e-3)
    # the variance iterated from q = 1 leaves q* (it does not settle there)
    q = 1.0
    for _ in range(40):
        q = sigma_b**2 + point.sigma_w**2 * _scipy_moment(lambda s: _gelu(s) ** 2, q)
    assert abs(q - point.q_star) > 0.5 * point.q_star


def test_gelu_above_its_threshold_is_a_stable_eoc_point(x64: bool) -> None:
    """σ_b = 0.5: σ_w = 1.39987, V'(q*) = 0.986 < 1, and the variance iterated from q = 1 settles
    at q* (scipy throughout)."""
    point = ntksim.eoc(ntksim.activation("gelu"), 0.5)
    assert point.stable and point.sigma_w == pytest.approx(1.39987, abs=1e-5)
    assert point.variance_slope == pytest.approx(
        _scipy_variance_slope(point.sigma_w, point.q_star), rel=1e-7 if x64 else 1e-3
    )
    assert point.variance_slope == pytest.approx(0.98587, abs=1e-5)
    q = 1.0
    for _ in range(2000):  # slope 0.986: slow, but it converges
        q = 0.25 + point.sigma_w**2 * _scipy_moment(lambda s: _gelu(s) ** 2, q)
    assert q == pytest.approx(point.q_star, rel=1e-6 if x64 else 1e-4)  # float32: q* to ~1e-5


@pytest.mark.parametrize("name", ["tanh", "erf", "elu"])
def test_reported_slope_is_below_one_for_stable_points(name: str, x64: bool) -> None:
    point = ntksim.eoc(ntksim.activation(name), 0.2)
    h = 1e-4 * point.q_star
    f = SCIPY_PHI[name][0]
    fd = point.sigma_w**2 * (_scipy_moment(lambda s: f(s) ** 2, point.q_star + h)
                             - _scipy_moment(lambda s: f(s) ** 2, point.q_star - h)) / (2 * h)  # fmt: skip
    assert point.stable and point.variance_slope == pytest.approx(fd, rel=1e-6 if x64 else 1e-3)
    assert ntksim.eoc(ntksim.activation(name), 0.0).variance_slope == 1.0  # q* = 0: marginal


@pytest.mark.parametrize("degree", [2, 3])
def test_monomials_have_only_unstable_points_with_slope_2p_minus_1_over_p(degree: int, x64: bool) -> None:
    """φ = s^p: E[φ²] = (2p−1)!! q^p and E[φ'²] = p²(2p−3)!! q^{p−1}, so at χ = 1 the variance map's
    slope is V'(q*) = (2p − 1)/p > 1 whatever σ_b: no stable EOC point (closed form)."""
    act = ntksim.activation(f"monomial({degree})")
    with pytest.raises(ntksim.NoEOCPoint, match="no stable"):
        ntksim.eoc(act, 0.3)
    point = ntksim.eoc(act, 0.3, allow_unstable=True)
    assert point.variance_slope == pytest.approx((2 * degree - 1) / degree, rel=1e-8 if x64 else 1e-3)
