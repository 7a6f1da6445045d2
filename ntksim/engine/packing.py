"""Cells into executor tasks by estimated cost, and the memory check before anything allocates.

A study may estimate each cell's seconds and peak bytes (`Study.cost`); the engine then packs the
cells into tasks largest first, each onto the task with the least estimated time so far (the
longest-processing-time rule: the slowest task is within 4/3 of the best possible packing), so
the task holding the largest widths no longer runs far longer than the others. Without estimates
cells keep their config order, `cells_per_task` to a task, as before.
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CellCost:
    """A cell's estimated wall seconds (compilation included) and peak bytes on one device."""

    seconds: float
    peak_bytes: int


@dataclass(frozen=True)
class Task:
    """One executor task: its cells' ids (largest first) and their estimated totals."""

    cell_ids: tuple[str, ...]
    seconds: float
    peak_bytes: int


def pack(ids: Sequence[str], costs: Sequence[CellCost], num_tasks: int) -> list[Task]:
    """Cells into `num_tasks` tasks (fewer if there are fewer cells), largest estimated time
    first, each onto the least loaded task (ties: the lower task number; equal cells: by id, so
    the packing is deterministic). Every cell lands in exactly one task; no task is empty. Tasks
    come longest first."""
    if len(ids) != len(costs):
        raise ValueError(f"{len(ids)} cells but {len(costs)} cost estimates")
    if len(set(ids)) != len(ids):
        raise ValueError("a cell id appears twice")
    num_tasks = max(1, min(num_tasks, len(ids)))
    order = sorted(range(len(ids)), key=lambda i: (-costs[i].seconds, ids[i]))
    heap = [(0.0, t) for t in range(num_tasks)]
    members: list[list[int]] = [[] for _ in range(num_tasks)]
    for i in order:
        load, task = heapq.heappop(heap)
        members[task].append(i)
        heapq.heappush(heap, (load + costs[i].seconds, task))
    tasks = [
        Task(
            tuple(ids[i] for i in group),
            sum(costs[i].seconds for i in group),
            max(costs[i].peak_bytes for i in group),
        )
        for group in members
        if group
    ]
    # longest first: with limited array parallelism SLURM starts tasks in index order, and the
    # longest should not be the last to start
    return sorted(tasks, key=lambda t: (-t.seconds, t.cell_ids))


BALANCE = 1.5  # the slowest task may take at most this many times the mean task


def balanced(
    ids: Sequence[str], costs: Sequence[CellCost], num_tasks: int, ratio: float = BALANCE
) -> list[Task]:
    """`pack` into at most `num_tasks` tasks, fewer where that many would leave the slowest task
    more than `ratio` × the mean: a cell is never split, so when the largest cell alone is longer
    than the mean task the extra tasks would only finish early while the slowest still runs (the
    makespan is the same, and each task pays its start-up). Never fewer than half of `num_tasks`:
    the estimates come from a model fitted on one machine, and the user's `cells_per_task` (their
    tasks' time limit) should not be exceeded more than twice. Deterministic."""
    floor = max(1, -(-num_tasks // 2))
    tasks = pack(ids, costs, num_tasks)
    while len(tasks) > floor:
        seconds = [t.seconds for t in tasks]
        mean = sum(seconds) / len(seconds)
        if max(seconds) <= ratio * mean:
            break
        fewer = min(len(tasks) - 1, max(floor, int(ratio * sum(seconds) / max(seconds))))
        tasks = pack(ids, costs, fewer)
    return tasks


def task_count(num_cells: int, executor: str, cells_per_task: int, local_parallelism: int) -> int:
    """How many tasks: `cells_per_task` cells each on average; local and debug executors at most
    `local_parallelism` (a local executor starts every task at once)."""
    count = -(-num_cells // cells_per_task)
    if executor in ("local", "debug"):
        count = min(count, local_parallelism)
    return max(1, count)


def host_memory_bytes() -> int | None:
    """Physical memory of this machine (None where the OS does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def local_device_bytes() -> int | None:
    """Memory of this process's first JAX device: an accelerator's own, or the host's on CPU."""
    import jax

    device = jax.local_devices()[0]
    if device.platform != "cpu":  # an accelerator that does not say (e.g. the platform allocator): unknown
        stats = device.memory_stats() or {}
        return int(stats["bytes_limit"]) if stats.get("bytes_limit") else None
    return host_memory_bytes()


def too_large(cost: CellCost, device_bytes: int | None) -> bool:
    """Whether a cell's estimated peak exceeds the device (never, when the device is unknown)."""
    return device_bytes is not None and cost.peak_bytes > device_bytes


def gib(nbytes: float) -> str:
    return f"{nbytes / 2**30:.3g} GiB"


def estimate_all(cells: Sequence[Any], cost: Callable[[Any], CellCost]) -> list[CellCost]:
    """Every cell's estimate, in order."""
    return [cost(cell) for cell in cells]
