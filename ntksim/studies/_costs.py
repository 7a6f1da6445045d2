"""What computing an MLP's kernels, outputs or training costs: seconds and peak bytes from shapes.

Every study estimates each cell before the engine computes it (`Study.cost`): the engine refuses
a cell whose peak exceeds the device (one line, recorded as failed, nothing allocated), packs
cells into executor tasks by their seconds, and `--dry-run` prints both. The estimates need only
shapes, never a computation.

Seconds: a fixed part plus a per-layer compilation share, plus flops / FLOP_RATE. The constants
were fitted on ONE machine (a 2-core CPU, float32 matmuls; see concentration's notes); elsewhere
the seconds are off in absolute terms, and only their ratios matter for packing.

Peak bytes: the working set of the compiled program (`ntksim.nets.empirical.bytes_per_seed`, tested
against XLA's buffer assignment) for the seeds it holds at once, the results kept on the host,
and XLA's own memory while it compiles. The networks are unrolled layer by layer, so the
compilation's memory grows with depth: measured here (structured eNTK, width 4, n = 8, RSS over
the process's baseline) 339 MiB at depth 100, 616 MiB at 200, 1 257 MiB at 400 — about 3.1 MiB a
layer; COMPILE_BYTES_PER_LAYER rounds it up.
"""

from __future__ import annotations

import itertools

import jax.numpy as jnp

from ntksim.engine.packing import CellCost
from ntksim.nets.empirical import bytes_per_seed
from ntksim.nets.model import MLP

__all__ = [
    "COMPILE_BYTES_PER_LAYER",
    "COMPILE_S",
    "FLOP_RATE",
    "INIT_FLOPS",
    "compile_bytes",
    "compile_seconds",
    "forward_cost",
    "forward_flops",
    "kernel_cost",
    "kernel_flops",
    "limit_cost",
]

COMPILE_S = (0.37, 0.155)  # seconds: a + b·depth (compilation, and the 0.07 s fixed part of compute)
FLOP_RATE = 4.0e10  # flop/s, float32 matmuls on the 2-core CPU of the fit
INIT_FLOPS = 40  # per parameter drawn (threefry bits and the normal transform)
COMPILE_BYTES_PER_LAYER = 3.5 * 2**20  # XLA's memory while compiling one unrolled layer (3.1 measured)


def compile_seconds(depth: int) -> float:
    """A program's compilation (and fixed) seconds for a network of `depth` layers."""
    return COMPILE_S[0] + COMPILE_S[1] * depth


def compile_bytes(depth: int) -> int:
    """XLA's memory while it compiles a program over `depth` unrolled layers."""
    return int(COMPILE_BYTES_PER_LAYER * depth)


def forward_flops(net: MLP, n: int, in_dim: int) -> float:
    """Multiply-adds ×2 of one forward pass over n inputs."""
    return float(sum(2 * n * a * b for a, b in itertools.pairwise(net.layer_widths(in_dim))))


def kernel_flops(net: MLP, n: int, in_dim: int, method: str, kernel: str) -> float:
    """Floating-point operations of one seed: drawing the parameters, the forward pass, the
    backward signals and layer Grams (structured), or the Jacobian and its contraction, and the
    metrics' eigenvalues of an (n·m_l)² matrix."""
    widths = net.layer_widths(in_dim)
    out_dim, size = widths[-1], n * widths[-1]
    params = net.num_params(in_dim)
    pairs = list(itertools.pairwise(widths))
    forward = forward_flops(net, n, in_dim)
    if kernel == "nngp":
        work = forward + 2 * n * n * widths[-2]
    elif method == "jacobian":
        work = forward * (1 + out_dim) + 2 * size * size * params
    else:
        backward = sum(2 * a * b * size for a, b in pairs[1:])
        work = forward + backward + sum(2 * n * n * a + 3 * size * size for a, _ in pairs)
    return INIT_FLOPS * params + work + 10 * size**3


def kernel_cost(
    net: MLP, n: int, in_dim: int, seeds: int, method: str = "structured", kernel: str = "ntk"
) -> CellCost:
    """Empirical kernels (NTK or NNGP) of `seeds` draws on n inputs: (seeds, n·m_l, n·m_l) kept.

    One seed's working set (the kernels' functions chunk further seeds to fit), every seed's
    kernel, and the compilation."""
    how = method if kernel == "ntk" else "nngp"
    size = n * net.out_dim
    itemsize = jnp.dtype(net.compute_dtype).itemsize
    seconds = compile_seconds(net.depth) + seeds * kernel_flops(net, n, in_dim, method, kernel) / FLOP_RATE
    peak = max(bytes_per_seed(net, n, in_dim, how), compile_bytes(net.depth)) + seeds * size**2 * itemsize
    return CellCost(seconds, int(peak))


def forward_cost(net: MLP, n: int, in_dim: int, seeds: int, seeds_at_once: int) -> CellCost:
    """Outputs of `seeds` networks at n inputs, `seeds_at_once` vmapped: (seeds, m_l, n) kept."""
    itemsize = jnp.dtype(net.compute_dtype).itemsize
    params = net.num_params(in_dim)
    activations = n * sum(net.layer_widths(in_dim)[1:])
    at_once = min(seeds, seeds_at_once)
    working = at_once * itemsize * (4 * params + 2 * activations)
    seconds = (
        compile_seconds(net.depth) + seeds * (INIT_FLOPS * params + forward_flops(net, n, in_dim)) / FLOP_RATE
    )
    peak = max(working, compile_bytes(net.depth)) + seeds * net.out_dim * n * 8
    return CellCost(seconds, int(peak))


def limit_cost(pairs: int, depth: int, quadrature: bool, kept_layers: int = 1) -> CellCost:
    """A limit kernel's layer recursion over `pairs` input pairs (float64; the quadrature is
    chunked over pairs): a dozen arrays of `pairs` per layer held, `kept_layers` layers kept, and
    a row (~1 KiB as a Python dict) per pair and kept layer. Seconds: each layer is dispatched on
    its own, ~2 ms (closed form) or ~30 ms (2-D quadrature) a layer on the CPU of the fit (the
    depth study's cells: relu 2.2 s for 1 000 layers; tanh 8.2 s for 300, measured beside another
    job), plus ~1e-7 s or ~2e-5 s per pair and layer."""
    per_layer, per_pair = (0.03, 2e-5) if quadrature else (0.002, 1e-7)
    peak = 12 * pairs * 8 * kept_layers + 2**10 * pairs * min(kept_layers, depth) + 2**20
    return CellCost(0.05 + depth * (per_layer + per_pair * pairs), int(peak))
