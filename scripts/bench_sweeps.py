"""Whole sweeps, today's code against a baseline commit, side by side on one machine.

Every measurement is the wall time of one `python -m ntksim ...` process (imports, validation,
compilation, compute, outputs), into a fresh run directory:
- quick study (configs/quick.yaml): cold (empty compilation cache) and warm (the cache of the
  previous cold run; a fresh run directory, so every cell is computed again);
- paper-scale study (configs/paper_cpu.yaml, 96 cells to m = 512), cold;
- `ntksim run --dry-run` of the paper study, and a one-cell run (first-cell latency).
The new code runs the configs as shipped (both set `ntk.fast_compile: true`), with defaults
otherwise (static path, persistent cache on), then with `ntk.fast_compile=false` and with
`ntk.traced`; the baseline runs the same configs without the key it does not know. The baseline
has no cache: its "warm" run is a second cold run. Runs are interleaved (baseline,
new, new traced, …) so that load from other users of the machine hits all alike; medians.

    .venv/bin/python scripts/bench_sweeps.py            # part of make bench (about 15 minutes)
    .venv/bin/python scripts/bench_sweeps.py --quick-reps 1 --paper-reps 0   # a smoke run
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASE_COMMIT = "bd86d66"


def baseline_tree(commit: str, into: Path) -> Path:
    """The repository as of `commit`, extracted with git archive (no checkout, no worktree)."""
    tree = into / f"ntksim-{commit}"
    if not (tree / "ntksim").is_dir():
        tree.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", commit], cwd=ROOT, check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


def without_new_keys(config: Path, into: Path) -> Path:
    """A copy of `config` without `ntk.fast_compile`, which the baseline's config schema does not
    know (its compilation is XLA's default, which is what the key being absent means)."""
    import yaml

    raw = yaml.safe_load(config.read_text())
    raw.get("ntk", {}).pop("fast_compile", None)
    path = into / f"baseline-{config.name}"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False))
    return path


