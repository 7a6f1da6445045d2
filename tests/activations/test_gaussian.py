"""Gaussian expectations of any activation (kink-split polar quadrature) against independent
references: the family's closed forms, scipy's adaptive quadrature split at the kinks, and
Monte Carlo."""

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, special

import ntksim
from ntksim.activations.gaussian import expect_1d, expectations, second_moments
from ntksim.activations.interpolate import equal_variance_expectations

FAMILY = ["relu", "abs", "linear", "leaky_relu(0.2)"]
RHOS = [-1.0, -0.9999, -0.9, -0.3, 0.0, 0.5, 0.9, 0.9999, 1.0]


def _pdf(z: float) -> float:
    return math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)


# NumPy versions of the presets for the scipy reference: independent of ntksim's JAX code.
SELU_L, SELU_A = 1.0507009873554805, 1.6732632423543772
REFERENCE = {
    "elu": (lambda s: s if s > 0 else math.expm1(s), lambda s: 1.0 if s > 0 else math.exp(s)),
    "selu": (lambda s: SELU_L * (s if s > 0 else SELU_A * math.expm1(s)),
             lambda s: SELU_L * (1.0 if s > 0 else SELU_A * math.exp(s))),
    "tanh": (math.tanh, lambda s: 1 - math.tanh(s) ** 2),
    "gelu": (lambda s: 0.5 * s * (1 + math.erf(s / math.sqrt(2))),
             lambda s: 0.5 * (1 + math.erf(s / math.sqrt(2))) + s * _pdf(s)),
    "softplus": (lambda s: math.log1p(math.exp(s)) if s < 30 else s + math.log1p(math.exp(-s)),
                 lambda s: special.expit(s)),
}  # fmt: skip


