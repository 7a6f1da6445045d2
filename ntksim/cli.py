"""`ntksim run CONFIG.yaml`, `ntksim status DIR`, `ntksim plot DIR`, `ntksim eoc ACT...`.

A thin layer over `ntksim.engine`: it parses arguments, prints, and maps errors to exit codes.

User mistakes end with exit code 2 and one line on stderr, before anything is written. A run
whose cells partly failed ends with exit code 1 and lists them; Ctrl-C ends with 130 and keeps
every finished cell.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import re
import shutil
import sys
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

EXECUTORS = ("inline", "local", "debug", "slurm")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line instead of usage + message
        self.exit(2, f"ntksim: error: {message} (see ntksim --help)\n")


def _version() -> str:
    """The installed ntksim's version, with the JAX it runs on (read without importing JAX)."""
    import importlib.metadata as md

    try:
        return f"{md.version('ntksim')} (jax {md.version('jax')})"
    except md.PackageNotFoundError:
        return "unknown"


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ntksim", description="Finite- vs infinite-width NTKs of MLPs at the Edge of Chaos."
    )
    parser.add_argument("--version", action="version", version=f"ntksim {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser("run", help="run (or resume) a YAML-configured sweep")
    run.add_argument("config", type=Path, help="experiment YAML file")
    run.add_argument("--out", type=Path, default=None, help="output directory (default: runs/<config name>)")
    run.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key (dotted path, YAML value); repeatable",
    )
    run.add_argument(
        "--executor", choices=EXECUTORS, default="inline", help="where cells run (default inline)"
    )
    run.add_argument(
        "--force",
        action="store_true",
        help="accept a config that differs from the one already in --out (finished cells "
        "whose content is unchanged are kept)",
    )
    run.add_argument("--retry-failed", action="store_true", help="recompute cells recorded as failed")
    run.add_argument("--dry-run", action="store_true", help="show what would run or be submitted, then stop")
    run.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    cache = run.add_mutually_exclusive_group()
    cache.add_argument(
        "--compile-cache",
        type=_directory_argument,
        default=None,
        metavar="DIR",
        help="JAX's persistent compilation cache, shared by runs and array tasks (default: OUT/jax-cache)",
    )
    cache.add_argument(
        "--no-compile-cache", action="store_true", help="compile everything afresh, write no cache"
    )
    _format_argument(run)
    status = sub.add_parser("status", help="report done / pending / failed cells and assemble results.csv")
    status.add_argument("dir", type=Path, help="a run's output directory")
    plot = sub.add_parser("plot", help="redraw the figures of a run from its results (partial ones too)")
    plot.add_argument("dir", type=Path, help="a run's output directory")
    _format_argument(plot)
    eoc = sub.add_parser("eoc", help="Edge-of-Chaos points of activations: table and phase diagram")
    eoc.add_argument(
        "activations",
        nargs="+",
        metavar="ACTIVATION",
        help="preset names, with a parameter as in YAML: tanh elu(0.5) monomial(3)",
    )
    eoc.add_argument(
        "--sigma-b",
        dest="sigma_b",
        type=float,
        nargs="+",
        default=None,
        metavar="SB",
        help="bias scales for the table (default 0 0.1 0.2 0.5)",
    )
    eoc.add_argument(
        "--out",
        type=Path,
        default=Path("runs/eoc"),
        help="where eoc.csv and phase_diagram.png go (default runs/eoc)",
    )
    _format_argument(eoc)
    return parser


# as ntksim.analysis.figures.FIGURE_FORMATS (not imported here: matplotlib is slow to load)
FORMATS = ("png", "pdf", "svg")


def _formats(text: str) -> tuple[str, ...]:
    formats = tuple(dict.fromkeys(f.strip().lower() for f in text.split(",") if f.strip()))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise argparse.ArgumentTypeError(
            f"{', '.join(unknown) or repr(text)} is not a figure format; give one or more of "
            f"{', '.join(FORMATS)}, comma-separated (e.g. pdf,png)"
        )
    return formats


