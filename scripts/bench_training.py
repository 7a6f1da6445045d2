"""The training study's compiled multi-seed loop against a plain per-seed flax + optax loop.

32 seeds × depth 3 × constant width m = 512 × n = 64 training points in R^8, relu at the EOC,
float32, full-batch gradient descent (optax.sgd), 1 000 steps, network only (no linearisation,
no drift: what a per-seed loop would also do). Compiled loop: `ntksim.nets.dynamics.train_seeds`, all
seeds in one vmapped `fori_loop`; its steady-state time is t(1 010 steps) − t(10 steps), which
cancels the compilation both calls pay. Baseline: `jax.jit` of one optax step of `net.apply`,
called in a Python loop per seed (compiled once, warmed up), timed on 4 seeds × 100 steps.
Reported: seed-steps per second and their ratio.

    .venv/bin/python scripts/bench_training.py        # part of make bench
"""

from __future__ import annotations

import argparse
import datetime
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

import ntksim
from ntksim.nets.dynamics import train_seeds

SEEDS, DEPTH, N, DIM, STEPS = 32, 3, 64, 8, 1000
WIDTHS = (512, 64)  # the setting, and a small width where per-step dispatch dominates


def measure(width: int) -> dict[str, float]:
    """Seed-steps per second of both loops at one width (and the two compiled-call times)."""
    WIDTH = width
    x = ntksim.sphere(jax.random.PRNGKey(0), N + 8, DIM)
    x_train, x_test = x[:N], x[N:]
    y = jnp.sin(2 * x_train[:, :1])
    net = ntksim.MLP("relu", depth=DEPTH, width=WIDTH, schedule="constant", dtype="float32")
    lr = 0.1
    keys = jnp.stack([jax.random.PRNGKey(s) for s in range(SEEDS)])

    def compiled(steps: int) -> float:
        start = time.perf_counter()
        result = train_seeds(
            net, keys, x_train, y, x_test, optax.sgd(lr), np.array([0, steps]), linearized=False, drift=False
        )
        assert np.all(np.isfinite(result.f_train))
        return time.perf_counter() - start

    short, long = compiled(10), compiled(STEPS + 10)
    steady = long - short
    compiled_rate = SEEDS * STEPS / steady

    optimizer = optax.sgd(lr)

    @jax.jit
    def step(params: dict, state: optax.OptState) -> tuple:
        grads = jax.grad(lambda p: 0.5 * jnp.sum((net.apply(p, x_train) - y) ** 2) / N)(params)
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    base_seeds, base_steps = 4, 100
    params = net.init(keys[0], x_train)
    jax.block_until_ready(step(params, optimizer.init(params)))  # compile once
    start = time.perf_counter()
    for s in range(base_seeds):
        params = net.init(keys[s], x_train)
        state = optimizer.init(params)
        for _ in range(base_steps):
            params, state = step(params, state)
        jax.block_until_ready(params)
    baseline_rate = base_seeds * base_steps / (time.perf_counter() - start)
    return {"compiled": compiled_rate, "baseline": baseline_rate, "long": long, "short": short}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="benchmarks/training-cpu-2core.md")
    args = parser.parse_args()
    results = {width: measure(width) for width in WIDTHS}
    device = jax.devices()[0].device_kind
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Training loop: compiled multi-seed against a per-seed flax + optax loop — CPU (2 cores)",
        "",
        f"{stamp}; jax {jax.__version__}; {device} ({platform.processor() or platform.machine()}); float32; "
        f"relu, depth {DEPTH}, constant width m, n = {N}, full-batch GD (optax.sgd), {SEEDS} seeds × "
        f"{STEPS} steps. Compiled: t({STEPS + 10} steps) − t(10 steps) of one train_seeds call each "
        "(compilation included in both). Baseline: a jitted optax step per seed in a Python loop, "
        "4 seeds × 100 steps after a warm-up.",
        "",
        "| m | loop | seed-steps per second | × baseline |",
        "|---|---|---|---|",
    ]
    for width, r in results.items():
        lines += [
            f"| {width} | per-seed flax + optax (jit per step) | {r['baseline']:.1f} | 1 |",
            f"| {width} | ntksim.nets.dynamics.train_seeds (vmap × fori_loop; calls {r['long']:.1f} s, "
            f"{r['short']:.1f} s) | {r['compiled']:.1f} | {r['compiled'] / r['baseline']:.2f} |",
        ]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
