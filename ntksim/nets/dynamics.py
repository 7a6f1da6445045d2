"""Training dynamics: finite networks trained with optax beside their linearisation and the
infinite-width prediction (science.md, "Training dynamics").

Loss L(θ) = (1/2n) Σ_i ‖f(x_i; θ) − y_i‖² on the n training inputs, so one gradient step moves the
outputs by −η K(θ) (f − y) to first order, K the NTK matrix already divided by n (ntksim's
convention). In the limit K = K∞ is constant:

- gradient descent, discrete steps: f_t − y = (I − ηK)^t (f_0 − y) on the training inputs and
  f_t(x*) = f_0(x*) − K_* K⁻¹ (I − (I − ηK)^t)(f_0 − y) on test inputs (K_* = Θ(x*, X)/n), in
  K's eigenbasis; continuous time replaces (1 − ηλ)^t by e^{−ηλt} (neural-tangents'
  `predict.gradient_descent_mse`, whose loss is the mean over all n·m_l entries: equal for m_l = 1);
- heavy-ball momentum (optax.sgd with momentum β): u_{t+1} = K(f_t − y) + β u_t,
  f_{t+1} = f_t − η u_{t+1} (Nesterov: f_{t+1} = f_t − η (K(f_t − y) + β u_{t+1})), iterated;
- any other optimizer (adam, …) acts on parameters coordinate-wise and has no function-space
  limit of this kind: the linearised network is then the reference.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import Array
from jax.typing import ArrayLike

from ntksim.nets.empirical import MATMUL_PRECISION, kernel_fn
from ntksim.nets.model import MLP, forward, init_params

Params = dict[str, Array]


# ----------------------------------------------------------------------------- optimizers


def optimizer_parameters(name: str) -> tuple[str, ...]:
    """The keyword parameters of `optax.<name>` other than learning_rate; ValueError (one line)
    when optax has no optimizer of that name."""
    factory = getattr(optax, name, None)
    if factory is None or not callable(factory) or name.startswith("_"):
        raise ValueError(
            f"unknown optimizer {name!r}: not a function of optax (e.g. sgd, adam, adamw, rmsprop)"
        )
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        raise ValueError(f"optimizer {name!r}: cannot read optax.{name}'s parameters") from None
    if "learning_rate" not in parameters:
        raise ValueError(
            f"optimizer {name!r}: optax.{name} takes no learning_rate, so it is not an optimizer"
        )
    return tuple(p for p in parameters if p != "learning_rate")


def make_optimizer(name: str, learning_rate: float, params: dict[str, Any]) -> optax.GradientTransformation:
    """optax.<name>(learning_rate, **params), after checking every parameter name."""
    known = optimizer_parameters(name)
    for key in params:
        if key not in known:
            raise ValueError(
                f"optimizer {name!r}: unknown parameter {key!r} (optax.{name} takes {', '.join(known)})"
            )
    return getattr(optax, name)(learning_rate, **params)


# ----------------------------------------------------------------------------- the limit


def observation_steps(steps: int, count: int) -> np.ndarray:
    """0, then about `count` log-spaced steps up to `steps` (distinct integers, ascending)."""
    spaced = np.unique(np.round(np.logspace(0, np.log10(steps), max(count, 1))).astype(int))
    return np.unique(np.r_[0, spaced, steps])


def _gd_factors(eigenvalues: Array, lr: float, t: Array, continuous: bool) -> tuple[Array, Array]:
    """(decay, gain) per eigenvalue λ and time t: decay = (1 − ηλ)^t (or e^{−ηλt}) and
    gain = (1 − decay)/λ (→ ηt as λ → 0). eigenvalues (n,), t (T,) → two (T, n)."""
    lam = jnp.maximum(eigenvalues, 0.0)[None, :]  # PSD: a negative eigenvalue is round-off
    t = t[:, None]
    small = lam * lr < 1e-12
    if continuous:
        decay = jnp.exp(-lr * lam * t)
        gain = jnp.where(small, lr * t, -jnp.expm1(-lr * lam * t) / jnp.where(small, 1.0, lam))
        return decay, gain
    # (1 − ηλ)^t for integer t, also where 1 − ηλ ≤ 0 (ηλ ∈ [1, 2): oscillating, still stable)
    base = 1.0 - lr * lam
    magnitude = jnp.exp(t * jnp.log(jnp.where(base == 0, 1.0, jnp.abs(base))))
    sign = jnp.where((base < 0) & (jnp.mod(t, 2) == 1), -1.0, 1.0)
    decay = jnp.where(base == 0, jnp.where(t == 0, 1.0, 0.0), sign * magnitude)
    # small ηλ: 1 − (1 − ηλ)^t loses digits; −expm1(t·log1p(−ηλ)) keeps them
    near = jnp.abs(lr * lam) < 0.5
    accurate = -jnp.expm1(t * jnp.log1p(-jnp.where(near, lr * lam, 0.0)))
    gain = jnp.where(small, lr * t, jnp.where(near, accurate, 1.0 - decay) / jnp.where(small, 1.0, lam))
    return decay, gain


def limit_gradient_descent(
    k_train: Array,
    k_test_train: Array,
    y_train: Array,
    f0_train: Array,
    f0_test: Array,
    lr: float,
    steps: Array,
    continuous: bool = False,
) -> tuple[Array, Array]:
    """Outputs of the kernel's linear dynamics under gradient descent at the given steps.

    k_train (n, n) and k_test_train (n*, n): the NTK matrices divided by n; y_train, f0_train
    (n, o); f0_test (..., n*, o) — leading axes (seeds) broadcast; steps (T,).
    Returns f_train (..., T, n, o) and f_test (..., T, n*, o)."""
    y_train = jnp.broadcast_to(y_train, f0_train.shape)  # seeds share the targets
    eigenvalues, vectors = jnp.linalg.eigh(k_train)
    decay, gain = _gd_factors(eigenvalues, lr, jnp.asarray(steps, k_train.dtype), continuous)
    residual = jnp.einsum("ij,...jo->...io", vectors.T, f0_train - y_train)  # V^T (f_0 − y)
    train = y_train[..., None, :, :] + jnp.einsum("ij,tj,...jo->...tio", vectors, decay, residual)
    moved = jnp.einsum("ij,tj,...jo->...tio", vectors, gain, residual)  # K⁻¹(I − decay)(f_0 − y)
    test = f0_test[..., None, :, :] - jnp.einsum("ij,...tjo->...tio", k_test_train, moved)
    return train, test


def limit_momentum(
    k_train: Array,
    k_test_train: Array,
    y_train: Array,
    f0_train: Array,
    f0_test: Array,
    lr: float,
    momentum: float,
    nesterov: bool,
    steps: ArrayLike,
) -> tuple[Array, Array]:
    """The same for heavy-ball (or Nesterov) momentum, by iterating the function-space recursion;
    shapes as `limit_gradient_descent` (f0 arrays may carry leading seed axes)."""
    y_train = jnp.broadcast_to(y_train, f0_train.shape)  # seeds share the targets
    last = int(np.max(steps))
    observed = jnp.zeros(last + 1, bool).at[jnp.asarray(steps)].set(True)

    def step(carry: tuple, _: Any) -> tuple:
        f, u, g, v = carry  # train outputs, train velocity, test outputs, test velocity
        grad, grad_test = (jnp.einsum("ij,...jo->...io", k, f - y_train) for k in (k_train, k_test_train))
        u, v = grad + momentum * u, grad_test + momentum * v
        if nesterov:
            f, g = f - lr * (grad + momentum * u), g - lr * (grad_test + momentum * v)
        else:
            f, g = f - lr * u, g - lr * v
        return (f, u, g, v), (f, g)

    init = (f0_train, jnp.zeros_like(f0_train), f0_test, jnp.zeros_like(f0_test))
    f_steps: Array
    g_steps: Array
    _, (f_steps, g_steps) = jax.lax.scan(step, init, None, length=last)
    fs = jnp.concatenate([f0_train[None], f_steps])  # step 0, 1, …, last
    gs = jnp.concatenate([f0_test[None], g_steps])
    fs = jnp.moveaxis(fs[observed], 0, -3)
    gs = jnp.moveaxis(gs[observed], 0, -3)
    return fs, gs


# ----------------------------------------------------------------------------- finite networks


@dataclass(frozen=True)
class TrainResult:
    """Per seed and observation step (axes (S, T, …)): outputs of the network and of its
    linearisation on train and test inputs, the NTK drift and the relative parameter movement."""

    f_train: np.ndarray  # (S, T, n, o)
    f_test: np.ndarray  # (S, T, n*, o)
    lin_train: np.ndarray | None
    lin_test: np.ndarray | None
    drift: np.ndarray | None  # (S, T): ‖K(θ_t) − K(θ_0)‖₂ / ‖K(θ_0)‖₂ on the training inputs
    movement: np.ndarray  # (S, T): ‖θ_t − θ_0‖ / ‖θ_0‖
    k0: np.ndarray | None  # (S, n·o, n·o): K(θ_0)


def _norm(tree: Any) -> Array:
    return jnp.sqrt(sum(jnp.sum(leaf**2) for leaf in jax.tree_util.tree_leaves(tree)))


def train_seeds(
    net: MLP,
    keys: Array,
    x_train: Array,
    y_train: Array,
    x_test: Array,
    optimizer: optax.GradientTransformation,
    steps: np.ndarray,
    linearized: bool = True,
    drift: bool = True,
    method: str = "structured",
) -> TrainResult:
    """Train one network per PRNG key (vmapped, one compiled loop) with `optimizer` on the MSE
    loss, and (linearized) the network's first-order Taylor model around its own θ₀ with the same
    optimizer; observe at `steps` (ascending, starting at 0)."""
    sigma_w, sigma_b = net.sigmas
    dtype = net.compute_dtype
    x_train, x_test = jnp.asarray(x_train, dtype), jnp.asarray(x_test, dtype)
    y_train = jnp.asarray(y_train, dtype)
    n = x_train.shape[0]
    kernel = kernel_fn(method)

    def apply(params: Params, x: Array) -> Array:
        return forward(params, x, net.activation, sigma_w, sigma_b)[0]

    def linear_apply(params: Params, origin: Params, x: Array) -> Array:
        delta = jax.tree_util.tree_map(jnp.subtract, params, origin)
        out, tangent = jax.jvp(lambda p: apply(p, x), (origin,), (delta,))
        return out + tangent

    def loss(out: Array) -> Array:
        return 0.5 * jnp.sum((out - y_train) ** 2) / n

    def one_step(state: tuple, origin: Params) -> tuple:
        params, opt_state, lin, lin_state = state
        grads = jax.grad(lambda p: loss(apply(p, x_train)))(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        if linearized:
            lin_grads = jax.grad(lambda p: loss(linear_apply(p, origin, x_train)))(lin)
            lin_updates, lin_state = optimizer.update(lin_grads, lin_state, lin)
            lin = optax.apply_updates(lin, lin_updates)
        return params, opt_state, lin, lin_state

    def observe(state: tuple, origin: Params, k0: Array) -> dict[str, Array]:
        params, _, lin, _ = state
        out = {
            "f_train": apply(params, x_train),
            "f_test": apply(params, x_test),
            "movement": _norm(jax.tree_util.tree_map(jnp.subtract, params, origin)) / _norm(origin),
        }
        if linearized:
            out["lin_train"] = linear_apply(lin, origin, x_train)
            out["lin_test"] = linear_apply(lin, origin, x_test)
        if drift:
            k = kernel(params, x_train, net.activation, sigma_w, sigma_b)
            out["drift"] = jnp.linalg.norm(k - k0, 2) / jnp.linalg.norm(k0, 2)
        return out

    @jax.jit
    def start(key: Array) -> tuple:
        def one(k: Array) -> tuple:
            params = init_params(net, k, x_train.shape[1])
            k0 = (
                kernel(params, x_train, net.activation, sigma_w, sigma_b)
                if drift
                else jnp.zeros((1, 1), dtype)
            )
            state = (params, optimizer.init(params), params, optimizer.init(params))
            return state, params, k0

        return jax.vmap(one)(key)

    @jax.jit
    def advance(state: tuple, origin: Params, count: Array) -> tuple:
        def run(s: tuple, o: Params) -> tuple:
            return jax.lax.fori_loop(0, count, lambda _, c: one_step(c, o), s)

        return jax.vmap(run)(state, origin)

    look = jax.jit(jax.vmap(observe))
    # Full-precision matmuls, as for the eNTK: accelerators would otherwise train in TF32.
    with jax.default_matmul_precision(MATMUL_PRECISION):
        state, origin, k0 = start(keys)
        records = []
        done = 0
        for target in steps:
            state = advance(state, origin, jnp.asarray(int(target) - done))
            done = int(target)
            records.append(jax.device_get(look(state, origin, k0)))
    stacked = {key: np.stack([r[key] for r in records], axis=1) for key in records[0]}
    return TrainResult(
        f_train=stacked["f_train"],
        f_test=stacked["f_test"],
        lin_train=stacked.get("lin_train"),
        lin_test=stacked.get("lin_test"),
        drift=stacked.get("drift"),
        movement=stacked["movement"],
        k0=np.asarray(k0) if drift else None,
    )


def mse(out: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(1/2n) Σ ‖out − target‖² over the last two axes (n, o)."""
    return 0.5 * np.sum((out - target) ** 2, axis=(-2, -1)) / out.shape[-2]


def rms(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """√(mean over the last two axes of (a − b)²): a per-point distance between predictions."""
    return np.sqrt(np.mean((a - b) ** 2, axis=(-2, -1)))
