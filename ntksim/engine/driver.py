"""A run from its config to its outputs, callable from a notebook as from the CLI.

    run = ntksim.run("configs/quick.yaml", out="runs/quick")       # compute (or resume), → Run
    run.table, run.fits, run.exit_code
    ntksim.plan("configs/quick.yaml").describe()                    # what a run would do (dry run)
    ntksim.status("runs/quick"); ntksim.plot("runs/quick")

`plan` reads and checks everything and writes nothing; `run` executes a plan. User mistakes are
`ConfigError` (one line, raised before anything is written); Ctrl-C during an inline or local run
assembles what finished and raises `RunInterrupted`. What a run says as it goes (cell counts, the
summary, warnings) is printed, as on the command line. Like every ntksim command, these switch
JAX's x64 mode on for the process: limits, EOC points and metrics are float64 (the eNTK's dtype
is the config's `ntk.dtype`), so a directory expands into the same cells wherever it is read.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib.metadata as md
import os
import platform
import shutil
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from ntksim.engine.cells import config_digest
from ntksim.engine.config import ConfigError, hashed
from ntksim.engine.loading import load, validate
from ntksim.engine.packing import CellCost, gib, local_device_bytes
from ntksim.engine.run import (
    Run,
    cell_costs,
    compile_cache_dir,
    compute_cells,
    finish,
    load_run,
    oversized,
    planned_device_bytes,
    store_for,
    study_of,
    time_report,
    write_outputs,
)
from ntksim.engine.store import RunStore, unique_cells
from ntksim.engine.study import CellLike, Study

EXECUTORS = ("inline", "local", "debug", "slurm")
SHOWN_CELLS = 20  # a dry run lists this many cells, then a count
SHOWN_TASKS = 40


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run: the finished cells are kept and assembled; run again to resume."""


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def changed_keys(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two resolved configs."""
    keys = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += changed_keys(a, b, f"{prefix}{key}.")
        elif a != b:
            keys.append(f"{prefix}{key}")
    return keys


def check_out(store: RunStore, resolved: dict[str, Any], digest: str, force: bool) -> None:
    """ConfigError unless the output directory is new, ntksim's own, or a run of the same config
    (or `force`). Reads only."""
    out = store.root
    foreign = store.foreign_entries()
    if foreign and not force:
        raise ConfigError(
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
        raise ConfigError(
            f"--out {out}: holds an unreadable config.yaml; "
            "pass --force to replace it or choose another --out"
        )
    if old is not None and config_digest(hashed(old)) != digest and not force:
        changed = ", ".join(changed_keys(hashed(old), hashed(resolved))[:5])
        raise ConfigError(
            f"--out {out}: holds a run of a different config (changed: {changed}); "
            "pass --force to reuse it or choose another --out"
        )


def in_flight(store: RunStore, cells: Sequence[CellLike]) -> dict[str, str] | None:
    """Cell id → SLURM task for the given cells whose earlier submission is still queued or
    running; None (and a warning line) when squeue could not be asked about earlier submissions."""
    from ntksim.engine.inflight import cells_in_flight

    if not cells or not store.submitted_path.exists():
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


def refused_for_memory(
    executor: str,
    config: Any,
    cells: Sequence[CellLike],
    costs: list[CellCost] | None,
    dry_run: bool = False,
    say: bool = True,
) -> list[tuple[CellLike, str]]:
    """(cell, reason) for each cell whose memory estimate exceeds the device it would run on, one
    line each on stderr (`say`). A dry run also says when the device's memory is unknown."""
    device = planned_device_bytes(executor, config.launcher)
    refused = oversized(list(cells), costs, device)
    if not say:
        return refused
    for cell, reason in refused:
        print(f"ntksim: too large: {cell.label()} [{cell.cell_id}]: {reason}", file=sys.stderr)
    if dry_run and costs and device is None and executor == "slurm":
        print(
            "ntksim: note: the nodes' device memory is unknown (set launcher.device_mem_gb); "
            "cells were not checked against it",
            file=sys.stderr,
        )
    return refused


@dataclass
class Plan:
    """What a run of a config into a directory would do; `ntksim.plan(...)` builds one without
    writing anything, `ntksim.run` executes it.

    cells: every cell of the config; done / failed: those with a shard / a failure record;
    todo: the cells this run would compute (pending ones, and failed ones with retry_failed),
    less those `in_flight` (cell id → the SLURM task still holding it)."""

    config: Any
    resolved: dict[str, Any]
    study: Study[Any, Any]
    store: RunStore
    executor: str
    cells: list[CellLike]
    done: list[CellLike]
    failed: list[CellLike]
    todo: list[CellLike]
    in_flight: dict[str, str]
    compile_cache: Path | None
    digest: str
    force: bool = False
    retry_failed: bool = False
    _costs: tuple[list[CellCost] | None] | None = field(default=None, repr=False)

    @property
    def directory(self) -> Path:
        return self.store.root

    def headline(self) -> str:
        """ "<study>: N cells: D done, F failed before, [I in flight on SLURM, ]T to run"."""
        flying = f"{len(self.in_flight)} in flight on SLURM, " if self.in_flight else ""
        return (
            f"{self.study.name}: {len(self.cells)} cells: {len(self.done)} done, "
            f"{len(self.failed)} failed before, {flying}{len(self.todo)} to run"
        )

    def costs(self) -> list[CellCost] | None:
        """The study's estimate (seconds, peak bytes) of each cell to run; None if it makes none."""
        if self._costs is None:  # once: the estimates build every cell's network shapes
            self._costs = (cell_costs(self.config, self.todo),)
        return self._costs[0]

    def refused(self, say: bool = False) -> list[tuple[CellLike, str]]:
        """Cells to run whose memory estimate exceeds the device they would run on; `say`: one
        line each on stderr (and a note where the device's memory is unknown), as a dry run does."""
        return refused_for_memory(self.executor, self.config, self.todo, self.costs(), dry_run=True, say=say)

    def tasks(self) -> list[Any]:
        """The array tasks a submission would make (ntksim.engine.packing.Task; none inline)."""
        from ntksim.engine.launch import plan_tasks

        costs = self.costs()
        if self.executor == "inline" or not self.todo or costs is None:
            return []
        return plan_tasks(self.todo, self.executor, self.config.launcher, costs)

    def sbatch(self) -> str | None:
        """The sbatch script a SLURM submission would send (None for other executors)."""
        from ntksim.engine.launch import group_cells, render_sbatch

        if self.executor != "slurm" or not self.todo:
            return None
        groups = group_cells(self.todo, self.executor, self.config.launcher, self.costs())
        return render_sbatch(self.store, self.config, len(groups))

    def describe(self) -> str:
        """The dry run's report: the cells that would run, then `estimates()`."""
        return "\n".join(part for part in (self.would_run(), self.estimates()) if part)

    def would_run(self) -> str:
        """The first SHOWN_CELLS cells to run, one line each, and how many more."""
        lines = [f"  would run: {cell.label()} [{cell.cell_id}]" for cell in self.todo[:SHOWN_CELLS]]
        if len(self.todo) > SHOWN_CELLS:
            lines.append(f"  … and {len(self.todo) - SHOWN_CELLS} more")
        return "\n".join(lines)

    def estimates(self) -> str:
        """Seconds and peak memory in this process (inline), or the task packing of a submission
        and, for SLURM, the sbatch script."""
        from ntksim.engine.launch import group_cells

        lines: list[str] = []
        costs = self.costs()
        if self.executor == "inline" or not self.todo:
            if costs:
                largest = max(range(len(costs)), key=lambda i: costs[i].peak_bytes)
                device = local_device_bytes()
                lines.append(
                    f"estimated {sum(c.seconds for c in costs):.0f} s in this process (cost model, fitted on "
                    f"a 2-core CPU); peak memory {gib(costs[largest].peak_bytes)} (largest cell: "
                    f"{self.todo[largest].label()}){f', this device has {gib(device)}' if device else ''}"
                )
            return "\n".join(lines)
        if costs is None:
            groups = group_cells(self.todo, self.executor, self.config.launcher)
            lines.append(
                f"would submit {len(groups)} task(s) with up to {max(len(g) for g in groups)} cell(s) each "
                f"through submitit's {self.executor} executor (config order: the study estimates no costs)"
            )
        else:
            tasks = self.tasks()
            seconds = [t.seconds for t in tasks]
            mean = sum(seconds) / len(seconds)
            lines.append(
                f"would submit {len(tasks)} task(s) through submitit's {self.executor} executor, packed by "
                f"estimated cost (largest first onto the least loaded task; seconds from a model fitted "
                f"on a 2-core CPU: their ratios matter, not their values):"
            )
            lines += [
                f"  task {number}: {len(task.cell_ids)} cells, estimated {task.seconds:.0f} s, "
                f"peak memory {gib(task.peak_bytes)}"
                for number, task in enumerate(tasks[:SHOWN_TASKS])
            ]
            if len(tasks) > SHOWN_TASKS:
                lines.append(f"  … and {len(tasks) - SHOWN_TASKS} more tasks")
            lines.append(
                f"slowest task {max(seconds):.0f} s = {max(seconds) / mean:.2f} × the mean task "
                f"({mean:.0f} s); total {sum(seconds):.0f} s"
            )
        script = self.sbatch()
        if script is not None:
            lines.append(script)
        return "\n".join(lines)


def _x64() -> None:
    import jax

    # Limits, EOC points and metrics are float64 in every run, so that `status` and `plot` expand
    # a config into the same cells as the `run` that wrote it; the eNTK dtype is per config.
    jax.config.update("jax_enable_x64", True)


def plan(
    config: str | Path,
    out: str | Path | None = None,
    overrides: Sequence[str] = (),
    executor: str = "inline",
    force: bool = False,
    retry_failed: bool = False,
    compile_cache: str | Path | None = None,
    no_compile_cache: bool = False,
    require_scheduler: bool = False,
) -> Plan:
    """What `run` with the same arguments would do, checked and estimated; writes nothing.

    config: a YAML file; out: the run directory (default runs/<the file's stem>); overrides:
    "key.path=YAML value" strings (as `--set`); require_scheduler: also refuse a SLURM executor
    without sbatch and srun on PATH (as `run` does; a dry run needs neither). ConfigError (one
    line) for any mistake, in the order the CLI always checked them: the config, --out's kind,
    the scheduler, then --out's contents."""
    _x64()
    if isinstance(overrides, str):  # one override given as a string, not a list of them
        overrides = [overrides]
    if executor not in EXECUTORS:
        raise ConfigError(f"--executor {executor}: choose one of {', '.join(EXECUTORS)}")
    path = Path(config)
    loaded, resolved = load(path, list(overrides))
    study = study_of(loaded)
    cells = unique_cells(study.expand(loaded))  # a setting listed twice is one cell
    root = Path(out) if out is not None else Path("runs") / path.stem
    if root.exists() and not root.is_dir():
        raise ConfigError(f"--out {root}: exists and is not a directory")
    store = store_for(root, study)
    cache = compile_cache_dir(
        root, None if compile_cache is None else Path(compile_cache), not no_compile_cache
    )
    digest = config_digest(hashed(resolved))
    missing = [tool for tool in ("sbatch", "srun") if shutil.which(tool) is None]
    if require_scheduler and executor == "slurm" and missing:
        raise ConfigError(
            f"--executor slurm: {' and '.join(missing)} not found on PATH "
            "(run on a SLURM login node, or use --dry-run)"
        )
    check_out(store, resolved, digest, force)
    state = store.status(cells) if root.exists() else {"done": [], "failed": [], "pending": cells}
    todo = state["pending"] + (state["failed"] if retry_failed else [])
    flying = (in_flight(store, todo) if root.exists() else {}) or {}
    todo = [cell for cell in todo if cell.cell_id not in flying]
    return Plan(loaded, resolved, study, store, executor, cells, state["done"], state["failed"], todo,
                flying, cache, digest, force, retry_failed)  # fmt: skip


def run_info(digest: str, executor: str, started: str) -> dict[str, Any]:
    """run.json's record of where and with what a run ran."""
    import jax

    from ntksim.kernels.limits import neural_tangents_available

    versions: dict[str, str | None] = {}
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


def use_compile_cache(cache: Path | None) -> None:
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


def run(
    config: str | Path,
    out: str | Path | None = None,
    overrides: Sequence[str] = (),
    executor: str = "inline",
    force: bool = False,
    retry_failed: bool = False,
    compile_cache: str | Path | None = None,
    no_compile_cache: bool = False,
    progress: bool | None = None,
) -> Run:
    """Run (or resume) the sweep a YAML config describes, in this process (`inline`), in local
    subprocesses (`local`), in-process through submitit (`debug`) or as a SLURM array (`slurm`,
    which returns once submitted). Returns the Run: results table, config, fits, directory, and
    which cells are done, failed or pending (`exit_code` 1 when any failed or was left pending).

    Everything finished is kept: each cell's shard is written as it finishes; a re-run computes
    only what is missing. progress: the progress bar (None: when stderr is a terminal)."""
    the_plan = plan(
        config, out, overrides, executor, force, retry_failed, compile_cache, no_compile_cache, True
    )
    store = the_plan.store
    fresh = _set_up(the_plan)
    print(the_plan.headline())
    info = run_info(the_plan.digest, executor, _now()) | {
        "cells": len(the_plan.cells),
        "done_before": len(the_plan.done),
        "to_run": len(the_plan.todo),
        "compile_cache": None if the_plan.compile_cache is None else str(the_plan.compile_cache),
    }
    if executor == "inline":  # a submission records the run only once it is accepted
        store.write_run(info)
    if retry_failed:
        for cell in the_plan.failed:
            store.failure_path(cell).unlink(missing_ok=True)
    if executor == "inline":
        use_compile_cache(the_plan.compile_cache)
        try:
            compute_cells(the_plan.config, the_plan.todo, store, progress=progress)
        except KeyboardInterrupt:
            _interrupted(store, the_plan.cells)
    elif the_plan.todo:
        info, flying = _submit(the_plan, info, fresh)
        if executor == "slurm" and info.get("job_ids"):
            # submitted and returned: no results yet (`ntksim.status` follows the jobs); the cells
            # by state as they are now, those the jobs hold in flight
            state = store.status(the_plan.cells)
            return Run(pd.DataFrame(), the_plan.config, None, store.root, state, the_plan.in_flight | flying,
                       submitted=tuple(info["job_ids"]), cells=the_plan.cells)  # fmt: skip
    from ntksim.engine.submission import drop_if_empty

    drop_if_empty(store.logs / "controllers.err")
    table, state, fits = finish(the_plan.config, the_plan.cells, store)
    store.write_run(info | {"finished": _now()})
    if len(table) and (store.root / "summary.md").exists():
        print((store.root / "summary.md").read_text())
    timing = time_report(store, the_plan.cells)
    if timing:
        print(timing)
    pending = {cell.cell_id for cell in state["pending"]}
    held = {cell: job for cell, job in the_plan.in_flight.items() if cell in pending}  # SLURM still on them
    result = Run(
        table, the_plan.config, fits, store.root, state, held, final=True, cells=list(the_plan.cells)
    )
    print(result.report())
    return result


def _set_up(the_plan: Plan) -> bool:
    """Check the directory again and write the config under its lock (a run started at the same
    moment may be setting it up); whether this call made the directory."""
    store = the_plan.store
    try:
        with store.setup_lock():
            check_out(store, the_plan.resolved, the_plan.digest, the_plan.force)
            fresh = not store.config_path.exists()
            store.create()
            if fresh or the_plan.force:  # a resumed run keeps its config.yaml as it was written
                store.write_config(yaml.safe_dump(the_plan.resolved, sort_keys=False, allow_unicode=True))
    except OSError as err:
        raise ConfigError(f"--out {store.root}: cannot write there ({err.strerror})") from None
    return fresh


def _submit(the_plan: Plan, info: dict[str, Any], fresh: bool) -> tuple[dict[str, Any], dict[str, str]]:
    """Submit the plan's cells through submitit (cells refused for memory recorded as failed, not
    sent); for local and debug, wait for the tasks. Returns run.json's record with the job ids,
    and for SLURM each submitted cell's task."""
    from ntksim.engine.launch import record_tasks, submit
    from ntksim.engine.submission import Kept, forget_submission, stderr_kept, stderr_to, stop_local_tasks

    store, executor = the_plan.store, the_plan.executor
    costs = cell_costs(the_plan.config, the_plan.todo)
    refused = refused_for_memory(executor, the_plan.config, the_plan.todo, costs)
    for cell, reason in refused:
        store.write_failure(cell, f"MemoryEstimate: {reason}")
    skip = {cell.cell_id for cell, _ in refused}
    todo = [cell for cell in the_plan.todo if cell.cell_id not in skip]
    if costs is not None:
        costs = [cost for cell, cost in zip(the_plan.todo, costs, strict=True) if cell.cell_id not in skip]
    if not todo:
        return info, {}
    before = set(store.logs.iterdir()) if store.logs.is_dir() else set()
    kept = Kept()
    try:
        # sbatch's own complaint goes into our one line; local controllers (which inherit fd 2)
        # write theirs, e.g. a traceback on Ctrl-C, to logs/controllers.err instead of the terminal
        if executor == "slurm":
            quiet: Any = stderr_kept(kept)
        elif executor == "local":
            quiet = stderr_to(store.logs / "controllers.err")
        else:
            quiet = contextlib.nullcontext()
        with quiet:
            jobs, groups = submit(
                executor, store, the_plan.config, the_plan.resolved, todo, the_plan.compile_cache, costs
            )
    except Exception as err:  # e.g. sbatch rejecting a partition or account
        said = [line for line in (kept.read() + "\n" + str(err)).strip().splitlines() if line.strip()]
        forget_submission(store, before, fresh)
        raise ConfigError(
            f"--executor {executor}: submission failed: {said[-1] if said else type(err).__name__}"
        ) from None
    if kept.read().strip():  # accepted, but whatever was said (warnings) is not lost
        print(kept.read().rstrip(), file=sys.stderr)
    if executor == "slurm":
        record_tasks(store, jobs, groups)
    info = info | {"job_ids": sorted({str(job.job_id).split("_")[0] for job in jobs})}
    store.write_run(info)
    if executor == "slurm":
        print(
            f"submitted {len(jobs)} task(s) as SLURM job {jobs[0].job_id.split('_')[0]}; "
            f"logs in {store.logs}. Follow with: ntksim status {store.root}"
        )
        return info, {
            cell: str(job.job_id) for job, group in zip(jobs, groups, strict=True) for cell in group
        }
    try:
        for job in jobs:
            try:
                job.result()
            except Exception as err:  # a task that died; its cells show up as pending below
                last = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
                print(f"ntksim: task {job.job_id} failed: {last} (logs in {store.logs})", file=sys.stderr)
    except KeyboardInterrupt:
        from ntksim.engine.submission import drop_if_empty

        stop_local_tasks(jobs)
        drop_if_empty(store.logs / "controllers.err")
        _interrupted(store, the_plan.cells)
    return info, {}


def _interrupted(store: RunStore, cells: list[CellLike]) -> None:
    """Ctrl-C: assemble what finished, say how to resume, raise RunInterrupted. Shards are
    written atomically and the sweep has given its claims back: nothing is half-written."""
    table = store.assemble(cells)
    print(f"\ninterrupted: {len(table)} finished rows kept in {store.results_path}; "
          "run the same command again to resume", file=sys.stderr)  # fmt: skip
    raise RunInterrupted


def status(directory: str | Path) -> Run:
    """The state of a run directory: assembles results.csv from the finished shards and says which
    cells are done, failed, pending and (for SLURM runs squeue could be asked about) in flight.
    ConfigError when it is not a run directory."""
    _x64()
    config, cells, store = load_run(Path(directory))
    table, state = store.collect(cells)
    flying = in_flight(store, state["pending"])
    # no fits: a status is quick (`ntksim.load_run(DIR).fits` reads the fitted rates)
    return Run(table, config, None, store.root, state, flying, cells=cells)


def plot(directory: str | Path) -> list[Path]:
    """Redraw summary.md and the figures of a run from its results (partial ones too), after
    assembling the shards finished since; a results.csv on its own (copied from elsewhere) is read
    as the concentration study's. The figure files written (formats: `figure_formats`)."""
    from ntksim.engine.config import DEFAULT_STUDY
    from ntksim.engine.study import load_study

    _x64()
    root = Path(directory)
    config = None
    if (root / "config.yaml").is_file():
        config, cells, store = load_run(root)
        if (root / "shards").is_dir():
            store.assemble(cells)  # include cells finished since the last assembly
    path = root / "results.csv"
    if not path.is_file():
        raise ConfigError(f"{path}: no such file (is {root} a run directory?)")
    try:
        results = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot parse as CSV ({str(err).splitlines()[0]})") from None
    study = study_of(config) if config is not None else load_study(DEFAULT_STUDY)
    # the oldest header a study still reads is the least a results.csv must have
    legacy = min(study.legacy_columns, key=len) if study.legacy_columns else study.columns
    missing = [c for c in legacy if c not in results.columns]
    if missing:
        raise ConfigError(f"{path}: missing columns {', '.join(missing)}")
    if results.empty:
        raise ConfigError(f"{path}: has no rows to plot")
    if config is not None:
        return write_outputs(config, results, root)[0]
    from ntksim.analysis.figures import as_written

    return as_written(study.figures(results, None, root / "figures", None))


def ended_tasks_report(result: Run, shown: int = 5) -> str:
    """For pending cells that no live task holds: which submitted task left them, the last
    exception its log shows, and where the log is (a task that crashed, was cancelled or ran out
    of requeues). Empty when squeue could not be asked or nothing was submitted."""
    from ntksim.engine.inflight import ended_tasks

    if result.in_flight is None or result.state is None:
        return ""
    stranded = {c.cell_id for c in result.state["pending"]} - set(result.in_flight)
    store = RunStore(result.directory)
    if not stranded or not store.submitted_path.exists():
        return ""
    tasks = ended_tasks(store, stranded)
    lines = []
    for job, count, logs, error in tasks[:shown]:
        said = f": {error}" if error else ""
        lines.append(
            f"  task {job} ended with {count} cell{'s' if count != 1 else ''} not done{said} (log: {logs})"
        )
    if len(tasks) > shown:
        lines.append(f"  … and {len(tasks) - shown} more such tasks; their logs are under {store.logs}")
    return "\n".join(lines)
