"""Infinite-width NTK: closed form vs neural-tangents, vs Monte Carlo, and EOC identities."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntksim
from ntksim.kernels.limits import (
    BackendUnavailable,
    closed_form_theta,
    expand_outputs,
    family_expectations,
    neural_tangents_available,
)
from tests.conftest import REFERENCE, X64, assert_matches_neural_tangents

ACTIVATIONS = [
    ntksim.Activation.preset("relu"),
    ntksim.Activation.preset("abs"),
    ntksim.Activation.preset("linear"),
    ntksim.Activation.preset("leaky_relu", alpha=0.1),
    ntksim.Activation(-0.4, 1.3),
]


@pytest.mark.reference
@pytest.mark.parametrize("act", ACTIVATIONS, ids=lambda a: a.name)
@pytest.mark.parametrize(
    ("depth", "out_dim", "sigma_b"), [(1, 1, None), (3, 2, None), (5, 1, 0.4), (2, 3, 1.0)]
)
def test_closed_form_equals_neural_tangents(act, depth, out_dim, sigma_b, tol) -> None:
    """Inputs of unequal norms (Gaussian) and an off-EOC σ_w as well as the EOC one."""
    x = ntksim.gaussian(jax.random.PRNGKey(depth), 7, 5)
    for sigma_w in (None, 1.7):
        net = ntksim.MLP(act, depth=depth, width=8, out_dim=out_dim, sigma_b=sigma_b, sigma_w=sigma_w)
        closed = ntksim.limit_ntk(net, x, backend="closed_form")
        nt = ntksim.limit_ntk(net, x, backend="neural_tangents")
        assert closed.shape == nt.shape == (7 * out_dim, 7 * out_dim)
        assert_matches_neural_tangents(closed, nt, tol, out_dim)


@pytest.mark.parametrize("act", ACTIVATIONS, ids=lambda a: a.name)
@pytest.mark.parametrize(("depth", "sigma_b"), [(3, None), (5, 0.4)])
def test_family_diagonal_is_exact_in_float32(act, depth, sigma_b, tol) -> None:
    """Θ^l(x,x) of the family from a float64 scalar recursion (q ← σ_w²(a²+b²)q + σ_b²,
    Θ ← q + σ_w²(a²+b²)Θ): the closed form must match it to the dtype's tolerance, in float32 too
    (ρ = 1 exactly on the diagonal, not 1 − 1 ulp)."""
    x = ntksim.gaussian(jax.random.PRNGKey(depth), 7, 5)
    for sigma_w in (None, 1.7):
        net = ntksim.MLP(act, depth=depth, width=8, sigma_b=sigma_b, sigma_w=sigma_w)
        w, b = net.sigmas
        q = w**2 * np.sum(np.asarray(x, np.float64) ** 2, axis=1) / x.shape[1] + b**2
        theta = q.copy()
        for _ in range(depth - 1):
            q = w**2 * act.second_moment * q + b**2
            theta = q + w**2 * act.second_moment * theta
        closed = np.diag(np.asarray(ntksim.limit_ntk(net, x, backend="closed_form"), np.float64)) * 7
        np.testing.assert_allclose(closed, theta, rtol=tol.rtol)


def test_limit_structure_is_theta_kron_identity() -> None:
    theta = jnp.asarray([[2.0, 0.5], [0.5, 1.0]])
    k = expand_outputs(theta, 3)
    assert k.shape == (6, 6)
    np.testing.assert_allclose(k[0:3, 3:6], 0.25 * np.eye(3))  # block (i=0, j=1) = Θ_01/n · I
    np.testing.assert_allclose(k[3:6, 3:6], 0.5 * np.eye(3))


@pytest.mark.parametrize("act", ACTIVATIONS[:2] + ACTIVATIONS[-1:], ids=lambda a: a.name)
def test_family_expectations_match_monte_carlo(act) -> None:
    """E[φ(u)φ(v)], E[φ'(u)φ'(v)] for several correlations, vs 2·10⁶ samples (5σ bands)."""
    rng = np.random.default_rng(0)
    for q1, q2, rho in [(1.0, 1.0, 0.3), (2.0, 0.5, -0.8), (1.5, 1.5, 0.99), (0.7, 1.9, 0.0)]:
        c = rho * math.sqrt(q1 * q2)
        cov = np.array([[q1, c], [c, q2]])
        uv = rng.multivariate_normal(np.zeros(2), cov, size=2_000_000)
        f = act.a * uv + act.b * np.abs(uv)
        df = act.a + act.b * np.sign(uv)
        e_phi, e_dphi = family_expectations(act, jnp.asarray(cov))
        for samples, value in ((f[:, 0] * f[:, 1], e_phi[0, 1]), (df[:, 0] * df[:, 1], e_dphi[0, 1])):
            stderr = samples.std() / math.sqrt(len(samples))
            assert abs(samples.mean() - float(value)) < 5 * stderr + 1e-6, (q1, q2, rho)
        # diagonal: E[φ(u)²] = (a²+b²)q, E[φ'(u)²] = a²+b²
        assert float(e_phi[0, 0]) == pytest.approx(act.second_moment * q1, rel=1e-6)
        assert float(e_dphi[1, 1]) == pytest.approx(act.second_moment, rel=1e-6)


@pytest.mark.parametrize("act", ACTIVATIONS, ids=lambda a: a.name)
def test_eoc_diagonal_grows_linearly_in_depth(act, tol) -> None:
    """At the EOC, Σ^k(x,x) = q for all k and Σ̇ = 1 on the diagonal, so Θ^l(x,x) = l·q."""
    x = ntksim.gaussian(jax.random.PRNGKey(1), 5, 6)
    sigma_w = ntksim.eoc_sigma_w(act)
    q = sigma_w**2 * jnp.sum(x**2, axis=1) / x.shape[1]
    for depth in (1, 2, 5, 9):
        sigma, theta = closed_form_theta(x, act, depth, sigma_w, 0.0)
        np.testing.assert_allclose(jnp.diagonal(sigma), q, rtol=tol.rtol * 10)
        np.testing.assert_allclose(jnp.diagonal(theta), depth * q, rtol=tol.rtol * 10)


def test_linear_activation_limit_is_linear_kernel(tol) -> None:
    """φ = identity at the EOC: the network is linear, Θ^l = l·⟨x, x'⟩/m_0 exactly."""
    x = ntksim.gaussian(jax.random.PRNGKey(2), 6, 4)
    net = ntksim.MLP(ntksim.Activation.preset("linear"), depth=4, width=8)
    k = ntksim.limit_ntk(net, x, backend="closed_form")
    np.testing.assert_allclose(k, 4 * (x @ x.T) / 4 / 6, rtol=tol.rtol * 10, atol=tol.atol)


