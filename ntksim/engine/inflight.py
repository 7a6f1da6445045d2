"""What a run has in flight on SLURM: the cells of tasks still queued or running.

Each accepted submission appends {job, cells, submitted} per task to DIR/submitted.json (submitit's
job ids: "<array job>_<task>"). Asked again, `squeue` says which of those tasks are still alive;
their cells are neither re-submitted nor reported as lost by `ntksim status`. Where squeue cannot
be asked (not on PATH, failing), nothing is assumed in flight and the caller says so.
"""

from __future__ import annotations

import json
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
    }
)


def submitted_path(store: RunStore) -> Path:
    return store.root / "submitted.json"


def record_submission(store: RunStore, tasks: list[tuple[str, list[str]]], when: str) -> None:
    """Append (job id, cell ids) per submitted task to DIR/submitted.json."""
    path = submitted_path(store)
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
    cmd = ["squeue", "-h", "-r", "-o", "%i %T", "-j", ",".join(sorted(set(job_ids)))]
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
            states[parts[0]] = parts[1].upper()
    return states


def cells_in_flight(store: RunStore) -> tuple[dict[str, str], bool]:
    """(cell id → job task still alive, whether the scheduler could be asked)."""
    try:
        known: list[dict[str, Any]] = json.loads(submitted_path(store).read_text())
    except (OSError, ValueError):
        return {}, True
    states = squeue_states([entry["job"].split("_")[0] for entry in known])
    if states is None:
        return {}, False
    alive = {}
    for entry in known:
        job = entry["job"]
        base = job.split("_")[0]
        if states.get(job, states.get(base)) in ALIVE:
            alive.update({cell: job for cell in entry["cells"]})
    return alive, True
