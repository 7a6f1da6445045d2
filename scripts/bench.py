"""Benchmark the empirical NTK: ntksim structured / jacobian vs neural-tangents vs the forward+VJP floor.

Each (shape, method) runs in its own subprocess so its peak memory can be read (ru_maxrss on CPU,
the device allocator's peak on GPU). Times are medians over repeats after a warm-up call, with
block_until_ready. Writes benchmarks/<device>.md and .csv (device, jax version and date in the header).

    python scripts/bench.py                 # all shapes (make bench)
    python scripts/bench.py --quick         # small shapes only, for a smoke run
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

SHAPES = [  # (depth, m, n, out_dim)
    (3, 256, 64, 1),
    (3, 1024, 64, 1),
    (3, 512, 64, 10),
    (5, 512, 64, 1),
    (5, 1024, 64, 1),
]
QUICK_SHAPES = [(3, 64, 16, 1), (3, 64, 16, 4)]
METHODS = ["structured", "jacobian", "nt_jacobian_contraction", "nt_ntk_vector_products", "floor"]
NT_IMPL = {"nt_jacobian_contraction": "JACOBIAN_CONTRACTION", "nt_ntk_vector_products": "NTK_VECTOR_PRODUCTS"}


def _available_bytes() -> int:
    import jax

    dev = jax.devices()[0]
    if dev.platform == "cpu":
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    return int(dev.memory_stats().get("bytes_limit", 0))


def _needed_bytes(method: str, params: int, n: int, out_dim: int, itemsize: int = 4) -> int:
    """What a Jacobian-materializing method must hold at least: the full n·m_l × P Jacobian."""
    if method in ("jacobian", "nt_jacobian_contraction"):
        return itemsize * n * out_dim * params
    return itemsize * 2 * params


def measure(depth: int, width: int, n: int, out_dim: int, method: str, repeats: int) -> dict:
    """Run in a child process: time one method on one shape."""
    import resource
    import time

    import jax
    import jax.numpy as jnp
    import numpy as np

    import ntksim
    from ntksim.nets.empirical import empirical_ntk_seeds
    from ntksim.nets.model import forward

    act = ntksim.Activation.preset("relu")
    net = ntksim.MLP(act, depth=depth, width=width, out_dim=out_dim, dtype="float32")
    x = jnp.asarray(ntksim.sphere(jax.random.PRNGKey(0), n, 8), jnp.float32)
    params_count = net.num_params(8)
    need = _needed_bytes(method, params_count, n, out_dim)
    avail = _available_bytes()
    result = {"params": params_count}
    if need > 0.8 * avail:
        return result | {"status": f"skipped: needs ≥ {need / 2**30:.1f} GiB, {avail / 2**30:.1f} GiB free"}

    params = jax.jit(lambda k: dict(net.init(k, x)["params"]))(jax.random.PRNGKey(1))
    sigma_w, sigma_b = net.sigmas
    if method in ("structured", "jacobian"):
        fn = jax.jit(lambda p: ntksim.empirical_ntk(net, {"params": p}, x, method=method))
        call = lambda: fn(params)  # noqa: E731
    elif method == "floor":

        def floor(p):
            out, vjp = jax.vjp(lambda q: forward(q, x, act, sigma_w, sigma_b)[0], p)
            cot = jnp.broadcast_to(jnp.eye(out_dim, dtype=out.dtype)[:, None, :], (out_dim, *out.shape))
            return jax.vmap(vjp)(cot)

        fn = jax.jit(floor)
        call = lambda: fn(params)  # noqa: E731
    elif method in NT_IMPL:
        from ntksim.kernels.limits import neural_tangents_available

        if not neural_tangents_available():  # neural-tangents 0.6.5 imports only with jax <= 0.5.3
            return result | {"status": "unavailable: needs the reference profile (make bench-reference)"}
        from ntksim.kernels.nt_backend import nt_empirical_fn, stax_network

        init_fn, _, _ = stax_network(net)
        _, nt_params = init_fn(jax.random.PRNGKey(1), x.shape)
        nt_params = jax.tree.map(lambda a: a.astype(jnp.float32), nt_params)
        with jax.default_matmul_precision("highest"):  # the precision ntksim computes at
            fn = jax.jit(nt_empirical_fn(net, NT_IMPL[method]))
            jax.block_until_ready(fn(x, None, nt_params))  # trace and compile inside the context
        call = lambda: fn(x, None, nt_params)  # noqa: E731
    elif method == "seed":  # init inside the compiled call + structured eNTK, one seed
        keys = jax.random.PRNGKey(3)[None]
        call = lambda: empirical_ntk_seeds(net, keys, x, "structured", 1)  # noqa: E731
    elif method.startswith("seeds"):  # e.g. seeds16: one batched call over 16 seeds
        keys = jax.random.split(jax.random.PRNGKey(3), int(method[5:]))
        call = lambda: empirical_ntk_seeds(net, keys, x, "structured")  # noqa: E731
    elif method.startswith("loop"):  # e.g. loop16: 16 single-seed calls
        keys = jax.random.split(jax.random.PRNGKey(3), int(method[4:]))

        def call():
            return [empirical_ntk_seeds(net, k[None], x, "structured", 1) for k in keys]

    else:
        raise ValueError(method)

    start = time.perf_counter()
    jax.block_until_ready(call())
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(call())
        times.append(time.perf_counter() - start)
    dev = jax.devices()[0]
    if dev.platform == "cpu":
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    else:
        peak = int(dev.memory_stats().get("peak_bytes_in_use", 0))
    return result | {
        "status": "ok",
        "median_s": float(np.median(times)),
        "first_s": first,
        "peak_bytes": peak,
    }


def _child(args: argparse.Namespace) -> None:
    res = measure(args.depth, args.width, args.n, args.out_dim, args.method, args.repeats)
    print("BENCH " + json.dumps(res))


def _run_child(shape: tuple, method: str, repeats: int, timeout: float) -> dict:
    depth, width, n, out_dim = shape
    cmd = [sys.executable, __file__, "--child", f"--depth={depth}", f"--width={width}", f"--n={n}",
           f"--out-dim={out_dim}", f"--method={method}", f"--repeats={repeats}"]  # fmt: skip
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"status": f"skipped: over {timeout:.0f} s"}
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH "):
            return json.loads(line[6:])
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    status = "out of memory" if "RESOURCE_EXHAUSTED" in proc.stderr or proc.returncode == -9 else "failed"
    return {"status": f"{status}: {tail[:120]}"}


def _device_name() -> tuple[str, str]:
    import jax

    dev = jax.devices()[0]
    if dev.platform == "cpu":
        return f"cpu-{os.cpu_count()}core", f"CPU ({os.cpu_count()} cores)"
    return dev.device_kind.lower().replace(" ", "-"), f"{dev.device_kind} ({dev.platform})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--depth", type=int)
    parser.add_argument("--width", type=int)
    parser.add_argument("--n", type=int)
    parser.add_argument("--out-dim", type=int)
    parser.add_argument("--method")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="small shapes only")
    parser.add_argument("--shapes", default=None, help="override: 'depth,m,n,m_l;…'")
    parser.add_argument("--methods", default=None, help="override: comma-separated methods")
    parser.add_argument("--tag", default="", help="suffix of the output file names")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per (shape, method)")
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parent.parent / "benchmarks")
    args = parser.parse_args()
    if args.child:
        _child(args)
        return

    import jax
    import pandas as pd

    slug, device = _device_name()
    shapes = QUICK_SHAPES if args.quick else SHAPES
    if args.shapes:
        shapes = [tuple(int(v) for v in s.split(",")) for s in args.shapes.split(";")]
    rows = []
    for shape in shapes:
        methods = [*METHODS, "seed"] if shape[0] == 5 else METHODS
        if shape == (3, 256, 64, 1):
            methods = [*methods, "seeds16", "loop16"]
        if args.methods:
            methods = args.methods.split(",")
        for method in methods:
            res = _run_child(shape, method, args.repeats, args.timeout)
            row = dict(zip(["depth", "m", "n", "out_dim"], shape, strict=True), method=method) | res
            rows.append(row)
            print(json.dumps(row), flush=True)
    table = pd.DataFrame(rows)
    ref = table[table["method"] == "structured"].set_index(["depth", "m", "n", "out_dim"])["median_s"]
    table["vs_structured"] = [
        r.median_s / ref.get((r.depth, r.m, r.n, r.out_dim), float("nan")) for r in table.itertuples()
    ]
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    args.out_dir.mkdir(exist_ok=True)
    name = f"{slug}{'-quick' if args.quick else ''}{'-' + args.tag if args.tag else ''}"
    table.to_csv(args.out_dir / f"{name}.csv", index=False)
    lines = [
        f"# eNTK benchmark — {device}",
        "",
        f"{stamp}; jax {jax.__version__}; float32; relu at the EOC, quadratic widths m_k = k²m; "
        f"median of {args.repeats} after one warm-up, block_until_ready. `vs_structured` = time / "
        "ntksim structured (so > 1 means slower than structured). Peak memory: process max RSS "
        "on CPU, allocator peak on GPU. `seed` = parameter init inside the compiled call + "
        "structured eNTK for one seed. `floor` = forward + m_l parameter VJPs.",
        "",
        "| depth | m | n | m_l | method | median s | × structured | peak GiB | status |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table.itertuples():
        med = f"{r.median_s:.4g}" if r.status == "ok" else "—"
        ratio = f"{r.vs_structured:.3g}" if r.status == "ok" else "—"
        peak = f"{r.peak_bytes / 2**30:.2f}" if r.status == "ok" else "—"
        cells = [r.depth, r.m, r.n, r.out_dim, r.method, med, ratio, peak, r.status]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    (args.out_dir / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
