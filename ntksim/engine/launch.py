"""Running cells elsewhere through submitit: local subprocesses, in-process debug, SLURM arrays.

Each array task gets a group of cell ids and the resolved config (which names its study); it
expands the cells again and writes one shard per finished cell into the run directory, so a
pre-empted or requeued task resumes where the shards say.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import submitit
from submitit.slurm import slurm as submitit_slurm

from ntksim.engine.config import LauncherConfig, RunConfig
from ntksim.engine.loading import validate
from ntksim.engine.packing import CellCost, Task, balanced, task_count
from ntksim.engine.store import RunStore
from ntksim.engine.study import CellLike as Cell


class CellTask(submitit.helpers.Checkpointable):
    """An array task: compute the given cells of a run directory.

    Checkpointable: on pre-emption or timeout submitit requeues the same call, which skips the
    cells whose shards exist.
    """

    def __call__(
        self, out_dir: str, resolved: dict[str, Any], cell_ids: list[str], compile_cache: str | None = None
    ) -> dict[str, int]:
        """compile_cache: JAX's persistent compilation cache directory shared by the run's tasks
        (None: off)."""
        import jax

        jax.config.update("jax_enable_x64", True)  # entry point of the worker process
        if compile_cache is not None:  # before the first compilation
            from ntksim.engine.compilation import enable_persistent_cache

            try:
                enable_persistent_cache(compile_cache)
            except OSError as err:  # as inline: a warning, and the task compiles without it
                print(f"ntksim: warning: compile cache {compile_cache}: {err.strerror}; compiling without it",
                      file=sys.stderr)  # fmt: skip
        from ntksim.engine.run import compute_cells, store_for, study_of, task_device_bytes

        config = validate(resolved)
        study = study_of(config)
        wanted = set(cell_ids)
        cells = [c for c in study.expand(config) if c.cell_id in wanted]
        missing = wanted - {c.cell_id for c in cells}
        if missing:  # the worker expands the config differently (another ntksim version?): say so
            example = sorted(missing)[0]
            raise RuntimeError(
                f"{len(missing)} of this task's cells are not in the config as this worker expands it "
                f"(e.g. {example}); is it the same ntksim?"
            )
        store = store_for(Path(out_dir), study)
        started = _now()
        name, ids = task_identity()
        devices = [str(d) for d in jax.devices()]
        attempt = {**ids, "host": platform.node(), "pid": os.getpid(), "devices": devices,
                   "jax": jax.__version__, "cells": len(cells), "started": started}  # fmt: skip
        interruptions = (submitit.core.utils.UncompletedJobError, Terminated)
        try:
            with _terminate_on_sigterm():
                # progress=None: in a task's log (not a terminal) a line per cell, with an ETA.
                # submitit raises UncompletedJobError from its SIGUSR2 handler when a task's time
                # is up and no requeue is left: the cell it interrupts stays pending, not failed.
                report = compute_cells(
                    config,
                    cells,
                    store,
                    progress=None,
                    interruptions=interruptions,
                    device_bytes=task_device_bytes(config.launcher),
                )
        except BaseException as err:  # pre-empted, timed out, stopped: the attempt is still on record
            done = sum(store.is_done(c) for c in cells)
            reason = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}".rstrip(": ")
            if isinstance(err, SystemExit):  # submitit's exit after requeueing the task
                reason = "requeued by submitit (time limit or pre-emption)"
            store.write_task(name, {**attempt, "done": done, "interrupted": reason, "finished": _now()})
            raise
        counts = {
            "computed": len(report.computed),
            "failed": len(report.failed),
            "skipped": len(report.skipped),
        }
        store.write_task(name, {**attempt, **counts, "finished": _now()})
        return counts


class Terminated(Exception):
    """SIGTERM from the scheduler: scancel, requeue, pre-emption or the time limit."""


ENDING_GRACE_S = 10.0
"""Seconds after submitit ends a task (requeue, or no requeue left) in which a SIGTERM is taken
for that ending's own (`scontrol requeue` sends one) or for the time limit's, and ignored: the
ending is already on its way out, releasing its claims."""


class _SchedulerSignals:
    """The state of one task's scheduler signals: the first of them decides how the task ends.

    SIGTERM raises Terminated, once. SIGUSR2 runs submitit's handler (requeue and exit, or raise
    UncompletedJobError) unless a Terminated came first. A SIGTERM is ignored while submitit's
    handler runs and for ENDING_GRACE_S after it ended the task, so neither the requeue's own
    SIGTERM nor a time limit close behind the warning replaces submitit's ending or interrupts
    the release of claims. An ending that was swallowed (a handler running inside a garbage-
    collector callback, or inside library code that catches every Exception) leaves the task
    computing: a SIGTERM after the grace period stops it as usual."""

    def __init__(self, submitit_usr2: Any) -> None:
        self.submitit_usr2 = submitit_usr2
        self.terminated = False
        self.in_usr2 = False
        self.ended_at: float | None = None

    def on_sigterm(self, signum: int, frame: object) -> None:
        ending = self.ended_at is not None and time.monotonic() - self.ended_at < ENDING_GRACE_S
        if self.terminated or self.in_usr2 or ending:
            return
        self.terminated = True
        raise Terminated("SIGTERM from the scheduler (scancel, requeue, pre-emption or time limit)")

    def on_sigusr2(self, signum: int, frame: object) -> None:
        if self.terminated:
            return
        self.in_usr2 = True
        try:
            self.submitit_usr2(signum, frame)
        except (SystemExit, submitit.core.utils.UncompletedJobError):
            self.ended_at = time.monotonic()
            raise
        finally:
            self.in_usr2 = False


@contextlib.contextmanager
def _terminate_on_sigterm() -> Iterator[None]:
    """Stop the task at SIGTERM instead of computing on until SIGKILL (submitit ignores it): the
    cell in progress releases its claim, so a requeued or resubmitted task on another host does
    not wait out the claim's lease, and the attempt is recorded as interrupted. With submitit's
    SIGUSR2 handler: see _SchedulerSignals."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    submitit_usr2 = signal.getsignal(signal.SIGUSR2)
    state = _SchedulerSignals(submitit_usr2)
    previous_term = signal.signal(signal.SIGTERM, state.on_sigterm)
    if callable(submitit_usr2):  # only wrap a handler (submitit's); never the default action
        signal.signal(signal.SIGUSR2, state.on_sigusr2)
    try:
        yield
    finally:
        if previous_term is not None:  # None: a handler installed from C, which cannot be restored
            signal.signal(signal.SIGTERM, previous_term)
        if callable(submitit_usr2):
            signal.signal(signal.SIGUSR2, submitit_usr2)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def task_identity() -> tuple[str, dict[str, Any]]:
    """A file name and the scheduler's ids for this task: SLURM's array job and task ids (or job
    id) where SLURM ran it, submitit's job id otherwise, the host and pid in a debug run."""
    env = os.environ
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        job, task = env["SLURM_ARRAY_JOB_ID"], env["SLURM_ARRAY_TASK_ID"]
        return f"{job}_{task}", {
            "job_id": job,
            "array_task_id": task,
            "slurm_job_id": env.get("SLURM_JOB_ID"),
        }
    if env.get("SLURM_JOB_ID"):
        return env["SLURM_JOB_ID"], {"job_id": env["SLURM_JOB_ID"]}
    try:
        job_id = str(submitit.JobEnvironment().job_id)
    except RuntimeError:  # not inside a submitit job (debug executor: the driver's process)
        job_id = f"{platform.node()}-{os.getpid()}"
    return job_id.replace("/", "_"), {"job_id": job_id}