def timed(tree: Path, *args: str, cwd: Path) -> float:
    """Seconds of one `python -m ntksim ARGS` with `tree` first on the path; raises if it fails."""
    env = dict(os.environ, PYTHONPATH=str(tree), JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "ntksim", *args], cwd=cwd, env=env, capture_output=True, text=True
    )
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"ntksim {' '.join(args)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default=BASE_COMMIT, help="baseline commit (default %(default)s)")
    parser.add_argument("--quick-reps", type=int, default=3)
    parser.add_argument("--paper-reps", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "sweeps-cpu-2core.md")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ntksim-bench-sweeps-"))
    base = baseline_tree(args.base, work)
    quick, paper = str(ROOT / "configs" / "quick.yaml"), str(ROOT / "configs" / "paper_cpu.yaml")
    # the baseline runs the same studies, written without the key it does not know
    base_quick = str(without_new_keys(Path(quick), work))
    base_paper = str(without_new_keys(Path(paper), work))
    times: dict[str, list[float]] = {}
    counter = iter(range(10**6))

    def run(label: str, tree: Path, config: str, *extra: str, out: Path | None = None) -> Path:
        out = out or work / f"run{next(counter)}"
        shutil.rmtree(out, ignore_errors=True)
        seconds = timed(tree, "run", config, "--out", str(out), "--no-progress", *extra, cwd=work)
        times.setdefault(label, []).append(seconds)
        print(f"{label}: {seconds:.1f} s", file=sys.stderr, flush=True)
        return out

    def cold_and_warm(label: str, config: str, *extra: str) -> None:
        cache = work / f"cache{next(counter)}"
        run(f"{label}, cold", ROOT, config, "--compile-cache", str(cache), *extra)
        run(f"{label}, warm", ROOT, config, "--compile-cache", str(cache), *extra)

    for _ in range(args.quick_reps):
        run("quick: baseline, cold", base, base_quick)
        cold_and_warm("quick: new", quick)
        cold_and_warm("quick: new, fast_compile off", quick, "--set", "ntk.fast_compile=false")
        cold_and_warm("quick: new traced", quick, "--set", "ntk.traced=true")
        run("quick: baseline, second run", base, base_quick)
    for _ in range(args.paper_reps):
        run("paper: baseline, cold", base, base_paper)
        run("paper: new, cold", ROOT, paper, "--compile-cache", str(work / f"cache{next(counter)}"))
        run(
            "paper: new, fast_compile off, cold",
            ROOT,
            paper,
            "--set",
            "ntk.fast_compile=false",
            "--compile-cache",
            str(work / f"cache{next(counter)}"),
        )
        run(
            "paper: new traced, cold",
            ROOT,
            paper,
            "--set",
            "ntk.traced=true",
            "--compile-cache",
            str(work / f"cache{next(counter)}"),
        )
    one_cell = ("--set", "activations=[relu]", "--set", "widths=[16]", "--set", "depths=[3]")
    for _ in range(args.quick_reps):
        for label, tree, config in (("baseline", base, base_paper), ("new", ROOT, paper)):
            seconds = timed(tree, "run", config, "--out", str(work / "dry"), "--dry-run", cwd=work)
            times.setdefault(f"`--dry-run` (paper): {label}", []).append(seconds)
            extra = () if tree is base else ("--no-compile-cache",)
            run(f"one cell, cold: {label}", tree, config, *one_cell, *extra)

    def median(label: str) -> float:
        return statistics.median(times[label]) if times.get(label) else float("nan")

    lines = [
        "# Whole sweeps on a 2-core CPU: baseline against today's code",
        "",
        f"{datetime.date.today()}, {platform.node()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}; "
        f"baseline commit {args.base} (git archive), new = the working tree. Wall seconds of one "
        "`python -m ntksim run` process into a fresh directory; median of the runs listed. Runs were "
        "interleaved (baseline, new, traced, …) so that any load on the machine hits all alike.",
        "",
        "| measurement | median s | runs (s) |",
        "|---|---|---|",
    ]
    for label, values in times.items():
        lines.append(f"| {label} | {median(label):.1f} | {', '.join(f'{v:.1f}' for v in values)} |")
    ratio = [
        ("quick warm (new default) vs baseline cold", "quick: baseline, cold", "quick: new, warm", 3.0),
        ("quick cold (new default) vs baseline cold", "quick: baseline, cold", "quick: new, cold", 1.5),
        (
            "quick warm (new, fast_compile off) vs baseline cold",
            "quick: baseline, cold",
            "quick: new, fast_compile off, warm",
            3.0,
        ),
        (
            "quick cold (new, fast_compile off) vs baseline cold",
            "quick: baseline, cold",
            "quick: new, fast_compile off, cold",
            1.5,
        ),
        ("quick warm (new traced) vs baseline cold", "quick: baseline, cold", "quick: new traced, warm", 3.0),
        ("quick cold (new traced) vs baseline cold", "quick: baseline, cold", "quick: new traced, cold", 1.5),
        ("paper cold (new default) vs baseline", "paper: baseline, cold", "paper: new, cold", 2.0),
        (
            "paper cold (new, fast_compile off) vs baseline",
            "paper: baseline, cold",
            "paper: new, fast_compile off, cold",
            2.0,
        ),
        ("paper cold (new traced) vs baseline", "paper: baseline, cold", "paper: new traced, cold", 2.0),
    ]
    lines += ["", "| speed-up (median ratio) | × | target |", "|---|---|---|"]
    for name, old, new, target in ratio:
        value = median(old) / median(new)
        lines.append(f"| {name} | {value:.2f} | ≥ {target:g} ({'met' if value >= target else 'not met'}) |")
    lines += [
        "",
        "Variants. *baseline*: the code of the baseline commit (no persistent cache: its second run"
        " compiles everything again). *new*: today's code with the configs as shipped (both set "
        "`ntk.fast_compile: true`: XLA's quicker CPU options for the eNTK programs, numbers "
        "bit-identical for these two configs) and otherwise its defaults: the cells that draw the same "
        "parameters (the activations at one depth and width) computed together in one program from "
        "one draw per seed (numbers bit-identical to the baseline's), JAX's persistent compilation "
        "cache in a fresh directory "
        "(*cold*) or filled by the cold run before it (*warm*: a fresh run directory, every cell "
        "computed again; the eNTK programs come from ntksim's program store beside JAX's cache, "
        "without tracing or lowering). *new, fast_compile off*: `--set ntk.fast_compile=false`, XLA's "
        "default compilation. *new traced* (`fast_compile` still on): `--set ntk.traced=true`, "
        "one program per array shape and cell (the family's (a, b), σ_w, σ_b traced; its cells "
        "are not computed together); its numbers equal the default's to round-off, not bit for "
        "bit (XLA folds constant scalars), hence opt-in. *one cell*: a one-cell run (relu, "
        "depth 3, m = 16, 16 seeds, n = 64), cache off: start-up, validation, K∞, one "
        "compilation, outputs. Each cell's compile and compute seconds are in its run "
        "directory's `timings/`, summed in `summary.md` and `ntksim status`.",
    ]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
