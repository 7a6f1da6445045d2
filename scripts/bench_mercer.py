"""Funk–Hecke eigenvalues against a Gram-matrix eigendecomposition (issue "Spectrum on the sphere").

For ReLU, tanh and ELU at depth 10 (EOC, no bias), the limit NTK on S² (d = 3):
- ntksim.mercer_eigenvalues to k = 200 (median of 5 calls after a warm-up);
- the Gram route: n uniform points, [κ(x_i·x_j/3)]/n (κ from the same recursion, interpolated in
  θ, which is cheaper than the recursion on n² pairs), eigvalsh; its eigenvalues come in blocks of
  2k + 1 near μ_k. "resolved k": the largest K such that every block k ≤ K has its mean within 10%
  of μ_k (μ_k ≥ 1e-12 κ(1)). Resolving k needs at least (k + 1)² points (the blocks below it), so
  the table extrapolates the Gram route's n³ time to n = 201² = 40401 for k = 200.

    .venv/bin/python scripts/bench_mercer.py        # part of make bench
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import time
from pathlib import Path

import jax
import numpy as np

import ntksim
from ntksim.kernels.mercer import kernel_function, mercer_eigenvalues, multiplicities

ACTIVATIONS = ["relu", "tanh", "elu"]
DEPTH, DIM, KMAX = 10, 3, 200
POINTS = [500, 1000, 2000, 4000]


def median_time(fn, repeats: int = 5) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def resolved_k(eig: np.ndarray, mu: np.ndarray, trace: float) -> int:
    """Largest K with every block mean k ≤ K within 10% of μ_k (only μ_k ≥ 1e-12 κ(1) count)."""
    counts = multiplicities(DIM, len(mu) - 1).astype(int)
    labels = np.repeat(np.arange(len(mu)), counts)
    order = np.argsort(-np.repeat(mu, counts), kind="stable")
    labels = labels[order][: len(eig)]
    top = np.sort(eig)[::-1][: len(labels)]
    resolved = -1
    for k in range(len(mu)):
        if mu[k] < 1e-12 * trace:
            resolved = k  # an exact (or negligible) zero: nothing to resolve
            continue
        block = top[labels == k]
        if len(block) < counts[k] or abs(block.mean() - mu[k]) > 0.1 * mu[k]:
            break
        resolved = k
    return resolved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="benchmarks/mercer-cpu-2core.md")
    args = parser.parse_args()
    device = jax.devices()[0].device_kind
    rows = []
    for name in ACTIVATIONS:
        act = ntksim.activation(name)
        sigma_w, sigma_b = ntksim.resolve_sigmas(act)
        seconds = median_time(lambda act=act: mercer_eigenvalues(act, DEPTH, DIM, KMAX))
        mu = mercer_eigenvalues(act, DEPTH, DIM, 40)
        kappa = kernel_function(act, DEPTH, sigma_w, sigma_b, "ntk")
        trace = float(kappa(np.ones(1))[0])
        rows.append((name, "Funk–Hecke (ntksim.mercer_eigenvalues)", "—", seconds, f"{KMAX} (all)"))
        print(rows[-1], flush=True)
        gram_times = []
        for n in POINTS:
            x = np.random.default_rng(0).normal(size=(n, DIM))
            x *= np.sqrt(DIM) / np.linalg.norm(x, axis=1, keepdims=True)

            def gram_route(x=x, n=n, kappa=kappa) -> np.ndarray:
                return np.linalg.eigvalsh(kappa(np.clip(x @ x.T / DIM, -1, 1)) / n)

            start = time.perf_counter()
            eig = gram_route()
            elapsed = time.perf_counter() - start
            gram_times.append(elapsed)
            rows.append((name, "Gram eigvalsh", n, elapsed, str(resolved_k(eig, mu, trace))))
            print(rows[-1], flush=True)
        # n³ extrapolation from the largest measured n
        needed = (KMAX + 1) ** 2
        rows.append(
            (
                name,
                "Gram eigvalsh, extrapolated (n³)",
                needed,
                gram_times[-1] * (needed / POINTS[-1]) ** 3,
                f"{KMAX} at best",
            )
        )
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Mercer eigenvalues: Funk–Hecke against Gram matrices — CPU (2 cores)",
        "",
        f"{stamp}; jax {jax.__version__}; {device} ({platform.processor() or platform.machine()}); "
        f"float64; limit NTK, depth {DEPTH}, EOC, no bias, S² (d = 3). Funk–Hecke to k = {KMAX}: median "
        "of 5 calls after a warm-up. Gram route: one call each (eigvalsh of [κ(x_i·x_j/3)]/n on n "
        "uniform points; κ interpolated). resolved k: every block mean k ≤ K within 10% of μ_k. "
        f"Resolving k = {KMAX} needs at least ({KMAX}+1)² = {(KMAX + 1) ** 2} points; that row "
        "extrapolates the largest measured n by n³.",
        "",
        "| activation | method | points n | seconds | resolved k |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {a} | {m} | {n} | {s:.3g} | {k} |" for a, m, n, s, k in rows]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
