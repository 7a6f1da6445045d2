"""Activation family: presets, Δ_φ and κ_φ against the table in science.md, φ and φ'."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntksim
from ntksim import Activation
from ntksim.activations import NAMES, Elementwise

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


# --- any activation ---------------------------------------------------------------------------

PRESET_SPECS = ["tanh", "erf", "sigmoid", "elu", "elu(0.5)", "selu", "gelu", "silu", "softplus", "sin",
                "monomial(3)", "rectified_monomial(2)", "hermite(4)"]  # fmt: skip


@pytest.mark.parametrize("spec", PRESET_SPECS)
def test_derivative_is_the_autodiff_derivative(spec: str, tol) -> None:
    """Each preset's hand-written φ' equals jax.grad of its φ away from the kinks."""
    act = ntksim.activation(spec)
    s = jnp.asarray(np.r_[np.linspace(-3.1, -0.05, 9), np.linspace(0.07, 2.9, 9)])
    auto = jax.vmap(jax.grad(lambda t: act(t)))(s)
    np.testing.assert_allclose(act.derivative(s), auto, rtol=tol.rtol, atol=tol.atol)


@pytest.mark.parametrize(
    ("spec", "kinks", "degree", "parity"),
    [("tanh", (), None, "odd"), ("erf", (), None, "odd"), ("sin", (), None, "odd"),
     ("sigmoid", (), None, None), ("elu", (0.0,), None, None), ("selu", (0.0,), None, None),
     ("gelu", (), None, None),
     ("relu", (0.0,), None, None), ("abs", (0.0,), None, "even"), ("linear", (), 1, "odd"),
     ("monomial(4)", (), 4, "even"), ("monomial(3)", (), 3, "odd"), ("hermite(3)", (), 3, "odd"),
     ("rectified_monomial(2)", (0.0,), None, None)],
)  # fmt: skip
def test_kinks_degree_and_parity(spec: str, kinks: tuple, degree: int | None, parity: str | None) -> None:
    act = ntksim.activation(spec)
    assert tuple(act.kinks) == kinks and act.degree == degree and act.parity == parity
    assert act.is_polynomial == (degree is not None)
    s = jnp.linspace(-2.0, 2.0, 11)
    if parity == "odd":
        np.testing.assert_allclose(act(-s), -act(s), atol=1e-6)
    if parity == "even":
        np.testing.assert_allclose(act(-s), act(s), atol=1e-6)


def test_presets_match_their_formulas() -> None:
    """Spot values from the definitions (science.md), computed independently with math."""
    s = 0.7
    cases = {
        "tanh": math.tanh(s), "erf": math.erf(s), "sigmoid": 1 / (1 + math.exp(-s)),
        "gelu": s * 0.5 * (1 + math.erf(s / math.sqrt(2))), "silu": s / (1 + math.exp(-s)),
        "softplus": math.log1p(math.exp(s)), "sin": math.sin(s), "monomial(3)": s**3,
        "hermite(3)": s**3 - 3 * s, "hermite(4)": s**4 - 6 * s**2 + 3,
    }  # fmt: skip
    for spec, want in cases.items():
        assert float(ntksim.activation(spec)(jnp.asarray(s))) == pytest.approx(want, rel=1e-6), spec
    assert float(ntksim.activation("elu", alpha=0.5)(jnp.asarray(-s))) == pytest.approx(
        0.5 * math.expm1(-s), rel=1e-6
    )
    selu = float(ntksim.activation("selu")(jnp.asarray(-s)))
    assert selu == pytest.approx(1.0507009873554805 * 1.6732632423543772 * math.expm1(-s), rel=1e-6)
    poly = ntksim.activation("polynomial", coefficients=[1.0, -2.0, 0.5])
    assert float(poly(jnp.asarray(s))) == pytest.approx(1 - 2 * s + 0.5 * s * s, rel=1e-6)
    assert poly.degree == 2 and poly.parity is None


def test_family_names_give_the_family_type_and_equal_presets_are_equal() -> None:
    assert isinstance(ntksim.activation("relu"), ntksim.Activation)
    assert ntksim.activation("leaky_relu(0.1)") == ntksim.Activation.preset("leaky_relu", alpha=0.1)
    assert ntksim.activation("elu(0.5)") == ntksim.activation("elu", alpha=0.5)
    assert isinstance(ntksim.activation("tanh"), Elementwise)
    assert hash(ntksim.activation("monomial", degree=3)) == hash(ntksim.activation("monomial(3)"))
    assert set(PRESET_SPECS[:10]) - {"elu(0.5)"} <= set(NAMES)


@pytest.mark.parametrize(
    ("call", "words"),
    [(lambda: ntksim.activation("swoosh"), ["unknown activation", "swoosh"]),
     (lambda: ntksim.activation("elu", beta=1.0), ["elu", "unknown parameter", "beta"]),
     (lambda: ntksim.activation("tanh", alpha=1.0), ["tanh", "alpha"]),
     (lambda: ntksim.activation("monomial", degree=0), ["degree"]),
     (lambda: ntksim.activation("elu", alpha=-1.0), ["alpha"]),
     (lambda: ntksim.activation("polynomial", coefficients=[1.0]), ["polynomial"]),
     (lambda: ntksim.activation(lambda s: float(s) + 1, name="pyfloat"), ["pyfloat", "JAX-traceable"]),
     (lambda: ntksim.activation(lambda s: s.sum(), name="reduces"), ["reduces", "elementwise"])],
)  # fmt: skip
def test_bad_activations_are_one_line_errors(call, words: list[str]) -> None:
    with pytest.raises(ValueError) as err:
        call()
    message = str(err.value)
    assert "\n" not in message and all(w in message for w in words), message


def test_user_activation_takes_its_derivative_by_autodiff(tol) -> None:
    act = ntksim.activation(lambda s: jnp.where(s > 0, s, 0.1 * s**3), name="mine", kinks=(0.0,))
    s = jnp.asarray([-1.5, -0.3, 0.4, 2.0])
    np.testing.assert_allclose(act.derivative(s), jnp.where(s > 0, 1.0, 0.3 * s**2), rtol=tol.rtol)
    assert act.kinks == (0.0,) and act.name == "mine" and not act.is_polynomial