def plan_tasks(
    cells: list[Cell], executor: str, launcher: LauncherConfig, costs: list[CellCost]
) -> list[Task]:
    """Tasks packed by estimated cost (`packing.balanced`: largest first onto the least loaded
    task): as many tasks as `cells_per_task` gives (local/debug: at most `local_parallelism`), fewer
    where more would leave the slowest task over 1.5 × the mean."""
    count = task_count(len(cells), executor, launcher.cells_per_task, launcher.local_parallelism)
    return balanced([c.cell_id for c in cells], costs, count)


def group_cells(
    cells: list[Cell], executor: str, launcher: LauncherConfig, costs: list[CellCost] | None = None
) -> list[list[str]]:
    """Cell ids per task. With cost estimates: packed by cost (`plan_tasks`). Without: config
    order, `cells_per_task` each; local/debug merged down to `local_parallelism` tasks, because a
    local executor starts every task at once."""
    if costs is not None and cells:
        return [list(task.cell_ids) for task in plan_tasks(cells, executor, launcher, costs)]
    ids = [c.cell_id for c in cells]
    size = launcher.cells_per_task
    if executor in ("local", "debug"):
        size = max(size, -(-len(ids) // launcher.local_parallelism))
    return [ids[i : i + size] for i in range(0, len(ids), size)]


def signal_delay_s(time_min: int) -> int:
    """Seconds before the time limit that SLURM warns a task (SIGUSR2: checkpoint and requeue).

    submitit's 90 s, but at most a quarter of the limit. slurmctld looks at time limits every 30 s
    and sends the warning at the first look that finds less than delay + 30 s left, so a delay
    near the limit warns a task as it starts (seen on a real SLURM with time_min 1 and 90 s, then
    30 s: requeued tasks were "timed out" again within seconds, and max_requeue was spent with
    little progress); with a quarter, a 1-minute task gets 15–45 s of work per attempt.
    """
    return min(90, 15 * time_min)


def slurm_parameters(launcher: LauncherConfig, name: str) -> dict[str, Any]:
    """submitit SlurmExecutor parameters (sbatch options) from the launcher section."""
    params: dict[str, Any] = {
        "job_name": f"ntksim-{name}"[:64].replace(" ", "_"),
        "time": launcher.time_min,
        "signal_delay_s": signal_delay_s(launcher.time_min),
        "array_parallelism": launcher.array_parallelism,
        "setup": list(launcher.setup),
        "nodes": 1,
        "ntasks_per_node": 1,
    }
    optional = {
        "partition": launcher.partition,
        "account": launcher.account,
        "qos": launcher.qos,
        "gpus_per_node": launcher.gpus_per_node or None,
        "cpus_per_task": launcher.cpus_per_task,
        "mem": f"{launcher.mem_gb:g}GB" if launcher.mem_gb else None,
        "constraint": launcher.constraint,
    }
    params.update({k: v for k, v in optional.items() if v is not None})
    if launcher.sbatch:  # passed through: `#SBATCH --name=value`, or the bare flag for true
        params["additional_parameters"] = {
            name.replace("_", "-"): value for name, value in launcher.sbatch.items() if value is not False
        }
    return params


def make_executor(kind: str, store: RunStore, config: RunConfig) -> submitit.Executor:
    folder = store.logs / "%j"
    launcher = config.launcher
    executor: submitit.Executor
    if kind == "slurm":
        executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=launcher.max_requeue)
        executor.update_parameters(**slurm_parameters(launcher, config.name))
        return executor
    if kind == "local":
        executor = submitit.LocalExecutor(folder=folder, max_num_timeout=launcher.max_requeue)
        executor.update_parameters(timeout_min=launcher.time_min)
        return executor
    if kind == "debug":
        return submitit.DebugExecutor(folder=folder)
    raise ValueError(f"unknown executor {kind!r}")


def render_sbatch(store: RunStore, config: RunConfig, num_tasks: int) -> str:
    """The sbatch script a SLURM submission would use (for --dry-run)."""
    command = f"{sys.executable} -u -m submitit.core._submit {store.logs / '%j'}"
    params = slurm_parameters(config.launcher, config.name)
    if num_tasks > 1:
        params["map_count"] = num_tasks
    return submitit_slurm._make_sbatch_string(command=command, folder=store.logs / "%j", **params)


def submit(
    kind: str,
    store: RunStore,
    config: RunConfig,
    resolved: dict,
    cells: list[Cell],
    compile_cache: Path | None = None,
    costs: list[CellCost] | None = None,
) -> tuple[list, list[list[str]]]:
    """Submit the cells as tasks; returns submitit jobs (an array for several tasks) and each
    task's cell ids. compile_cache: the persistent compilation cache every task shares (None: off);
    costs: the cells' estimates, to pack tasks by cost (None: config order)."""
    executor = make_executor(kind, store, config)
    groups = group_cells(cells, kind, config.launcher, costs)
    task = CellTask()
    cache = None if compile_cache is None else str(compile_cache)
    if kind == "debug":  # runs each job in this process when its result is asked for
        jobs = [executor.submit(task, str(store.root), resolved, group, cache) for group in groups]
    else:
        with executor.batch():
            jobs = [executor.submit(task, str(store.root), resolved, group, cache) for group in groups]
    # submitit creates the folder template itself ("logs/%j") as an empty directory; jobs log into
    # logs/<job id>/.
    template = store.logs / "%j"
    with contextlib.suppress(OSError):  # tidying only: never turns an accepted submission into a failure
        if template.is_dir() and not any(template.iterdir()):
            template.rmdir()
    return jobs, groups


def record_tasks(store: RunStore, jobs: list, groups: list[list[str]]) -> None:
    """What is in flight, so a re-run neither submits it again nor calls it lost."""
    from ntksim.engine.inflight import record_submission

    record_submission(
        store, [(str(job.job_id), group) for job, group in zip(jobs, groups, strict=True)], _now()
    )
