"""Limit NTK of activations without a closed form: ntksim's quadrature against neural-tangents'
ElementwiseNumerical (plain Gauss–Hermite, `deg` nodes per axis), time and accuracy side by side.

Depth 10, n = 256 points on the sphere in R^8, σ_b = 0.2 at each activation's EOC, float64.
Accuracy is max |K − K_ref| / max |K_ref| over 300 random entries and 8 diagonal ones, against
a high-precision reference: ntksim's polar quadrature with twice the nodes in every direction,
each pair's recursion integrated directly (no one-variable interpolation; with equal norms a
pair needs only its own entry and the diagonal). tests/activations/test_gaussian.py checks that rule against
scipy's adaptive quadrature to 1e-10. Times are medians of 3 calls after a warm-up (block_until_ready);
neural-tangents' kernel_fn is jitted for timing and unjitted for its error (design.md: jitting
it can move its diagonal by 1e-8). Needs the reference profile:

    .venv-reference/bin/python scripts/bench_limits.py        # make bench-limits
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import ntksim  # noqa: E402
from ntksim.activations import gaussian  # noqa: E402
from ntksim.kernels.limits import neural_tangents_available  # noqa: E402

ACTIVATIONS = ["tanh", "elu", "selu"]
DEGS = [25, 50, 100]
PAIRS = 300  # random (i, j) entries, besides 8 diagonal ones, where the reference is computed


def _median_time(fn, repeats: int = 3) -> float:
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _reference(net: ntksim.MLP, x: jax.Array, pairs: np.ndarray) -> np.ndarray:
    """Θ^l/n on the given (i, j) pairs by pairwise polar quadrature with doubled node counts.

    With inputs of equal norm every pair's recursion needs only its own entry and the common
    diagonal q^k, so a sample of pairs (and the diagonal) can be computed to full precision
    without the n² work."""
    saved = (gaussian.NODES_1D, gaussian.NODES_ANGLE, gaussian.NODES_RADIUS)
    gaussian.NODES_1D, gaussian.NODES_ANGLE, gaussian.NODES_RADIUS = (2 * v for v in saved)
    jax.clear_caches()
    try:
        sigma_w, sigma_b = net.sigmas
        xs = np.asarray(x)
        c = sigma_w**2 * np.einsum("pk,pk->p", xs[pairs[:, 0]], xs[pairs[:, 1]]) / xs.shape[1] + sigma_b**2
        q = sigma_w**2 * float(np.mean(xs[0] ** 2)) + sigma_b**2
        sigma, theta = jnp.asarray(c), jnp.asarray(c)
        for _ in range(net.depth - 1):
            qs = jnp.full_like(sigma, q)
            e_phi, e_dphi = gaussian.expectations(net.activation, qs, qs, sigma)
            diagonal = jnp.isclose(sigma, q, rtol=0, atol=0)  # i = j: ρ = 1 exactly
            phi2, dphi2 = gaussian.second_moments(net.activation, jnp.asarray([q]))
            e_phi = jnp.where(diagonal, phi2[0], e_phi)
            e_dphi = jnp.where(diagonal, dphi2[0], e_dphi)
            sigma = sigma_w**2 * e_phi + sigma_b**2
            theta = sigma + sigma_w**2 * e_dphi * theta
            q = float(sigma_w**2 * phi2[0] + sigma_b**2)
        return np.asarray(theta) / xs.shape[0]
    finally:
        gaussian.NODES_1D, gaussian.NODES_ANGLE, gaussian.NODES_RADIUS = saved
        jax.clear_caches()


def _error(k: np.ndarray, pairs: np.ndarray, ref: np.ndarray) -> float:
    values = np.asarray(k)[pairs[:, 0], pairs[:, 1]]
    return float(np.max(np.abs(values - ref)) / np.max(np.abs(ref)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--depth", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "benchmarks")
    args = parser.parse_args()
    x = ntksim.sphere(jax.random.PRNGKey(0), args.n, 8)
    rng = np.random.default_rng(0)
    pairs = np.concatenate([np.stack([np.arange(8), np.arange(8)], 1),  # diagonal entries
                            rng.integers(0, args.n, size=(PAIRS, 2))])  # fmt: skip
    rows = []
    for name in ACTIVATIONS:
        act = ntksim.activation(name)
        net = ntksim.MLP(act, depth=args.depth, width=8, sigma_b=0.2)
        net.sigmas  # the EOC σ_w, computed once, outside the timings  # noqa: B018
        ref = _reference(net, x, pairs)
        ours = lambda net=net: ntksim.limit_ntk(net, x, backend="quadrature")  # noqa: E731
        rows.append((name, "ntksim quadrature", _median_time(ours), _error(ours(), pairs, ref)))
        print(rows[-1], flush=True)
        if not neural_tangents_available():
            continue
        from ntksim.kernels.nt_backend import stax_network

        for deg in DEGS:
            _, _, kernel_fn = stax_network(net, deg)
            jitted = jax.jit(kernel_fn, static_argnames="get")
            theirs = lambda f=jitted: f(x, x, get="ntk")  # noqa: E731
            error = _error(np.asarray(kernel_fn(x, x, "ntk")) / args.n, pairs, ref)
            rows.append(
                (name, f"neural-tangents ElementwiseNumerical deg {deg}", _median_time(theirs), error)
            )
            print(rows[-1], flush=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"# Limit NTK of non-closed-form activations — CPU ({os.cpu_count()} cores)",
        "",
        f"{stamp}; jax {jax.__version__}; float64; depth {args.depth}, n = {args.n} points on the "
        "sphere in R^8, σ_b = 0.2 at the EOC. Error: max |K − K_ref| / max |K_ref| over 308 "
        "entries, against ntksim's pairwise polar quadrature with doubled nodes. Median of 3 "
        "after a warm-up.",
        "",
        "| activation | method | median s | max relative error |",
        "|---|---|---|---|",
    ]
    lines += [f"| {a} | {m} | {t:.3g} | {e:.1e} |" for a, m, t, e in rows]
    args.out.mkdir(exist_ok=True)
    (args.out / f"limits-cpu-{os.cpu_count()}core.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
