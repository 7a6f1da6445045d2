"""Edge of Chaos: σ_w² = 1/(a²+b²), and the pre-activation variance stays q across depth."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntksim
from ntksim.activations.eoc import chi
from ntksim.model import forward, init_params


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
