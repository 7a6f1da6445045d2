"""The MLP: parameter layout, schedules, dtypes, and the forward pass against a NumPy reference."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntksim


def _numpy_forward(params: dict, x: np.ndarray, a: float, b: float, sw: float, sb: float) -> np.ndarray:
    """science.md's recursion, written independently in float64 NumPy."""
    depth = sum(1 for k in params if k.startswith("W"))
    z = x
    for k in range(1, depth + 1):
        w = np.asarray(params[f"W{k}"], np.float64).T  # W^k as in science.md: (m_k, m_{k-1})
        h = (sw / math.sqrt(w.shape[1])) * (w @ z.T).T
        if f"b{k}" in params:
            h = h + sb * np.asarray(params[f"b{k}"], np.float64)
        z = a * h + b * np.abs(h)
    return h


@pytest.mark.parametrize(("sigma_b", "out_dim"), [(None, 1), (0.3, 4)])
def test_forward_matches_numpy(sigma_b: float | None, out_dim: int, tol) -> None:
    act = ntksim.Activation(0.2, 0.9)
    net = ntksim.MLP(activation=act, depth=4, width=6, out_dim=out_dim, sigma_b=sigma_b)
    x = ntksim.gaussian(jax.random.PRNGKey(0), 5, 3)
    variables = net.init(jax.random.PRNGKey(1), x)
    out = net.apply(variables, x)
    sw, sb = net.sigmas
    ref = _numpy_forward(variables["params"], np.asarray(x, np.float64), 0.2, 0.9, sw, sb)
    assert out.shape == (5, out_dim)
    np.testing.assert_allclose(out, ref, rtol=tol.rtol * 10, atol=tol.atol * 10)


def test_parameter_layout() -> None:
    act = ntksim.Activation.preset("relu")
    x = jnp.ones((2, 3))
    no_bias = ntksim.MLP(act, depth=3, width=4).init(jax.random.PRNGKey(0), x)["params"]
    assert {k: v.shape for k, v in no_bias.items()} == {"W1": (3, 4), "W2": (4, 16), "W3": (16, 1)}
    biased = ntksim.MLP(act, depth=3, width=4, sigma_b=0.1, out_dim=2).init(jax.random.PRNGKey(0), x)[
        "params"
    ]
    assert biased["b2"].shape == (16,) and biased["b3"].shape == (2,)
    explicit = ntksim.MLP(act, depth=3, schedule=[5, 7]).init(jax.random.PRNGKey(0), x)["params"]
    assert explicit["W2"].shape == (5, 7)
    # σ_b = 0 explicitly still means no bias parameters at all
    zero = ntksim.MLP(act, depth=2, width=4, sigma_b=0.0).init(jax.random.PRNGKey(0), x)["params"]
    assert set(zero) == {"W1", "W2"}


def test_parameters_are_standard_normal() -> None:
    net = ntksim.MLP(ntksim.Activation.preset("abs"), depth=2, width=512, sigma_b=1.0, out_dim=64)
    params = net.init(jax.random.PRNGKey(3), jnp.ones((1, 256)))["params"]
    w = np.asarray(params["W1"]).ravel()
    assert abs(w.mean()) < 0.01 and abs(w.std() - 1.0) < 0.01


def test_num_params() -> None:
    net = ntksim.MLP(ntksim.Activation.preset("relu"), depth=3, width=4, sigma_b=0.5, out_dim=2)
    params = net.init(jax.random.PRNGKey(0), jnp.ones((1, 3)))["params"]
    assert net.num_params(3) == sum(p.size for p in params.values())


def test_dtype_follows_x64_unless_given(x64: bool) -> None:
    act = ntksim.Activation.preset("relu")
    x = jnp.ones((2, 3))
    params = ntksim.MLP(act, depth=2, width=4).init(jax.random.PRNGKey(0), x)["params"]
    assert params["W1"].dtype == (jnp.float64 if x64 else jnp.float32)
    net32 = ntksim.MLP(act, depth=2, width=4, dtype="float32")
    assert net32.apply(net32.init(jax.random.PRNGKey(0), x), x).dtype == jnp.float32


def test_rejects_bad_input() -> None:
    net = ntksim.MLP(ntksim.Activation.preset("relu"), depth=2, width=4)
    with pytest.raises(ValueError, match="shape"):
        net.init(jax.random.PRNGKey(0), jnp.ones(3))
    with pytest.raises(ValueError, match="out_dim"):
        ntksim.MLP(ntksim.Activation.preset("relu"), depth=2, width=4, out_dim=0).init(
            jax.random.PRNGKey(0), jnp.ones((1, 3))
        )


def test_sigma_b_none_means_no_bias_for_any_phi_and_sigma_w_its_eoc() -> None:
    """sigma_b=None is σ_b = 0 (no bias parameters) for every φ; sigma_w=None the EOC there:
    tanh's 1 (q* = 0); GELU has no EOC point at σ_b = 0, which is an error, not a guess."""

    net = ntksim.MLP(ntksim.activation("tanh"), depth=2, width=4)
    assert net.sigmas == (pytest.approx(1.0), 0.0)
    params = net.init(jax.random.PRNGKey(0), jnp.ones((2, 3)))["params"]
    assert not any(name.startswith("b") for name in params)
    with pytest.raises(ntksim.NoEOCPoint, match="gelu"):
        ntksim.MLP(ntksim.activation("gelu"), depth=2, width=4).sigmas  # noqa: B018


def test_mlp_takes_a_preset_name_or_a_jax_function() -> None:
    import jax.numpy as jnp

    from ntksim import Activation, activation

    assert ntksim.MLP(activation="relu", depth=2, width=4).activation == Activation.preset("relu")
    assert ntksim.MLP(activation="elu(0.5)", depth=2, width=4).activation == activation("elu", alpha=0.5)
    assert ntksim.MLP(activation=jnp.tanh, depth=2, width=4).activation.name == "tanh"
    with pytest.raises(TypeError, match="MLP activation: expected a preset name"):
        ntksim.MLP(activation=3, depth=2, width=4)
    with pytest.raises(ValueError, match="unknown"):
        ntksim.MLP(activation="relux", depth=2, width=4)


@pytest.mark.skipif(jax.config.jax_enable_x64, reason="x64 is on: float64 works")
def test_float64_mlp_without_x64_is_refused_not_silently_float32() -> None:
    with pytest.raises(ValueError, match="float64 needs JAX's x64 mode"):
        ntksim.MLP(activation="relu", depth=2, width=4, dtype="float64")