def _quad(f, lo: float, hi: float) -> float:
    """scipy's adaptive quadrature; its own error estimate must be far below the tests' 1e-10."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", integrate.IntegrationWarning)  # judged by the estimate below
        value, error = integrate.quad(f, lo, hi, epsabs=1e-15, epsrel=1e-13, limit=400)
    assert error < 1e-12 * max(abs(value), 1.0), (value, error)
    return value


def reference_1d(f, q: float) -> float:
    """E[f(√q Z)] by adaptive quadrature on each half-line (the kink of these presets is at 0)."""
    g = lambda z: f(math.sqrt(q) * z) * _pdf(z)  # noqa: E731
    return _quad(g, -np.inf, 0) + _quad(g, 0, np.inf)


def reference_2d(f, g, q1: float, q2: float, rho: float) -> float:
    """E[f(u) g(v)] by nested adaptive quadrature, u = √q1 z1, v = √q2 (ρ z1 + √(1−ρ²) z2),
    the inner integral split where v crosses the kink at 0."""
    s = math.sqrt(1 - rho * rho)

    def inner(z1: float) -> float:
        kink = -rho * z1 / s
        h = lambda z2: g(math.sqrt(q2) * (rho * z1 + s * z2)) * _pdf(z2)  # noqa: E731
        return _quad(h, -np.inf, kink) + _quad(h, kink, np.inf)

    outer = lambda z1: f(math.sqrt(q1) * z1) * _pdf(z1) * inner(z1)  # noqa: E731
    return _quad(outer, -np.inf, 0) + _quad(outer, 0, np.inf)


@pytest.mark.parametrize("name", FAMILY)
def test_quadrature_equals_family_closed_forms(name: str, tol) -> None:
    """Over ρ ∈ [−1, 1] including ±1 and ±0.9999, unequal variances: 1e-12 in float64."""
    act = ntksim.activation(name)
    rho = jnp.asarray(RHOS)
    q1, q2 = jnp.full_like(rho, 1.7), jnp.full_like(rho, 0.35)
    c = rho * jnp.sqrt(q1 * q2)
    quad = expectations(act, q1, q2, c)
    closed = act.expectations(q1, q2, c)
    atol = 1e-12 if tol.x64 else 2e-5
    for got, want in zip(quad, closed, strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=atol)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(REFERENCE))
@pytest.mark.parametrize("q", [0.05, 1.0, 20.0])
def test_quadrature_equals_adaptive_reference(name: str, q: float, x64: bool) -> None:
    """E[φ²], E[φ'²] and the pair expectations against scipy's adaptive quadrature split at the
    kink, to 1e-10 relative in float64."""
    f, df = REFERENCE[name]
    act = ntksim.activation(name)
    rtol = 1e-10 if x64 else 1e-5
    e_phi2, e_dphi2 = (float(v[0]) for v in second_moments(act, jnp.asarray([q])))
    assert e_phi2 == pytest.approx(reference_1d(lambda s: f(s) ** 2, q), rel=rtol)
    assert e_dphi2 == pytest.approx(reference_1d(lambda s: df(s) ** 2, q), rel=rtol)
    for rho, q2 in ((-0.6, 0.4 * q), (0.95, 2.0 * q)):
        c = rho * math.sqrt(q * q2)
        got = [float(v) for v in expectations(act, jnp.asarray(q), jnp.asarray(q2), jnp.asarray(c))]
        want = [reference_2d(f, f, q, q2, rho), reference_2d(df, df, q, q2, rho)]
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * 1e-3)


@pytest.mark.parametrize("name", ["tanh", "elu", "selu", "gelu", "rectified_monomial(2)", "sin"])
def test_quadrature_within_monte_carlo_error(name: str) -> None:
    """E[φ(u)φ(v)] and E[φ'(u)φ'(v)] at ρ = 0.6 within 4 standard errors of 400k samples."""
    act = ntksim.activation(name)
    q1, q2, rho = 0.8, 1.9, 0.6
    z = np.random.default_rng(0).standard_normal((2, 400_000))
    u = math.sqrt(q1) * z[0]
    v = math.sqrt(q2) * (rho * z[0] + math.sqrt(1 - rho**2) * z[1])
    c = rho * math.sqrt(q1 * q2)
    quad = expectations(act, jnp.asarray(q1), jnp.asarray(q2), jnp.asarray(c))
    for fn, value in zip((act, act.derivative), quad, strict=True):
        samples = np.asarray(fn(jnp.asarray(u)), np.float64) * np.asarray(fn(jnp.asarray(v)), np.float64)
        stderr = samples.std() / math.sqrt(samples.size)
        assert abs(float(value) - samples.mean()) < 4 * stderr + 1e-6, (float(value), samples.mean(), stderr)


def test_monte_carlo_check_can_fail() -> None:
    """The same comparison against the wrong ρ is far outside 4 standard errors: the check has power."""
    act = ntksim.activation("tanh")
    z = np.random.default_rng(0).standard_normal((2, 400_000))
    u, v = z[0], 0.6 * z[0] + 0.8 * z[1]
    samples = np.tanh(u) * np.tanh(v)
    wrong = float(expectations(act, jnp.asarray(1.0), jnp.asarray(1.0), jnp.asarray(0.5))[0])
    assert abs(wrong - samples.mean()) > 4 * samples.std() / math.sqrt(samples.size)


@pytest.mark.parametrize("name", ["relu", "elu", "tanh", "selu"])
def test_rho_one_is_the_limit_and_the_diagonal(name: str, x64: bool) -> None:
    """ρ → 1 approaches ρ = 1 continuously, and ρ = 1 equals the 1-D second moments."""
    act = ntksim.activation(name)
    q = jnp.asarray([0.7, 0.7, 0.7])
    rho = jnp.asarray([1.0, 1.0 - 1e-12, 1.0 - 1e-8])
    e_phi, e_dphi = expectations(act, q, q, q * rho)
    phi2, dphi2 = second_moments(act, q[:1])
    atol = 1e-11 if x64 else 1e-5
    assert float(e_phi[0]) == pytest.approx(float(phi2[0]), abs=atol)
    assert float(e_dphi[0]) == pytest.approx(float(dphi2[0]), abs=atol)
    np.testing.assert_allclose(e_phi[1:], e_phi[0], atol=1e-6 if x64 else 1e-4)  # no jump near ρ = 1
    assert bool(jnp.all(jnp.isfinite(e_dphi)))


def test_zero_variance_is_a_point_mass() -> None:
    """q1 = 0: u ≡ 0, so E[φ(u)φ(v)] = φ(0)·E[φ(v)] (sigmoid: φ(0) = 1/2)."""
    act = ntksim.activation("sigmoid")
    e_phi, _ = expectations(act, jnp.asarray(0.0), jnp.asarray(1.3), jnp.asarray(0.0))
    mean = expect_1d(act, jnp.asarray(1.3))
    assert float(e_phi) == pytest.approx(0.5 * float(mean), rel=1e-5)


@pytest.mark.parametrize("name", ["tanh", "elu", "abs", "gelu"])
def test_equal_variance_interpolation_equals_direct_quadrature(name: str, x64: bool) -> None:
    """The one-variable path for inputs of equal norm gives the pairwise integrals' numbers."""
    act = ntksim.activation(name)
    q = 1.3
    rho = jnp.asarray(np.r_[-1.0, np.random.default_rng(1).uniform(-1, 1, 40), 0.99999, 1.0])
    fast = equal_variance_expectations(act, q, q * rho)
    qs = jnp.full_like(rho, q)
    direct = expectations(act, qs, qs, q * rho)
    for got, want in zip(fast, direct, strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=(1e-12 if x64 else 1e-5) * float(jnp.max(want)))


def test_hermite_polynomials_are_orthogonal_under_the_gaussian(x64: bool) -> None:
    """E[He_j(Z) He_k(Z)] = k!·δ_jk — checks the quadrature and the hermite preset together."""
    for j, k in ((2, 2), (3, 3), (4, 4), (2, 4), (3, 5)):
        hj, hk = ntksim.activation("hermite", degree=j), ntksim.activation("hermite", degree=k)
        value = float(expect_1d(lambda s, hj=hj, hk=hk: hj(s) * hk(s), jnp.asarray(1.0)))
        want = math.factorial(k) if j == k else 0.0
        assert value == pytest.approx(want, abs=1e-10 if x64 else 1e-3)


def test_expectations_vectorise_over_a_grid() -> None:
    """Any broadcastable shapes come back in that shape."""
    act = ntksim.activation("tanh")
    q = jnp.ones((3, 4))
    out = expectations(act, q, 2 * q, 0.5 * q)
    assert out[0].shape == out[1].shape == (3, 4)
    assert jax.numpy.allclose(out[0], out[0][0, 0])


@pytest.mark.parametrize(("q1", "q2", "rho"), [(1.0, 1.0, 0.5), (0.7, 2.0, -0.3), (1.5, 0.4, 0.95)])
def test_kinks_off_zero_meet_the_exact_rectangle_probability(
    q1: float, q2: float, rho: float, x64: bool
) -> None:
    """hardtanh (kinks at ±1): E[φ'(u)φ'(v)] = P(|u| < 1, |v| < 1), a bivariate normal rectangle
    (scipy's cdf). Kink lines off 0 cross away from the origin, where the angle must be split."""
    from scipy.stats import multivariate_normal

    hardtanh = ntksim.activation(lambda s: jnp.clip(s, -1.0, 1.0), name="hardtanh", kinks=(-1.0, 1.0))
    c = rho * math.sqrt(q1 * q2)
    _, e_dphi = expectations(hardtanh, jnp.asarray(q1), jnp.asarray(q2), jnp.asarray(c))
    mvn = multivariate_normal(mean=[0.0, 0.0], cov=[[q1, c], [c, q2]])
    rectangle = mvn.cdf([1, 1]) - mvn.cdf([-1, 1]) - mvn.cdf([1, -1]) + mvn.cdf([-1, -1])
    assert float(e_dphi) == pytest.approx(rectangle, rel=1e-9 if x64 else 1e-5)