def test_unknown_backend() -> None:
    net = ntksim.MLP(ntksim.Activation.preset("relu"), depth=2, width=4)
    with pytest.raises(ValueError, match="unknown limit backend"):
        ntksim.limit_ntk(net, jnp.ones((2, 3)), backend="magic")


def _zero_input_case() -> tuple[ntksim.MLP, jax.Array]:
    x = ntksim.gaussian(jax.random.PRNGKey(3), 4, 3).at[1].set(0.0)
    return ntksim.MLP(ntksim.Activation.preset("relu"), depth=3, width=8), x


def test_zero_input_gives_zero_rows_not_nan() -> None:
    """x = 0 without bias: every pre-activation is 0, so its NTK row is exactly 0."""
    net, x = _zero_input_case()
    closed = ntksim.limit_ntk(net, x, backend="closed_form")
    assert np.all(np.isfinite(closed))
    np.testing.assert_allclose(closed[1], 0.0, atol=1e-12)


@pytest.mark.reference
def test_zero_input_agrees_with_neural_tangents(tol) -> None:
    net, x = _zero_input_case()
    closed = ntksim.limit_ntk(net, x, backend="closed_form")
    nt = ntksim.limit_ntk(net, x, backend="neural_tangents")
    np.testing.assert_allclose(closed, nt, rtol=0, atol=tol.rtol * float(jnp.max(jnp.abs(nt))))


@pytest.mark.skipif(neural_tangents_available(), reason="checks the current profile, without neural-tangents")
def test_neural_tangents_backend_in_the_current_profile_says_how_to_get_it() -> None:
    net = ntksim.MLP(ntksim.Activation.preset("relu"), depth=2, width=4)
    with pytest.raises(BackendUnavailable, match=r"reference profile.*make install-reference"):
        ntksim.limit_ntk(net, jnp.ones((2, 3)), backend="neural_tangents")