def _format_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        dest="formats",
        type=_formats,
        default=("png",),
        metavar="FMT[,FMT]",
        help="figure files: png (default), pdf, svg or several (pdf,png); vector formats for papers",
    )


def _fail(message: str) -> NoReturn:
    print(f"ntksim: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _changed_keys(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += _changed_keys(a, b, f"{prefix}{key}.")
        elif a != b:
            keys.append(f"{prefix}{key}")
    return keys


def _run_info(digest: str, executor: str, started: str) -> dict[str, Any]:
    import importlib.metadata as md

    import jax

    from ntksim.kernels.limits import neural_tangents_available

    versions = {}
    for pkg in ("ntksim", "jax", "jaxlib", "flax", "neural-tangents", "numpy", "submitit"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    return {
        "config_hash": digest,
        "executor": executor,
        "profile": "reference" if neural_tangents_available() else "current",
        "versions": versions,
        "python": platform.python_version(),
        "host": platform.node(),
        "cwd": os.getcwd(),  # relative data paths are read from here by status and plot
        "invocation": uuid.uuid4().hex,  # tells two runs started in the same second apart
        "devices": [str(d) for d in jax.devices()],
        "started": started,
        "finished": None,
    }


def _report(store, state, table, final: bool = False, in_flight: dict[str, str] | None = None) -> int:
    """Print cell counts and failures. Exit code 1 if any cell failed or, at the end of a run
    (`final`), if any is still pending that no SLURM task holds (e.g. its task died); `status`
    reports pending as normal, and says how many of them SLURM tasks still hold (queued or
    running)."""
    done, failed, pending = (len(state[k]) for k in ("done", "failed", "pending"))
    print(
        f"{store.root}: {done} cells done, {failed} failed, {pending} pending; "
        f"results.csv has {len(table)} rows"
    )
    if in_flight:
        jobs = sorted({job.split("_")[0] for job in in_flight.values()})
        print(
            f"  {len(in_flight)} of the pending cells are in flight (queued or running in SLURM job "
            f"{', '.join(jobs)}); {pending - len(in_flight)} are neither done nor in flight"
        )
    for cell in state["failed"]:
        print(f"  failed: {cell.label()} [{cell.cell_id}]: {store.failure(cell)}")
    stranded = pending - len(in_flight or {})  # pending that no queued or running task holds
    if final and stranded:
        print(f"  {stranded} cells are still pending: run the same command again to compute them")
    return 1 if failed or (final and stranded) else 0


def _run(args: argparse.Namespace) -> None:
    import jax

    # Limits and metrics are float64; the eNTK dtype is chosen per config (ntk.dtype).
    jax.config.update("jax_enable_x64", True)

    import yaml

    from ntksim.engine.cells import config_digest
    from ntksim.engine.config import ConfigError, hashed
    from ntksim.engine.loading import load
    from ntksim.engine.run import compile_cache_dir, compute_cells, finish, store_for, study_of, time_report
    from ntksim.engine.store import unique_cells

    try:
        config, resolved = load(args.config, args.overrides)
        study = study_of(config)
        cells = unique_cells(study.expand(config))  # a setting listed twice is one cell
    except ConfigError as err:
        _fail(str(err))
    out = args.out if args.out is not None else Path("runs") / args.config.stem
    if out.exists() and not out.is_dir():
        _fail(f"--out {out}: exists and is not a directory")
    store = store_for(out, study)
    cache = compile_cache_dir(out, args.compile_cache, enabled=not args.no_compile_cache)
    digest = config_digest(hashed(resolved))
    missing = [tool for tool in ("sbatch", "srun") if shutil.which(tool) is None]
    if args.executor == "slurm" and not args.dry_run and missing:
        _fail(
            f"--executor slurm: {' and '.join(missing)} not found on PATH "
            "(run on a SLURM login node, or use --dry-run)"
        )
    _check_out(store, resolved, digest, args.force)  # read-only: nothing written on a refusal
    fresh = False  # whether this command made the directory: decided under its lock below
    if not args.dry_run:
        # Check again and write the config under the directory's lock: a run started at the same
        # moment may be setting the directory up.
        try:
            with store.setup_lock():
                _check_out(store, resolved, digest, args.force)
                fresh = not store.config_path.exists()
                store.create()
                if fresh or args.force:  # a resumed run keeps its config.yaml as it was written
                    store.write_config(yaml.safe_dump(resolved, sort_keys=False, allow_unicode=True))
        except OSError as err:
            _fail(f"--out {out}: cannot write there ({err.strerror})")

    state = store.status(cells) if store.root.exists() else {"done": [], "failed": [], "pending": cells}
    todo = state["pending"] + (state["failed"] if args.retry_failed else [])
    flying = (_in_flight(store, todo) if store.root.exists() else {}) or {}
    todo = [cell for cell in todo if cell.cell_id not in flying]
    print(
        f"{study.name}: {len(cells)} cells: {len(state['done'])} done, "
        f"{len(state['failed'])} failed before, "
        + (f"{len(flying)} in flight on SLURM, " if flying else "")
        + f"{len(todo)} to run"
    )
    if args.dry_run:
        _dry_run(args.executor, store, config, todo)
        return

    info = _run_info(digest, args.executor, _now()) | {
        "cells": len(cells),
        "done_before": len(state["done"]),
        "to_run": len(todo),
        "compile_cache": None if cache is None else str(cache),
    }
    if args.executor == "inline":  # a submission records the run only once it is accepted
        store.write_run(info)
    if args.retry_failed:
        for cell in state["failed"]:
            store.failure_path(cell).unlink(missing_ok=True)

    if args.executor == "inline":
        _use_compile_cache(cache)
        try:
            compute_cells(config, todo, store, progress=False if args.no_progress else None)
        except KeyboardInterrupt:
            _interrupted(store, cells)
    elif todo and (submitted := _without_oversized(args.executor, config, store, todo))[0]:
        from ntksim.engine.launch import record_tasks, submit

        todo, costs = submitted
        before = set(store.logs.iterdir()) if store.logs.is_dir() else set()
        kept = _Kept()
        try:
            # sbatch's own complaint goes into our one line; local controllers (which inherit fd 2)
            # write theirs, e.g. a traceback on Ctrl-C, to logs/controllers.err instead of the terminal
            if args.executor == "slurm":
                quiet = _stderr_kept(kept)
            elif args.executor == "local":
                quiet = _stderr_to(store.logs / "controllers.err")
            else:
                quiet = contextlib.nullcontext()
            with quiet:
                jobs, groups = submit(args.executor, store, config, resolved, todo, cache, costs)
        except Exception as err:  # e.g. sbatch rejecting a partition or account
            said = [line for line in (kept.read() + "\n" + str(err)).strip().splitlines() if line.strip()]
            _forget_submission(store, before, fresh)
            _fail(
                f"--executor {args.executor}: submission failed: {said[-1] if said else type(err).__name__}"
            )
        if kept.read().strip():  # accepted, but whatever was said (warnings) is not lost
            print(kept.read().rstrip(), file=sys.stderr)
        if args.executor == "slurm":
            record_tasks(store, jobs, groups)
        info = info | {"job_ids": sorted({str(job.job_id).split("_")[0] for job in jobs})}
        store.write_run(info)
        if args.executor == "slurm":
            print(
                f"submitted {len(jobs)} task(s) as SLURM job {jobs[0].job_id.split('_')[0]}; "
                f"logs in {store.logs}. Follow with: ntksim status {out}"
            )
            return
        try:
            for job in jobs:
                try:
                    job.result()
                except Exception as err:  # a task that died; its cells show up as pending below
                    last = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
                    print(f"ntksim: task {job.job_id} failed: {last} (logs in {store.logs})", file=sys.stderr)
        except KeyboardInterrupt:
            _stop_local_tasks(jobs)
            _drop_if_empty(store.logs / "controllers.err")
            _interrupted(store, cells)

    _drop_if_empty(store.logs / "controllers.err")
    table, state = finish(config, cells, store)
    store.write_run(info | {"finished": _now()})
    if len(table) and (store.root / "summary.md").exists():
        print((store.root / "summary.md").read_text())
    timing = time_report(store, cells)
    if timing:
        print(timing)
    pending = {cell.cell_id for cell in state["pending"]}
    held = {cell: job for cell, job in flying.items() if cell in pending}  # SLURM tasks still on them
    raise SystemExit(_report(store, state, table, final=True, in_flight=held))


def _directory_argument(text: str) -> Path:
    """A directory path given on the command line: not empty, not an existing file."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path (give a directory)")
    if Path(text).exists() and not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text} exists and is not a directory")
    return Path(text)


def _use_compile_cache(cache: Path | None) -> None:
    """JAX's persistent compilation cache in `cache` for this process (None: off); a directory
    that cannot be made is one warning line, and the run goes on without it."""
    from ntksim.engine.compilation import disable_persistent_cache, enable_persistent_cache

    if cache is None:
        disable_persistent_cache()
        return
    try:
        enable_persistent_cache(cache)
    except OSError as err:
        print(
            f"ntksim: warning: --compile-cache {cache}: {err.strerror}; compiling without it", file=sys.stderr
        )
        disable_persistent_cache()


class _Kept:
    """What a block wrote to file descriptor 2, readable after it ends."""

    def __init__(self) -> None:
        self.text = ""

    def read(self) -> str:
        return self.text


@contextlib.contextmanager
def _stderr_kept(kept: _Kept) -> Iterator[_Kept]:
    """Hold back what subprocesses (sbatch) write to stderr during the block: fd 2 goes to a
    temporary file, restored on exit, and its text is kept for the caller's one-line message.
    Where there is no fd 2 to redirect (stderr closed), the block runs as it is."""
    import tempfile

    if sys.stderr is None:
        yield kept
        return
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:
        yield kept
        return
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield kept
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            kept.text = sink.read().decode(errors="replace")


def _stop_local_tasks(jobs: list, grace_s: float = 10.0) -> None:
    """Ctrl-C in the driver of --executor local: pass the interrupt on to every task (each
    releases its claim and keeps its finished shards), then wait for them, and kill any that
    outlive the grace period, so no orphan keeps computing."""
    import time

    processes = [p for p in (getattr(job, "_process", None) for job in jobs) if p is not None]
    for job in jobs:
        with contextlib.suppress(Exception):
            job.cancel(check=False)
    deadline = time.monotonic() + grace_s
    try:
        for process in processes:
            with contextlib.suppress(Exception):
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
    except KeyboardInterrupt:  # a second Ctrl-C: stop waiting, kill what is left
        pass
    for process in processes:
        if process.poll() is None:
            with contextlib.suppress(Exception):
                process.kill()


def _interrupted(store, cells: list) -> NoReturn:
    """Ctrl-C: assemble what finished, say how to resume, exit 130 (no traceback).

    At once, without the interpreter's shutdown: XLA may still be compiling the interrupted
    cell's program in one of its own threads, and a normal exit waited for it (2 min for a
    400-layer network, then a segmentation fault). Everything worth keeping is on disk by now:
    shards are written atomically and the claims were given back by the sweep."""
    table = store.assemble(cells)
    print(f"\ninterrupted: {len(table)} finished rows kept in {store.results_path}; "
          "run the same command again to resume", file=sys.stderr)  # fmt: skip
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(130)


def _drop_if_empty(path: Path) -> None:
    with contextlib.suppress(OSError):
        if path.stat().st_size == 0:
            path.unlink()


@contextlib.contextmanager
def _stderr_to(path: Path) -> Iterator[None]:
    """fd 2 appended to `path` during the block (processes started there keep writing to it)."""
    if sys.stderr is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "ab") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def _forget_submission(store, before: set[Path], fresh: bool) -> None:
    """After a rejected submission: remove what it wrote — submitit's pickles and sbatch script in
    logs/ (by their names: "<uuid>.pkl", ".submission_file_<uuid>.sh"), nothing else — and, if
    this command created the directory and nothing else has appeared in it meanwhile, the config
    and the empty scaffolding, so a re-run starts clean. Under the directory's lock: a run started
    beside it never loses a file."""
    ours = re.compile(r"^(\.submission_file_[0-9a-f]{32}\.sh|[0-9a-f]{32}\.pkl)$")
    with store.setup_lock():
        for path in set(store.logs.iterdir()) - before if store.logs.is_dir() else ():
            if path.is_file() and ours.match(path.name):
                path.unlink(missing_ok=True)
        scaffolding = [store.root / sub for sub in ("shards", "failed", "claims")] + [store.logs]
        untouched = not store.run_path.exists() and not any(
            any(d.iterdir()) for d in scaffolding if d.is_dir()
        )
        if fresh and untouched and not (store.root / "submitted.json").exists():
            store.config_path.unlink(missing_ok=True)
            for d in scaffolding:
                with contextlib.suppress(OSError):
                    d.rmdir()
            (store.root / ".lock").unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                store.root.rmdir()  # only if nothing else is there


def _check_out(store, resolved: dict[str, Any], digest: str, force: bool) -> None:
    """Exit 2 unless --out is new, ntksim's own, or a run of the same config (or --force)."""
    import yaml

    from ntksim.engine.cells import config_digest
    from ntksim.engine.config import ConfigError, hashed
    from ntksim.engine.loading import validate

    out = store.root
    foreign = store.foreign_entries()
    if foreign and not force:
        _fail(
            f"--out {out}: holds {', '.join(foreign[:3])} but no ntksim run (no config.yaml); "
            "choose another --out or pass --force"
        )
    if not store.config_path.exists():
        return
    try:
        old = validate(yaml.safe_load(store.config_path.read_text())).model_dump(
            mode="json", exclude_none=True
        )
    except (ConfigError, yaml.YAMLError):
        old = None
    if old is None and not force:
        _fail(
            f"--out {out}: holds an unreadable config.yaml; "
            "pass --force to replace it or choose another --out"
        )
    if old is not None and config_digest(hashed(old)) != digest and not force:
        changed = ", ".join(_changed_keys(hashed(old), hashed(resolved))[:5])
        _fail(
            f"--out {out}: holds a run of a different config (changed: {changed}); "
            "pass --force to reuse it or choose another --out"
        )


def _dry_run(executor: str, store, config, todo) -> None:
    from ntksim.engine.launch import group_cells, plan_tasks, render_sbatch
    from ntksim.engine.packing import gib
    from ntksim.engine.run import cell_costs

    for cell in todo[:20]:
        print(f"  would run: {cell.label()} [{cell.cell_id}]")
    if len(todo) > 20:
        print(f"  … and {len(todo) - 20} more")
    costs = cell_costs(config, todo)
    _report_oversized(executor, config, todo, costs, dry_run=True)
    if executor == "inline" or not todo:
        if costs:
            from ntksim.engine.packing import local_device_bytes

            largest = max(range(len(costs)), key=lambda i: costs[i].peak_bytes)
            device = local_device_bytes()
            print(
                f"estimated {sum(c.seconds for c in costs):.0f} s in this process (cost model, fitted on a "
                f"2-core CPU); peak memory {gib(costs[largest].peak_bytes)} (largest cell: "
                f"{todo[largest].label()}){f', this device has {gib(device)}' if device else ''}"
            )
        return
    if costs is None:
        groups = group_cells(todo, executor, config.launcher)
        print(
            f"would submit {len(groups)} task(s) with up to {max(len(g) for g in groups)} cell(s) each "
            f"through submitit's {executor} executor (config order: the study estimates no costs)"
        )
    else:
        tasks = plan_tasks(todo, executor, config.launcher, costs)
        seconds = [t.seconds for t in tasks]
        mean = sum(seconds) / len(seconds)
        print(
            f"would submit {len(tasks)} task(s) through submitit's {executor} executor, packed by "
            f"estimated cost (largest first onto the least loaded task; seconds from a model fitted on "
            f"a 2-core CPU: their ratios matter, not their values):"
        )
        for number, task in enumerate(tasks[:40]):
            print(
                f"  task {number}: {len(task.cell_ids)} cells, estimated {task.seconds:.0f} s, "
                f"peak memory {gib(task.peak_bytes)}"
            )
        if len(tasks) > 40:
            print(f"  … and {len(tasks) - 40} more tasks")
        print(
            f"slowest task {max(seconds):.0f} s = {max(seconds) / mean:.2f} × the mean task ({mean:.0f} s); "
            f"total {sum(seconds):.0f} s"
        )
    if executor == "slurm":
        groups = group_cells(todo, executor, config.launcher, costs)
        print(render_sbatch(store, config, len(groups)))


def _without_oversized(executor: str, config, store, todo: list) -> tuple[list, list | None]:
    """(cells to submit, their cost estimates): the cells whose memory estimate exceeds the
    device they would run on are said (one line each) and recorded as failed now, without
    allocating, instead of being sent to fail on a node."""
    from ntksim.engine.run import cell_costs

    costs = cell_costs(config, todo)
    refused = _report_oversized(executor, config, todo, costs)
    if not refused:
        return todo, costs
    for cell, reason in refused:
        store.write_failure(cell, f"MemoryEstimate: {reason}")
    skip = {cell.cell_id for cell, _ in refused}
    kept = [(cell, cost) for cell, cost in zip(todo, costs, strict=True) if cell.cell_id not in skip]
    return [cell for cell, _ in kept], [cost for _, cost in kept]


def _report_oversized(executor: str, config, todo: list, costs, dry_run: bool = False) -> list:
    """One line per cell whose memory estimate exceeds the device it will run on; returns those
    (cell, reason) (the caller records them as failed instead of submitting them). A dry run
    also says when the device's memory is unknown."""
    from ntksim.engine.run import oversized, planned_device_bytes

    device = planned_device_bytes(executor, config.launcher)
    refused = oversized(todo, costs, device)
    for cell, reason in refused:
        print(f"ntksim: too large: {cell.label()} [{cell.cell_id}]: {reason}", file=sys.stderr)
    if dry_run and costs and device is None and executor == "slurm":
        print(
            "ntksim: note: the nodes' device memory is unknown (set launcher.device_mem_gb); "
            "cells were not checked against it",
            file=sys.stderr,
        )
    return refused


def _load_run(directory: Path) -> tuple[Any, list, Any]:
    """(config, cells, store) of an existing run directory, or exit 2."""
    from ntksim.engine.config import ConfigError
    from ntksim.engine.run import load_run

    try:
        return load_run(directory)
    except ConfigError as err:
        _fail(str(err))


def _in_flight(store, cells: list) -> dict[str, str] | None:
    """Cell id → SLURM task for the given cells whose earlier submission is still queued or
    running; None (and a warning line) when squeue could not be asked about earlier submissions."""
    from ntksim.engine.inflight import cells_in_flight, submitted_path

    if not cells or not submitted_path(store).exists():
        return {}
    alive, asked = cells_in_flight(store)
    if not asked:
        print(
            "ntksim: warning: could not ask squeue about this run's earlier SLURM jobs; cells they "
            "still hold count as pending",
            file=sys.stderr,
        )
        return None
    wanted = {cell.cell_id for cell in cells}
    return {cell: job for cell, job in alive.items() if cell in wanted}


def _status(args: argparse.Namespace) -> None:
    from ntksim.engine.run import time_report

    _, cells, store = _load_run(args.dir)
    table, state = store.collect(cells)
    flying = _in_flight(store, state["pending"])
    code = _report(store, state, table, in_flight=flying)
    timing = time_report(store, cells)
    if timing:
        print(f"  {timing}")
    if flying is not None:  # only where squeue said what is still alive
        _report_ended_tasks(store, {c.cell_id for c in state["pending"]} - set(flying))
    raise SystemExit(code)


def _report_ended_tasks(store, stranded: set[str], shown: int = 5) -> None:
    """For pending cells that no live task holds: which submitted task left them, the last
    exception its log shows, and where the log is (a task that crashed, was cancelled or ran out
    of requeues)."""
    from ntksim.engine.inflight import ended_tasks, submitted_path

    if not stranded or not submitted_path(store).exists():
        return
    tasks = ended_tasks(store, stranded)
    for job, count, logs, error in tasks[:shown]:
        said = f": {error}" if error else ""
        print(f"  task {job} ended with {count} cell{'s' if count != 1 else ''} not done{said} (log: {logs})")
    if len(tasks) > shown:
        print(f"  … and {len(tasks) - shown} more such tasks; their logs are under {store.logs}")


def _plot(args: argparse.Namespace) -> None:
    """Redraw from results.csv; of a run directory, after assembling the shards finished since.
    A results.csv on its own (copied from elsewhere) is read as the concentration study's."""
    import pandas as pd

    from ntksim.engine.config import DEFAULT_STUDY
    from ntksim.engine.run import study_of, write_outputs
    from ntksim.engine.study import load_study

    config = None
    if (args.dir / "config.yaml").is_file():
        config, cells, store = _load_run(args.dir)
        if (args.dir / "shards").is_dir():
            store.assemble(cells)  # include cells finished since the last assembly
    path = args.dir / "results.csv"
    if not path.is_file():
        _fail(f"{path}: no such file (is {args.dir} a run directory?)")
    try:
        results = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        _fail(f"{path}: cannot parse as CSV ({str(err).splitlines()[0]})")
    study = study_of(config) if config is not None else load_study(DEFAULT_STUDY)
    # the oldest header a study still reads is the least a results.csv must have
    legacy = min(study.legacy_columns, key=len) if study.legacy_columns else study.columns
    missing = [c for c in legacy if c not in results.columns]
    if missing:
        _fail(f"{path}: missing columns {', '.join(missing)}")
    if results.empty:
        _fail(f"{path}: has no rows to plot")
    if config is not None:
        figures = write_outputs(config, results, args.dir)
    else:
        figures = study.figures(results, None, args.dir / "figures")
    print(f"wrote {len(figures)} figures in {args.dir / 'figures'}")


EOC_SIGMA_B = (0.0, 0.1, 0.2, 0.5)
EOC_CURVE_POINTS = 81  # σ_b grid of the phase diagram, 0 … 1


def _eoc(args: argparse.Namespace) -> None:
    """Table of (σ_w, q*) per activation and σ_b, the curves as CSV, and the phase diagram."""
    import jax

    jax.config.update("jax_enable_x64", True)
    import numpy as np
    import pandas as pd

    from ntksim.activations import activation
    from ntksim.activations.eoc import NoEOCPoint, eoc, eoc_curve
    from ntksim.analysis.phase_diagram import plot_phase_diagram

    acts = []
    for spec in args.activations:
        try:
            acts.append(activation(spec))
        except ValueError as err:
            _fail(str(err))
    explicit = args.sigma_b is not None
    sigma_bs = args.sigma_b if explicit else list(EOC_SIGMA_B)
    for value in sigma_bs:
        if not (np.isfinite(value) and value >= 0):
            _fail(f"--sigma-b {value:g}: must be a non-negative number")
    rows = []
    for act in acts:
        for sigma_b in sigma_bs:
            try:
                point = eoc(act, sigma_b)
            except NoEOCPoint as err:
                if explicit:
                    _fail(str(err))
                point = None
            try:  # where there is no stable point, say whether χ = 1 holds at an unstable one
                unstable = None if point else eoc(act, sigma_b, allow_unstable=True)
            except NoEOCPoint:
                unstable = None
            rows.append(
                {
                    "activation": act.name,
                    "sigma_b": sigma_b,
                    "sigma_w": point.sigma_w if point else float("nan"),
                    "q_star": point.q_star if point else float("nan"),
                    "variance_slope": point.variance_slope if point else float("nan"),
                    "unstable_sigma_w": unstable.sigma_w if unstable else float("nan"),
                    "unstable_slope": unstable.variance_slope if unstable else float("nan"),
                }
            )
    table = pd.DataFrame(rows)
    print("| activation | σ_b | σ_w | q* | V'(q*) |\n|---|---|---|---|---|")
    for r in table.itertuples():
        if np.isfinite(r.unstable_sigma_w):
            print(f"| {r.activation} | {r.sigma_b:g} | no stable EOC point (χ = 1 at σ_w = "
                  f"{r.unstable_sigma_w:.6g}, unstable) | — | {r.unstable_slope:.4g} |")  # fmt: skip
        elif np.isnan(r.sigma_w):
            print(f"| {r.activation} | {r.sigma_b:g} | no EOC point | — | — |")
        else:
            q = "any (the family's variance map is the identity)" if np.isnan(r.q_star) else f"{r.q_star:.6g}"
            print(f"| {r.activation} | {r.sigma_b:g} | {r.sigma_w:.6g} | {q} | {r.variance_slope:.4g} |")
    grid = np.linspace(0.0, 1.0, EOC_CURVE_POINTS) ** 2  # dense near σ_b = 0, where curves bend
    curves = {}
    for act in acts:
        points = eoc_curve(act, grid, allow_unstable=True)
        curves[act.name] = (
            grid,
            np.array([p.sigma_w if p and p.stable else np.nan for p in points]),
            np.array([p.sigma_w if p and not p.stable else np.nan for p in points]),
        )
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out / "eoc.csv", index=False)
        curve_rows = [
            {
                "activation": name,
                "sigma_b": b,
                "sigma_w": w if np.isfinite(w) else u,
                "stable": bool(np.isfinite(w)),
            }
            for name, (bs, ws, us) in curves.items()
            for b, w, u in zip(bs, ws, us, strict=True)
            if np.isfinite(w) or np.isfinite(u)
        ]
        pd.DataFrame(curve_rows).to_csv(args.out / "eoc_curves.csv", index=False)
        plot_phase_diagram(curves, args.out / "phase_diagram.png")
    except OSError as err:
        _fail(f"--out {args.out}: cannot write there ({err.strerror})")
    figures = ", ".join(str(args.out / f"phase_diagram.{fmt}") for fmt in args.formats)
    print(f"wrote {args.out / 'eoc.csv'}, {args.out / 'eoc_curves.csv'} and {figures}")


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    import jax

    # Limits, EOC points and metrics are float64 in every command, so that `status` and `plot`
    # expand a config into the same cells as the `run` that wrote it; the eNTK dtype is per config.
    jax.config.update("jax_enable_x64", True)
    try:
        command = {"run": _run, "status": _status, "plot": _plot, "eoc": _eoc}[args.command]
        if getattr(args, "formats", ("png",)) != ("png",):
            from ntksim.analysis.figures import figure_formats

            with figure_formats(args.formats):
                command(args)
        else:
            command(args)
        sys.stdout.flush()
    except KeyboardInterrupt:
        # `run` handles Ctrl-C itself (its cells are saved as they finish); anywhere else
        # (`eoc`, `plot`, `status`) nothing is half-written that a traceback would explain.
        print("ntksim: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except BrokenPipeError:
        # The reader went away (`ntksim run … --dry-run | head`): not an error of ours. Point stdout
        # at /dev/null so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(0) from None


if __name__ == "__main__":
    main()
