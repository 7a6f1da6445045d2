"""Activation family: presets, Δ_φ and κ_φ against the table in science.md, φ and φ'."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntksim import Activation

TABLE = {  # name: (a, b, Δ, κ) from science.md
    "relu": (0.5, 0.5, 0.5, math.sqrt(2)),
    "abs": (0.0, 1.0, 1.0, 1.0),
    "linear": (1.0, 0.0, 0.0, 1.0),
}


@pytest.mark.parametrize("name", sorted(TABLE))
def test_presets_match_table(name: str) -> None:
    a, b, delta, kappa = TABLE[name]
    act = Activation.preset(name)
    assert (act.a, act.b) == (a, b)
    assert act.delta == pytest.approx(delta, abs=1e-15)
    assert act.kappa == pytest.approx(kappa, rel=1e-15)


@pytest.mark.parametrize("alpha", [0.0, 0.01, 0.1, 0.5, 0.99])
def test_leaky_relu_constants(alpha: float) -> None:
    act = Activation.preset("leaky_relu", alpha=alpha)
    assert (act.a, act.b) == pytest.approx(((1 + alpha) / 2, (1 - alpha) / 2))
    assert act.delta == pytest.approx((1 - alpha) ** 2 / (2 * (1 + alpha**2)))
    assert act.kappa == pytest.approx(math.sqrt(2) / math.sqrt(1 + alpha**2))
    s = np.linspace(-3, 3, 13)
    np.testing.assert_allclose(act(jnp.asarray(s)), np.where(s > 0, s, alpha * s), rtol=1e-6, atol=1e-7)


def test_leaky_relu_spelled_out() -> None:
    assert Activation.preset("leaky_relu(0.1)") == Activation.preset("leaky_relu", alpha=0.1)
    assert Activation.preset("leaky_relu(0.1)").name == "leaky_relu(0.1)"


def test_function_and_derivative() -> None:
    act = Activation(0.3, -0.7)
    s = jnp.asarray([-2.0, -0.5, 0.25, 1.5])
    np.testing.assert_allclose(act(s), 0.3 * np.asarray(s) - 0.7 * np.abs(np.asarray(s)), rtol=1e-6)
    grad = jax.vmap(jax.grad(act))(s)
    np.testing.assert_allclose(act.derivative(s), grad, rtol=1e-6)
    assert act.slopes == pytest.approx((1.0, -0.4))


@pytest.mark.parametrize(
    ("args", "match"),
    [((0.0, 0.0), "zero function"), ((float("nan"), 1.0), "finite")],
)
def test_invalid_coefficients(args: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Activation(*args)


@pytest.mark.parametrize("bad", ["tanh", "leaky_relu(x)", "leaky_relu(1.5)"])
def test_invalid_presets(bad: str) -> None:
    with pytest.raises(ValueError):
        Activation.preset(bad)


def test_hashable_and_frozen() -> None:
    act = Activation.preset("relu")
    assert hash(act) == hash(Activation(0.5, 0.5, "relu"))
    with pytest.raises(AttributeError):
        act.a = 1.0  # type: ignore[misc]