# --- any activation: quadrature, NNGP and neural-tangents' other layers ------------------------
@pytest.mark.parametrize("act", ACTIVATIONS, ids=lambda a: a.name)
@pytest.mark.parametrize(("depth", "sigma_b"), [(2, None), (4, 0.3), (8, None)])
def test_quadrature_equals_closed_form_for_the_family(act, depth, sigma_b, tol) -> None:
    """Θ and Σ by quadrature reproduce the arc-cosine recursion (unequal norms: every pair is
    integrated) to 1e-10 relative in float64."""
    x = ntksim.gaussian(jax.random.PRNGKey(depth), 6, 4)
    net = ntksim.MLP(act, depth=depth, width=8, out_dim=2, sigma_b=sigma_b)
    for limit in (ntksim.limit_ntk, ntksim.limit_nngp):
        closed = limit(net, x, backend="closed_form")
        quad = limit(net, x, backend="quadrature")
        scale = float(jnp.max(jnp.abs(closed)))
        np.testing.assert_allclose(quad, closed, rtol=0, atol=tol.rtol * scale)


def test_equal_norm_inputs_take_the_one_variable_path_with_the_same_numbers(tol) -> None:
    """On the sphere (equal norms, n above the threshold) the interpolated kernel equals the
    closed form as closely as pairwise integration does."""
    x = ntksim.sphere(jax.random.PRNGKey(0), 40, 5)
    net = ntksim.MLP(ntksim.Activation.preset("relu"), depth=5, width=8)
    closed = ntksim.limit_ntk(net, x, backend="closed_form")
    quad = ntksim.limit_ntk(net, x, backend="quadrature")
    np.testing.assert_allclose(quad, closed, rtol=0, atol=tol.rtol * float(jnp.max(closed)))


def test_nngp_limit_is_sigma_and_ntk_diagonal_grows_like_depth_at_the_eoc(tol) -> None:
    """For the family on the sphere at the EOC: Σ^l(x, x) = q = σ_w² and Θ^l(x, x) = l·q."""
    x = ntksim.sphere(jax.random.PRNGKey(1), 5, 4)
    for depth in (1, 3, 6):
        net = ntksim.MLP(ntksim.activation("abs"), depth=depth, width=8)
        nngp = 5 * jnp.diagonal(ntksim.limit_nngp(net, x, backend="quadrature"))
        ntk = 5 * jnp.diagonal(ntksim.limit_ntk(net, x, backend="quadrature"))
        np.testing.assert_allclose(nngp, 1.0, rtol=tol.rtol)
        np.testing.assert_allclose(ntk, depth * 1.0, rtol=tol.rtol)


def test_auto_backend_and_closed_form_of_a_non_family_phi() -> None:
    tanh = ntksim.MLP(ntksim.activation("tanh"), depth=2, width=4, sigma_b=0.2)
    x = ntksim.sphere(jax.random.PRNGKey(0), 3, 4)
    np.testing.assert_array_equal(ntksim.limit_ntk(tanh, x), ntksim.limit_ntk(tanh, x, backend="quadrature"))
    with pytest.raises(ValueError, match=r"closed_form.*tanh needs 'quadrature'"):
        ntksim.limit_ntk(tanh, x, backend="closed_form")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tanh", "elu"])
def test_nngp_limit_matches_wide_networks_monte_carlo(name: str) -> None:
    """Σ^l is the output covariance at initialization: E over draws of N(x)N(x')ᵀ ≈ Σ^l(x, x')."""
    act = ntksim.activation(name)
    net = ntksim.MLP(act, depth=3, width=256, out_dim=64, schedule="constant", sigma_b=0.2)
    x = ntksim.sphere(jax.random.PRNGKey(2), 3, 6)
    sigma = 3 * np.asarray(ntksim.limit_nngp(net, x))[::64, ::64]  # (3, 3)
    keys = jax.random.split(jax.random.PRNGKey(3), 32)
    outs = np.stack([np.asarray(net.apply(net.init(k, x), x), np.float64) for k in keys])  # (32, 3, 64)
    samples = np.einsum("sia,sja->saij", outs, outs).reshape(-1, 3, 3)  # one per draw and output
    mean = samples.mean(0)
    stderr = samples.std(0) / np.sqrt(samples.shape[0])
    assert np.all(np.abs(mean - sigma) < 4 * stderr + 0.02 * np.abs(sigma).max()), (mean, sigma, stderr)


