"""Training dynamics against independent references: neural-tangents' gradient_descent_mse (the
reference profile), the function-space recursion, a hand-derived first step, and the empirical
NTK's linear dynamics for the linearised network."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ntksim
from ntksim.nets.dynamics import (
    limit_gradient_descent,
    limit_momentum,
    make_optimizer,
    observation_steps,
    optimizer_parameters,
    rms,
    train_seeds,
)
from ntksim.nets.empirical import empirical_ntk
from ntksim.nets.model import init_params

needs_x64 = pytest.mark.skipif(not jax.config.jax_enable_x64, reason="exact comparisons need float64")


def _problem(seed: int = 0, n: int = 7, n_test: int = 3) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, n))
    k = a @ a.T / n
    return (
        k,
        rng.normal(size=(n_test, n)),
        rng.normal(size=(n, 1)),
        rng.normal(size=(n, 1)),
        rng.normal(size=(n_test, 1)),
    )


@needs_x64
@pytest.mark.parametrize("relative", [0.2, 0.5, 0.95])
def test_discrete_closed_form_equals_the_function_space_recursion(relative: float) -> None:
    """(I − ηK)^t in K's eigenbasis (also for ηλ ≥ 1, where the factor is negative) equals
    iterating f ← f − ηK(f − y) (and the test update f* ← f* − ηK_*(f − y)) step by step."""
    k, ks, y, f0, g0 = _problem()
    lr = relative * 2 / np.linalg.eigvalsh(k)[-1]
    steps = np.array([0, 1, 2, 3, 10, 41])
    train, test = limit_gradient_descent(
        *(jnp.asarray(v) for v in (k, ks, y, f0, g0)), lr, jnp.asarray(steps)
    )
    f, g, want_f, want_g = f0.copy(), g0.copy(), [], []
    for t in range(steps[-1] + 1):
        if t in steps:
            want_f.append(f.copy())
            want_g.append(g.copy())
        f, g = f - lr * k @ (f - y), g - lr * ks @ (f - y)
    np.testing.assert_allclose(np.asarray(train), np.stack(want_f), rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(np.asarray(test), np.stack(want_g), rtol=1e-9, atol=1e-11)


@needs_x64
def test_momentum_recursion_is_heavy_ball_in_function_space() -> None:
    """optax.sgd with momentum on a linear model y = Jθ equals the function-space recursion with
    K = JJ^T/n (the model is exactly linear, so this holds to round-off)."""
    rng = np.random.default_rng(3)
    n, p = 6, 9
    jac, jac_test = rng.normal(size=(n, p)), rng.normal(size=(2, p))
    y, theta0 = rng.normal(size=(n, 1)), rng.normal(size=(p, 1))
    for nesterov in (False, True):
        opt = optax.sgd(0.1, momentum=0.8, nesterov=nesterov)
        theta, state, out, out_test = jnp.asarray(theta0), None, [], []
        state = opt.init(theta)
        for _ in range(12):
            grad = jax.grad(lambda th: 0.5 * jnp.sum((jac @ th - y) ** 2) / n)(theta)
            update, state = opt.update(grad, state, theta)
            theta = optax.apply_updates(theta, update)
            out.append(jac @ theta)
            out_test.append(jac_test @ theta)
        k, ks = jac @ jac.T / n, jac_test @ jac.T / n
        f, g = limit_momentum(
            *(jnp.asarray(v) for v in (k, ks, y, jac @ theta0, jac_test @ theta0)),
            0.1,
            0.8,
            nesterov,
            np.arange(1, 13),
        )
        np.testing.assert_allclose(np.asarray(f), np.stack(out), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(np.asarray(g), np.stack(out_test), rtol=1e-10, atol=1e-12)


@pytest.mark.reference
@needs_x64
@pytest.mark.parametrize("lr", [0.1, 1.0, 3.0])
def test_continuous_limit_equals_neural_tangents(lr: float) -> None:
    from neural_tangents import predict

    x = np.asarray(ntksim.sphere(jax.random.PRNGKey(0), 10, 4))
    x_test = np.asarray(ntksim.sphere(jax.random.PRNGKey(1), 5, 4))
    net = ntksim.MLP("tanh", depth=3, width=1, sigma_b=0.2)
    theta = np.asarray(ntksim.kernels.limits.limit_theta(net, jnp.asarray(np.r_[x, x_test])))
    theta_train, theta_test = theta[:10, :10], theta[10:, :10]
    y, f0, g0 = np.sin(x[:, :1]), 0.1 * np.cos(x[:, 1:2]), 0.1 * np.cos(x_test[:, 1:2])
    steps = np.array([0.0, 0.5, 3.0, 20.0, 400.0])
    ours = limit_gradient_descent(
        *(jnp.asarray(v) for v in (theta_train / 10, theta_test / 10, y, f0, g0)),
        lr,
        jnp.asarray(steps),
        continuous=True,
    )
    nt_train, nt_test = predict.gradient_descent_mse(
        jnp.asarray(theta_train), jnp.asarray(y), learning_rate=lr
    )(steps, jnp.asarray(f0), jnp.asarray(g0), jnp.asarray(theta_test))
    np.testing.assert_allclose(np.asarray(ours[0]), np.asarray(nt_train), rtol=0, atol=1e-10)
    np.testing.assert_allclose(np.asarray(ours[1]), np.asarray(nt_test), rtol=0, atol=1e-10)


def _data(n: int = 12, n_test: int = 4, dim: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.asarray(ntksim.sphere(jax.random.PRNGKey(0), n + n_test, dim), np.float64)
    return x[:n], np.sin(2 * x[:n, :1]), x[n:]


@needs_x64
def test_one_gradient_step_moves_outputs_by_the_empirical_ntk() -> None:
    """f₁ − f₀ = −η K(θ₀)(f₀ − y) + O(η²): the remainder shrinks 4× when η halves."""
    x, y, x_test = _data()
    net = ntksim.MLP("elu", depth=3, width=32, schedule="constant", dtype="float64")
    key = jax.random.PRNGKey(5)
    k0 = np.asarray(empirical_ntk(net, init_params(net, key, x.shape[1]), x))
    errors = []
    for lr in (0.2, 0.1, 0.05):
        r = train_seeds(
            net, key[None], x, y, x_test, optax.sgd(lr), np.array([0, 1]), linearized=False, drift=False
        )
        f0, f1 = r.f_train[0, 0], r.f_train[0, 1]
        errors.append(np.max(np.abs(f1 - f0 + lr * k0 @ (f0 - y))))
    assert 3.5 < errors[0] / errors[1] < 4.5 and 3.5 < errors[1] / errors[2] < 4.5, errors


@needs_x64
def test_linearised_network_follows_its_own_ntk_exactly() -> None:
    """The linearised model trained by GD is the eNTK of θ₀'s linear dynamics, on train and test."""
    x, y, x_test = _data()
    net = ntksim.MLP("relu", depth=3, width=24, schedule="constant", dtype="float64")
    key = jax.random.PRNGKey(2)
    params = init_params(net, key, x.shape[1])
    both = np.asarray(empirical_ntk(net, params, np.r_[x, x_test])) * (len(x) + len(x_test)) / len(x)
    k, ks = both[: len(x), : len(x)], both[len(x) :, : len(x)]
    lr = 0.9 * 2 / np.linalg.eigvalsh(k)[-1]
    steps = observation_steps(60, 6)
    r = train_seeds(net, key[None], x, y, x_test, optax.sgd(lr), steps, drift=False)
    train, test = limit_gradient_descent(
        *(jnp.asarray(v) for v in (k, ks, y, r.f_train[0, 0], r.f_test[0, 0])), lr, jnp.asarray(steps)
    )
    np.testing.assert_allclose(r.lin_train[0], np.asarray(train), rtol=0, atol=1e-10)
    np.testing.assert_allclose(r.lin_test[0], np.asarray(test), rtol=0, atol=1e-10)


