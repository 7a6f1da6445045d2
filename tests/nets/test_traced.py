"""One compilation per shape: the sweep's traced path against the static one it replaces."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntksim
from ntksim.nets.empirical import _empirical_seeds_traced, empirical_ntk_seeds, shape_key
from ntksim.nets.model import HostScalars, bias_scale_sq, readout_scale, weight_scale, weight_scale_sq

FAMILY = ["relu", "abs", "linear", "leaky_relu(0.1)"]


def _keys(count: int) -> jax.Array:
    return jnp.stack([jax.random.PRNGKey(s) for s in range(count)])


def test_host_scalars_are_the_static_paths_numbers_bit_for_bit() -> None:
    """The traced path multiplies by exactly the scalars the static path has as constants."""
    for sigma_w in (math.sqrt(2.0), 1.0, 1.7, 0.3):
        table = HostScalars.weights(sigma_w, [5, 7, 28])
        for m in (5, 7, 28):
            assert table.values[("weight_scale", m)] == sigma_w / math.sqrt(m)
            assert table.values[("weight_scale_sq", m)] == (sigma_w / math.sqrt(m)) ** 2
            assert table.values[("readout_scale", m)] == sigma_w**2 / m
            assert weight_scale(table, m) == weight_scale(sigma_w, m)
            assert weight_scale_sq(table, m) == weight_scale_sq(sigma_w, m)
            assert readout_scale(table, m) == readout_scale(sigma_w, m)
    assert bias_scale_sq(HostScalars.biases(0.3)) == 0.3**2


def test_networks_differing_only_in_numbers_share_one_shape_key() -> None:
    """(a, b), σ_w and σ_b do not change the key; widths, depth and biases do."""
    nets = [
        ntksim.MLP(ntksim.activation(a), depth=3, width=8, sigma_w=w) for a in FAMILY for w in (None, 1.3)
    ]
    assert len({shape_key(n) for n in nets}) == 1
    assert shape_key(nets[0]) != shape_key(ntksim.MLP(ntksim.activation("relu"), depth=3, width=9))
    assert shape_key(nets[0]) != shape_key(
        ntksim.MLP(ntksim.activation("relu"), depth=3, width=8, sigma_b=0.2)
    )
    assert shape_key(nets[0]) != shape_key(ntksim.MLP(ntksim.activation("tanh"), depth=3, width=8))


@pytest.mark.parametrize("method", ["structured", "jacobian", "nngp"])
@pytest.mark.parametrize("sigma_b", [None, 0.3])
def test_traced_path_compiles_once_per_shape_and_agrees_with_the_static_path(method, sigma_b, tol) -> None:
    """Four activations × two σ_w: one compiled program, and each network's kernels equal the
    static path's to round-off (not bit for bit: XLA folds constant scalars, see empirical.py)."""
    x = ntksim.sphere(jax.random.PRNGKey(0), n=6, dim=4)
    keys = _keys(3)
    before = _empirical_seeds_traced._cache_size()
    for name in FAMILY:
        for sigma_w in (None, 1.3):
            net = ntksim.MLP(ntksim.activation(name), depth=3, width=5, sigma_w=sigma_w, sigma_b=sigma_b)
            static = np.asarray(empirical_ntk_seeds(net, keys, x, method))
            traced = np.asarray(empirical_ntk_seeds(net, keys, x, method, traced=True))
            scale = np.max(np.abs(static))
            np.testing.assert_allclose(traced, static, rtol=0, atol=10 * tol.rtol * scale)
    assert _empirical_seeds_traced._cache_size() - before == 1


def test_padding_a_short_seed_block_changes_no_number() -> None:
    """A block of 3 seeds padded to 5 (the full blocks' program) gives the same 3 kernels, bit for bit."""
    net = ntksim.MLP(ntksim.activation("relu"), depth=2, width=6)
    x = ntksim.sphere(jax.random.PRNGKey(0), n=5, dim=3)
    plain = np.asarray(empirical_ntk_seeds(net, _keys(3), x))
    padded = np.asarray(empirical_ntk_seeds(net, _keys(3), x, pad_to=5))
    assert padded.shape == plain.shape
    np.testing.assert_array_equal(padded, plain)