NT_CLOSED_FORMS = ["erf", "gelu", "sin", "monomial(2)", "monomial(3)", "hermite(3)", "polynomial", "relu",
                   "leaky_relu(0.2)"]  # fmt: skip
NT_SETTINGS = [(1, 0.3), (2, None), (3, 0.4), (5, None), (8, 0.2)]  # (depth, σ_b)
NT_CASES = [(name, depth, sigma_b) for name in NT_CLOSED_FORMS for depth, sigma_b in NT_SETTINGS]


def _nt_case(name: str, depth: int, sigma_b: float | None) -> tuple[ntksim.MLP, jax.Array]:
    act = (ntksim.activation("polynomial", coefficients=[0.3, 1.0, -0.5, 0.2]) if name == "polynomial"
           else ntksim.activation(name))  # fmt: skip
    x = 0.5 * ntksim.gaussian(jax.random.PRNGKey(depth), 5, 4)  # small norms keep polynomials tame
    # No EOC needed for a comparison; polynomials get a σ_w under which their variance stays small
    # (s^p iterated over l layers grows like q^(p^l)), so float32 does not overflow either.
    sigma_w = None if isinstance(act, ntksim.Activation) else 0.6 if act.is_polynomial else 1.2
    return ntksim.MLP(act, depth=depth, width=8, out_dim=1, sigma_b=sigma_b, sigma_w=sigma_w), x


@pytest.mark.reference
@pytest.mark.parametrize(("name", "depth", "sigma_b"), NT_CASES)
def test_quadrature_equals_neural_tangents_closed_forms(name, depth, sigma_b, tol) -> None:
    """Our quadrature against neural-tangents' own closed forms, unequal norms, with and without
    bias, NTK and NNGP: 1e-10 relative in float64 (compared unjitted, see design.md)."""
    net, x = _nt_case(name, depth, sigma_b)
    for limit in (ntksim.limit_ntk, ntksim.limit_nngp):
        ours = limit(net, x, backend="quadrature")
        nt = limit(net, x, backend="neural_tangents")
        assert_matches_neural_tangents(ours, nt, tol)


@pytest.mark.reference
def test_rectified_monomial_agrees_where_neural_tangents_is_finite(tol) -> None:
    """neural-tangents' RectifiedMonomial returns NaN at ρ = 1 (its diagonal), which then spreads
    to every entry from depth 3 on; at depth 2 its off-diagonal is finite and must agree."""
    net, x = _nt_case("rectified_monomial(2)", 2, None)
    ours = ntksim.limit_ntk(net, x, backend="quadrature")
    nt = ntksim.limit_ntk(net, x, backend="neural_tangents")
    assert bool(jnp.all(jnp.isfinite(ours)))
    off = ~np.eye(5, dtype=bool)
    assert np.all(np.isfinite(np.asarray(nt)[off]))
    scale = float(jnp.max(jnp.abs(ours)))
    np.testing.assert_allclose(np.asarray(ours)[off], np.asarray(nt)[off], rtol=0, atol=tol.rtol * scale)


# --- pairs near ρ = ±1: the recursion carries angles, not ρ -----------------------------------
GAPS = (1e-14, 1e-12, 1e-10, 1e-8, 1e-6, 1e-4, 1e-2, 0.5, 1.0)  # 1 − |ρ| of the input pairs


def _near_parallel_inputs(extra: int = 0) -> np.ndarray:
    """x₀ ∈ R³ of norm √3 and, for every gap δ in GAPS, a point at cosine 1 − δ and one at
    −(1 − δ) from it (equal norms), then `extra` random points of the same norm: (1 + 18 + extra, 3)."""
    rng = np.random.default_rng(7)
    x0 = rng.normal(size=3)
    x0 /= np.linalg.norm(x0)
    ortho = np.cross(x0, rng.normal(size=3))
    ortho /= np.linalg.norm(ortho)
    points = [x0]
    for sign in (1.0, -1.0):
        for gap in GAPS:
            angle = math.acos(1 - gap) if sign > 0 else math.pi - math.acos(1 - gap)
            points.append(math.cos(angle) * x0 + math.sin(angle) * ortho)
    others = rng.normal(size=(extra, 3))
    points += list(others / np.linalg.norm(others, axis=1, keepdims=True))
    return math.sqrt(3) * np.asarray(points)


