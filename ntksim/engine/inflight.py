"""What a run has in flight on SLURM: the cells of tasks still queued or running.

Each accepted submission appends {job, cells, submitted} per task to DIR/submitted.json (submitit's
job ids: "<array job>_<task>"). Asked again, `squeue` says which of those tasks are still alive;
their cells are neither re-submitted nor reported as lost by `ntksim status`. Where squeue cannot
be asked (not on PATH, failing), nothing is assumed in flight and the caller says so.
"""

from __future__ import annotations

import getpass
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from ntksim.engine.store import RunStore, atomic_write

ALIVE = frozenset(
    {
        "PENDING",
        "RUNNING",
        "CONFIGURING",
        "COMPLETING",
        "REQUEUED",
        "RESIZING",
        "SUSPENDED",
        "REQUEUE_HOLD",
        "REQUEUE_FED",
        "SIGNALING",
        "STAGE_OUT",
        "STOPPED",
    }
)


def submitted_path(store: RunStore) -> Path:
    return store.submitted_path


def record_submission(store: RunStore, tasks: list[tuple[str, list[str]]], when: str) -> None:
    """Append (job id, cell ids) per submitted task to DIR/submitted.json, under the directory's
    lock (two drivers submitting at once must not lose each other's entries)."""
    path = submitted_path(store)
    with store.setup_lock():
        try:
            known = json.loads(path.read_text())
        except (OSError, ValueError):
            known = []
        known += [{"job": job, "cells": cells, "submitted": when} for job, cells in tasks]
        atomic_write(path, json.dumps(known, indent=1) + "\n")


def squeue_states(job_ids: list[str], timeout_s: float = 30) -> dict[str, str] | None:
    """State of every task of these jobs, "<job>_<task>" (or "<job>") → "RUNNING", …, from one
    `squeue -r` call; None when squeue is not there or fails. Jobs squeue no longer knows are
    absent (finished, failed or cancelled)."""
    if not job_ids or shutil.which("squeue") is None:
        return None if job_ids else {}
    # -u: this user's jobs only (a job id reused on another cluster or by someone else is not ours)
    # -t all: every state, by name; what counts as alive is decided here (ALIVE), not by the
    # subset squeue lists by default
    cmd = [
        "squeue",
        "-h",
        "-r",
        "-t",
        "all",
        "-u",
        getpass.getuser(),
        "-o",
        "%i %T",
        "-j",
        ",".join(sorted(set(job_ids))),
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        # squeue exits 1 for "Invalid job id specified" once every listed job has left its memory
        return {} if "invalid job id" in proc.stderr.lower() else None
    states = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            # "4242_3" (array task) or "4242+0" (heterogeneous component): keyed as submitit's "4242_3"
            states[parts[0].replace("+", "_")] = parts[1].upper()
    return states


def cells_in_flight(store: RunStore) -> tuple[dict[str, str], bool]:
    """(cell id → job task still alive, whether the scheduler could be asked)."""
    path = submitted_path(store)
    if not path.exists():
        return {}, True
    try:
        known: list[dict[str, Any]] = json.loads(path.read_text())
        jobs = [re.split(r"[_+]", str(entry["job"]))[0] for entry in known]
    except (OSError, ValueError, TypeError, KeyError):
        return {}, False  # unreadable record: nothing can be said about what is in flight
    states = squeue_states(jobs)
    if states is None:
        return {}, False
    alive = {}
    for entry in known:
        job = str(entry["job"])
        base = re.split(r"[_+]", job)[0]
        if states.get(job, states.get(base)) in ALIVE:
            alive.update({cell: job for cell in entry["cells"]})
    return alive, True


ERROR_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b.*")


def last_error(log_dir: Path) -> str | None:
    """The last exception line ("ModuleNotFoundError: …") in a task's stderr logs, if any."""
    for path in sorted(log_dir.glob("*_log.err"), reverse=True):
        try:
            lines = path.read_text(errors="replace").splitlines()
        except OSError:
            continue
        for line in reversed(lines):
            if ERROR_LINE.match(line.strip()):
                return line.strip()
    return None


def ended_tasks(store: RunStore, stranded: set[str]) -> list[tuple[str, int, Path, str | None]]:
    """The submitted tasks that left cells neither done nor in flight: (job id, how many of those
    cells it held, its log directory, the last exception line of its stderr), by the latest
    submission of each cell."""
    try:
        known: list[dict[str, Any]] = json.loads(submitted_path(store).read_text())
        latest = {cell: str(entry["job"]) for entry in known for cell in entry["cells"]}
    except (OSError, ValueError, TypeError, KeyError):
        return []
    held: dict[str, int] = {}
    for cell in stranded:
        if cell in latest:
            held[latest[cell]] = held.get(latest[cell], 0) + 1
    return [(job, n, store.logs / job, last_error(store.logs / job)) for job, n in sorted(held.items())]
