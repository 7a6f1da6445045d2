"""The two dependency profiles side by side: what each costs a user before and while computing.

For each environment given (default .venv and .venv-reference): its size on disk, the JAX
version, `import ntksim` latency, the first limit NTK in a fresh process (closed_form; and
neural_tangents, import included, where the profile has it), and the structured eNTK (median of
5 after a warm-up, block_until_ready). Every number comes from fresh subprocesses of that
environment's own python, measured in one run. Writes benchmarks/profiles.md.

    python scripts/profile_cost.py .venv .venv-reference      # make bench-profiles
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

IMPORT = "import time; t = time.perf_counter(); import ntksim; print(time.perf_counter() - t)"

FIRST_LIMIT = """
import time, jax
jax.config.update("jax_enable_x64", True)
import ntksim
from ntksim.kernels.limits import neural_tangents_available
x = ntksim.sphere(jax.random.PRNGKey(0), 64, 8)
net = ntksim.MLP(ntksim.Activation.preset("relu"), depth=3, width=64)
if "{backend}" == "neural_tangents" and not neural_tangents_available():
    print("nan")
else:
    t = time.perf_counter(); jax.block_until_ready(ntksim.limit_ntk(net, x, "{backend}"))
    print(time.perf_counter() - t)
"""

ENTK = """
import time, statistics, jax, jax.numpy as jnp
import ntksim
depth, m = {depth}, {width}
net = ntksim.MLP(ntksim.Activation.preset("relu"), depth=depth, width=m, dtype="float32")
x = jnp.asarray(ntksim.sphere(jax.random.PRNGKey(0), 64, 8), jnp.float32)
params = jax.jit(lambda k: dict(net.init(k, x)["params"]))(jax.random.PRNGKey(1))
fn = jax.jit(lambda p: ntksim.empirical_ntk(net, {{"params": p}}, x, method="structured"))
jax.block_until_ready(fn(params))
times = []
for _ in range(5):
    t = time.perf_counter(); jax.block_until_ready(fn(params)); times.append(time.perf_counter() - t)
print(statistics.median(times))
"""


def _python(venv: Path, code: str) -> float:
    env = dict(os.environ, JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", ""), TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=900)  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"{venv}: {proc.stderr.strip().splitlines()[-1]}")
    return float(proc.stdout.strip().splitlines()[-1])


def _size_bytes(venv: Path) -> int:
    out = subprocess.run(["du", "-sb", str(venv)], capture_output=True, text=True, check=True).stdout
    return int(out.split()[0])


def measure(venv: Path) -> dict:
    version = subprocess.run([str(venv / "bin" / "python"), "-c", "import jax; print(jax.__version__)"],
                             capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    row = {"environment": str(venv), "jax": version, "size_gib": _size_bytes(venv) / 2**30}
    row["import_s"] = statistics.median(_python(venv, IMPORT) for _ in range(3))
    for backend in ("closed_form", "neural_tangents"):
        row[f"first_limit_{backend}_s"] = _python(venv, FIRST_LIMIT.format(backend=backend))
    for depth, width in ((3, 1024), (5, 512)):
        row[f"entk_d{depth}_m{width}_s"] = _python(venv, ENTK.format(depth=depth, width=width))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("venvs", nargs="*", type=Path, default=[Path(".venv"), Path(".venv-reference")])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "profiles.md")
    args = parser.parse_args()
    rows = []
    for venv in args.venvs:
        rows.append(measure(venv))
        print(json.dumps(rows[-1]), flush=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    fmt = lambda v: "—" if v != v else f"{v:.3g}"  # noqa: E731  (nan: the profile lacks it)
    lines = [
        f"# Dependency profiles side by side — CPU ({os.cpu_count()} cores)",
        "",
        f"{stamp}; `python scripts/profile_cost.py` ({sys.version.split()[0]}). Fresh processes for "
        "each number; limits in float64 on 64 sphere points (relu, depth 3); eNTK structured, "
        "float32, n = 64, m_k = k²m, median of 5 after a warm-up.",
        "",
        "| environment | jax | size GiB | import ntksim s | first limit closed_form s "
        "| first limit neural_tangents s | eNTK d3 m1024 s | eNTK d5 m512 s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [r["environment"], r["jax"], f"{r['size_gib']:.2f}", fmt(r["import_s"]),
                 fmt(r["first_limit_closed_form_s"]), fmt(r["first_limit_neural_tangents_s"]),
                 fmt(r["entk_d3_m1024_s"]), fmt(r["entk_d5_m512_s"])]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
