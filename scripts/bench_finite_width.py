"""The first-order theory (`ntksim.finite_width`) against the Monte Carlo that reaches its accuracy.

For n inputs on the sphere in R^8, constant width 64 and depths 3 and 10: the wall time of
`finite_width` after compilation (median of 3 calls, float64; each call includes its host-side
work), for the family (relu: closed forms and angular rules) and for φ without closed forms
(tanh: the 2-D quadrature, interpolated in the angle for n ≥ 17). Beside it, the Monte Carlo
cost of the same numbers: the structured eNTK's seconds per seed (float64, median of 3 blocks
of 64 seeds after a warm-up, `block_until_ready`) times the seeds that estimate every variance to
1% relative standard error (S = (κ − 1)/0.01², κ the entries' kurtosis, measured here, ≈ 3).
And how the theory's cost grows with n (pairs: n(n−1)/2) and depth (linear). Last, the joint
covariances of all n inputs (`FiniteWidth.entry_covariance`, which err_op's surrogate needs):
C(n, 4) four-input integrals per layer, timed the same way.

    .venv/bin/python scripts/bench_finite_width.py      # part of make bench
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import ntksim  # noqa: E402
from ntksim.kernels.finite_width import finite_width  # noqa: E402
from ntksim.nets.empirical import empirical_ntk_seeds  # noqa: E402

CASES = [("relu", 16), ("relu", 32), ("relu", 64), ("tanh", 8), ("tanh", 16), ("tanh", 64)]
# (φ, n, depth) of the joint covariances
JOINT_CASES = [
    ("relu", 4, 4),
    ("relu", 6, 4),
    ("relu", 8, 4),
    ("relu", 6, 10),
    ("tanh", 6, 4),
    ("tanh", 6, 10),
]
DEPTHS = (3, 10)
WIDTH, DIM = 64, 8


def theory_seconds(net: ntksim.MLP, x: np.ndarray) -> tuple[float, float]:
    """(first call, median of the next three) seconds of finite_width."""
    start = time.perf_counter()
    finite_width(net, x)
    first = time.perf_counter() - start
    times = []
    for _ in range(3):
        start = time.perf_counter()
        finite_width(net, x)
        times.append(time.perf_counter() - start)
    return first, statistics.median(times)


def joint_seconds(net: ntksim.MLP, x: np.ndarray) -> tuple[float, float]:
    """(first call, median of two more) seconds of finite_width(…, joint=True) plus err_op."""
    times = []
    for _ in range(3):
        start = time.perf_counter()
        finite_width(net, x, joint=True).err_op  # noqa: B018 — timed for its cost
        times.append(time.perf_counter() - start)
    return times[0], statistics.median(times[1:])


def monte_carlo(net: ntksim.MLP, x: np.ndarray) -> tuple[float, float]:
    """(seconds per seed of the float64 structured eNTK, entries' median kurtosis)."""
    xs = jnp.asarray(x)
    keys = jax.random.split(jax.random.PRNGKey(0), 64)
    empirical_ntk_seeds(net, keys, xs).block_until_ready()  # warm-up (compilation)
    times, kernels = [], None
    for block in range(3):
        keys = jax.random.split(jax.random.PRNGKey(block + 1), 64)
        start = time.perf_counter()
        kernels = empirical_ntk_seeds(net, keys, xs).block_until_ready()
        times.append((time.perf_counter() - start) / 64)
    k = np.asarray(kernels)
    centred = k - k.mean(0)
    kurtosis = np.median((centred**4).mean(0) / np.maximum((centred**2).mean(0) ** 2, 1e-300))
    return statistics.median(times), float(kurtosis)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/finite-width-cpu-2core.md"))
    args = parser.parse_args()
    rows = []
    for depth in DEPTHS:
        for name, n in CASES:
            x = np.asarray(ntksim.sphere(jax.random.PRNGKey(0), n, DIM), np.float64)
            net = ntksim.MLP(name, depth=depth, width=WIDTH, schedule="constant", dtype=jnp.float64)
            first, warm = theory_seconds(net, x)
            per_seed, kurtosis = monte_carlo(net, x)
            seeds = max(kurtosis - 1, 1.0) / 0.01**2
            rows.append((name, n, depth, first, warm, per_seed * 1e3, seeds, per_seed * seeds))
            print(rows[-1], flush=True)
    lines = [
        "# First-order theory against Monte Carlo — CPU (2 cores)",
        "",
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; jax {jax.__version__}; "
        f"{jax.devices()[0].platform} ({platform.machine()}); float64; inputs on the sphere in R^{DIM}, "
        f"constant width {WIDTH}, no bias. `scripts/bench_finite_width.py`: finite_width's first call "
        "(with compilation) and the median of three more; Monte Carlo: the structured eNTK's seconds per "
        "seed × the seeds for 1% relative standard error on every variance, (κ − 1)/0.01².",
        "",
        "| φ | n | depth | theory, first call (s) | theory (s) | eNTK per seed (ms) | seeds for 1% "
        "| Monte Carlo (s) | Monte Carlo / theory |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, n, depth, first, warm, per_seed_ms, seeds, mc in rows:
        lines.append(f"| {name} | {n} | {depth} | {first:.2f} | {warm:.3f} | {per_seed_ms:.3f} | {seeds:.0f} "
                     f"| {mc:.1f} | {mc / warm:.0f} |")  # fmt: skip
    joint = []
    for name, n, depth in JOINT_CASES:
        x = np.asarray(ntksim.sphere(jax.random.PRNGKey(0), n, DIM), np.float64)
        net = ntksim.MLP(name, depth=depth, width=WIDTH, schedule="constant", dtype=jnp.float64)
        joint.append((name, n, depth, *joint_seconds(net, x)))
        print(joint[-1], flush=True)
    lines += [
        "",
        "Joint covariances of all n inputs and the err_op surrogate (`finite_width(…, joint=True).err_op`):",
        "",
        "| φ | n | depth | first call (s) | after compilation (s) |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {name} | {n} | {depth} | {first:.2f} | {warm:.2f} |" for name, n, depth, first, warm in joint
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