def _mp_pair_limit(act, x, y, depth, sigma_w, sigma_b):
    """(Σ^l, Θ^l)(x, y) by the arc-cosine recursion of science.md in 40-digit arithmetic from the
    exact float inputs (mpmath): the reference that round-off of ρ cannot touch."""
    import mpmath as mp

    mp.mp.dps = 40
    a, b, w2, b2 = (mp.mpf(v) for v in (act.a, act.b, sigma_w**2, sigma_b**2))
    xs, ys = [mp.mpf(float(v)) for v in x], [mp.mpf(float(v)) for v in y]
    m0 = len(xs)
    q1 = w2 * mp.fsum(v * v for v in xs) / m0 + b2
    q2 = w2 * mp.fsum(v * v for v in ys) / m0 + b2
    c = w2 * mp.fsum(u * v for u, v in zip(xs, ys, strict=True)) / m0 + b2
    theta = c
    for _ in range(depth - 1):
        rho = max(min(c / mp.sqrt(q1 * q2), 1), -1)
        e_phi = mp.sqrt(q1 * q2) * (
            a**2 * rho + b**2 * (2 / mp.pi) * (mp.sqrt(1 - rho**2) + rho * mp.asin(rho))
        )
        e_dphi = a**2 + b**2 * (2 / mp.pi) * mp.asin(rho)
        q1, q2 = w2 * (a**2 + b**2) * q1 + b2, w2 * (a**2 + b**2) * q2 + b2
        c = w2 * e_phi + b2
        theta = c + w2 * e_dphi * theta
    return float(c), float(theta)


@pytest.mark.slow
@pytest.mark.skipif(REFERENCE, reason="heavy (quadrature at depth 10): the current profile runs it")
@pytest.mark.parametrize("act", ACTIVATIONS, ids=lambda a: a.name)
@pytest.mark.parametrize("sigma_b", [None, 0.3])
def test_near_parallel_pairs_to_1e12_at_every_depth(act, sigma_b) -> None:
    """Issue 25, bug 8: pairs with 1 − |ρ| from 1e-14 to 1 equal a 40-digit recursion to 1e-12 of
    the diagonal — the closed form at depths 1–10, the quadrature (every pair integrated; and the
    equal-norm interpolant, with more points) at 2, 3 and 10. Before the angle recursion, arccos
    of ρ one ulp from ±1 put errors of 1e-10 … 1e-8 there."""
    if not X64:
        pytest.skip("1e-12 needs float64")
    interpolant = sigma_b is None and act.name in ("relu", "ab(-0.4,1.3)")
    for extra in (0, 12) if interpolant else (0,):  # 19 points: pairwise; 31: the interpolant
        x = _near_parallel_inputs(extra)
        for depth in range(1, 11):
            net = ntksim.MLP(act, depth=depth, width=8, sigma_b=sigma_b)
            w, b = net.sigmas
            want = np.array([_mp_pair_limit(act, x[0], x[k], depth, w, b) for k in range(1, 19)])
            backends = ("closed_form",) if extra == 0 else ()
            backends += ("quadrature",) if depth in (2, 3, 10) else ()
            for backend in backends:
                sigma, theta = (np.asarray(v) for v in ntksim.kernels.limits.limit_kernels(net, x, backend))
                got = np.stack([sigma[0, 1:19], theta[0, 1:19]], axis=1)
                scale = np.array([sigma[0, 0], theta[0, 0]])
                err = np.max(np.abs(got - want) / scale)
                assert err < 1e-12, (backend, depth, extra, err)


def test_even_activation_on_x_and_minus_x_is_singular_to_1e14() -> None:
    """abs is even, so Θ(x₁, −x₁) = Θ(x₁, x₁) and the Gram on 10 points of S² plus −x₁ is
    singular: λ_min/λ_max below 1e-14 by both backends (it was 7e-9 with ρ carried)."""
    if not X64:
        pytest.skip("1e-14 needs float64")
    x = np.asarray(ntksim.sphere(jax.random.PRNGKey(3), 10, 3))
    x = np.vstack([x, -x[:1]])
    net = ntksim.MLP("abs", depth=3, width=8)
    for backend in ("closed_form", "quadrature"):
        gram = np.asarray(ntksim.limit_ntk(net, x, backend=backend))
        eig = np.linalg.eigvalsh(gram)
        assert abs(eig[0]) / eig[-1] < 1e-14, (backend, eig[0] / eig[-1])