@needs_x64
def test_wide_networks_stay_near_the_limit_and_drift_shrinks_with_width() -> None:
    x, y, x_test = _data(n=10, n_test=6)
    steps = observation_steps(100, 5)
    result = {}
    for width in (64, 2048):
        net = ntksim.MLP("relu", depth=2, width=width, schedule="constant", dtype="float64")
        theta = np.asarray(ntksim.kernels.limits.limit_theta(net, jnp.asarray(np.r_[x, x_test]))) / len(x)
        k, ks = theta[:10, :10], theta[10:, :10]
        lr = 0.5 * 2 / np.linalg.eigvalsh(k)[-1]
        keys = jnp.stack([jax.random.PRNGKey(s) for s in range(4)])
        r = train_seeds(net, keys, x, y, x_test, optax.sgd(lr), steps)
        _, test = limit_gradient_descent(
            *(jnp.asarray(v) for v in (k, ks, y, r.f_train[:, 0], r.f_test[:, 0])), lr, jnp.asarray(steps)
        )
        result[width] = (np.median(rms(r.f_test, np.asarray(test)), axis=0), np.median(r.drift[:, -1]))
    assert np.all(result[2048][0] < 0.05)  # every observed step (test outputs are O(1))
    assert np.max(result[2048][0]) < 0.5 * np.max(result[64][0])
    assert result[2048][1] < 0.3 * result[64][1]  # 32× the width: m^{-1/2} predicts 0.18


def test_optimizer_names_and_parameters_are_checked() -> None:
    assert "momentum" in optimizer_parameters("sgd") and "b1" in optimizer_parameters("adam")
    with pytest.raises(ValueError, match="unknown optimizer 'adamm'"):
        optimizer_parameters("adamm")
    with pytest.raises(ValueError, match=r"unknown parameter 'beta1'.*b1"):
        make_optimizer("adam", 0.1, {"beta1": 0.9})
    with pytest.raises(ValueError, match="takes no learning_rate"):
        optimizer_parameters("apply_updates")
