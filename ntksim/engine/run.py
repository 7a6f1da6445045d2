"""A run of any study: its store, computing its cells in this process, and its outputs.

The CLI (inline), the submitit workers (local, debug, SLURM) and `status`/`plot` all go through
these functions, so every study gets the same resume, failure and output behaviour.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from ntksim.engine.config import ConfigError, LauncherConfig
from ntksim.engine.loading import validate
from ntksim.engine.packing import CellCost, gib, local_device_bytes, too_large
from ntksim.engine.store import RunStore, atomic_write, unique_cells
from ntksim.engine.study import CellLike, Memo, Study, in_groups, load_study
from ntksim.engine.sweep import SweepReport, run_cells


def study_of(config: Any) -> Study[Any, Any]:
    """The Study of a validated config."""
    return load_study(config.study)


def store_for(root: Path, study: Study[Any, Any]) -> RunStore:
    """The run directory, reading and writing the study's table."""
    return RunStore(root, study.columns, study.legacy_columns)


def cell_costs(config: Any, cells: list[CellLike]) -> list[CellCost] | None:
    """The study's estimate of each cell's seconds and peak bytes (None: it makes none). With
    JAX's x64 on, as in every ntksim command: the estimates build float64 networks (shapes only)."""
    from ntksim.kernels.finite_width import x64

    study = study_of(config)
    if study.cost is None or not cells:
        return None
    with x64():
        return list(study.cost(list(cells), config))


def planned_device_bytes(executor: str, launcher: LauncherConfig) -> int | None:
    """Memory of the device a cell will run on: `launcher.device_mem_gb` if given; for SLURM
    tasks on CPUs their `mem_gb`, with GPUs unknown (None); here, this process's first device."""
    if launcher.device_mem_gb is not None:
        return int(launcher.device_mem_gb * 2**30)
    if executor == "slurm":
        return int(launcher.mem_gb * 2**30) if launcher.mem_gb and not launcher.gpus_per_node else None
    if executor in ("local", "debug"):
        # unknown here: asking JAX would start it in the driver, which on a GPU takes the memory
        # its tasks need; each task checks its own device
        return None
    return local_device_bytes()


def task_device_bytes(launcher: LauncherConfig) -> int | None:
    """What a cell may use inside an executor task: this process's device, and under SLURM no
    more than the task was given (`device_mem_gb`, or `mem_gb` on CPUs), whichever is smaller."""
    limits = [local_device_bytes()]
    if os.environ.get("SLURM_JOB_ID"):
        limits.append(planned_device_bytes("slurm", launcher))
    known = [b for b in limits if b]
    return min(known) if known else None


def oversized(
    cells: list[CellLike], costs: list[CellCost] | None, device_bytes: int | None
) -> list[tuple[CellLike, str]]:
    """(cell, one-line reason) for every cell whose estimated peak memory exceeds the device."""
    if costs is None:
        return []
    return [
        (
            cell,
            f"needs an estimated {gib(cost.peak_bytes)} of memory, the device has {gib(device_bytes or 0)}",
        )
        for cell, cost in zip(cells, costs, strict=True)
        if too_large(cost, device_bytes)
    ]


def compute_cells(
    config: Any,
    cells: list[CellLike],
    store: RunStore,
    progress: bool | None = None,
    interruptions: tuple[type[BaseException], ...] = (),
    device_bytes: int | None = None,
) -> SweepReport:
    """Compute the cells that have no shard yet, in this process (one memo for all of them);
    `interruptions` stop the sweep instead of failing a cell (see `run_cells`).

    A cell whose memory estimate exceeds `device_bytes` (default: this process's device) is
    refused before anything is allocated: one line on stderr, recorded as failed
    ("MemoryEstimate: …"), the sweep goes on."""
    study = study_of(config)
    limit = device_bytes if device_bytes is not None else local_device_bytes()
    costs = cell_costs(config, cells)
    refused = oversized(cells, costs, limit)
    for cell, reason in refused:
        if not store.is_done(cell):
            store.write_failure(cell, f"MemoryEstimate: {reason}")
            print(f"ntksim: refused {cell.label()}: {reason}", file=sys.stderr, flush=True)
    skip = {cell.cell_id for cell, _ in refused}
    # the ETA's estimates: of the cells this sweep attempts (a refused one is by design huge)
    estimates = (
        None if costs is None
        else {c.cell_id: e.seconds for c, e in zip(cells, costs, strict=True) if c.cell_id not in skip}
    )  # fmt: skip
    todo = in_groups([c for c in cells if c.cell_id not in skip], study.group)
    memo = Memo(config, todo, study.group, lambda c: not store.is_done(c) and store.claim(c), store.release,
                interruptions, limit)  # fmt: skip
    report = run_cells(
        todo,
        lambda cell: study.compute(cell, memo),
        store,
        progress,
        interruptions=interruptions,
        estimates=estimates,
    )
    report.failed.extend(cell for cell, _ in refused if not store.is_done(cell))
    return report


def compile_cache_dir(root: Path, directory: Path | None = None, enabled: bool = True) -> Path | None:
    """Where a run's JAX compilation cache lives: `directory` if given, else DIR/jax-cache (inside
    the run directory, so the array tasks of a cluster run share it); None when switched off."""
    from ntksim.engine.compilation import CACHE_DIRNAME

    if not enabled:
        return None
    return (Path(directory) if directory is not None else Path(root) / CACHE_DIRNAME).expanduser().absolute()


def recorded_cache_dir(root: Path) -> Path | None:
    """The compilation cache run.json says the run used (None: off or not recorded)."""
    import json

    try:
        where = json.loads((Path(root) / "run.json").read_text()).get("compile_cache")
    except (OSError, ValueError, AttributeError):
        return None
    return Path(where) if isinstance(where, str) else None


def time_report(store: RunStore, cells: list[CellLike]) -> str:
    """One line: compile and compute seconds summed over the cells with a timing record, and the
    compilation cache's size ("" when no cell has a record)."""
    from ntksim.engine.compilation import describe_cache

    times = store.timings(cells)
    if not len(times):
        return ""
    compile_s, compute_s = float(times["compile_s"].sum()), float(times["compute_s"].sum())
    hits = int(times["cache_hits"].fillna(0).sum())
    return (
        f"time in {len(times)} cells: {compile_s:.1f} s compiling, {compute_s:.1f} s computing "
        f"({hits} programs loaded from the cache); {describe_cache(recorded_cache_dir(store.root))}"
    )


def started_in(directory: Path) -> Path | None:
    """The working directory `ntksim run` was started from (run.json's `cwd`), if recorded."""
    import json

    try:
        cwd = json.loads((directory / "run.json").read_text()).get("cwd")
    except (OSError, ValueError, AttributeError):
        return None
    return Path(cwd) if isinstance(cwd, str) else None


def with_data_paths_from(raw: Any, base: Path | None) -> Any:
    """The resolved config with every relative file `path` of a data section (`kind: file`) read
    against `base`, the directory the run was started from, when the file is there (before the
    current directory, where a file of the same name may be another): `status` and `plot` work
    from anywhere, and config.yaml (whose hash decides resumes) keeps the path as written."""
    if base is None:
        return raw
    if isinstance(raw, list):
        return [with_data_paths_from(v, base) for v in raw]
    if not isinstance(raw, dict):
        return raw
    out = {k: with_data_paths_from(v, base) for k, v in raw.items()}
    path = out.get("path")
    if out.get("kind") == "file" and isinstance(path, str) and not Path(path).is_absolute():
        if (base / path).exists():  # the run's own file first: one of that name here may be another
            out["path"] = str(base / path)
    return out


def load_run(directory: Path) -> tuple[Any, list[CellLike], RunStore]:
    """(config, cells, store) of an existing run directory; ConfigError if it is not one."""
    path = Path(directory) / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{directory}: no config.yaml (is it a run directory?)")
    try:
        config = validate(with_data_paths_from(yaml.safe_load(path.read_text()), started_in(Path(directory))))
        study = study_of(config)
        return config, unique_cells(study.expand(config)), store_for(Path(directory), study)
    except (ConfigError, yaml.YAMLError, OSError) as err:
        raise ConfigError(f"{path}: {str(err).splitlines()[0]}") from None


def write_outputs(config: Any, table: pd.DataFrame, root: Path) -> tuple[list[Path], pd.DataFrame | None]:
    """summary.md, fits.csv and the figures of a (possibly partial) table, the study's fits
    computed once and handed to all three; (figure files, fits). Nothing for an empty table."""
    if not len(table):
        return [], None
    study = study_of(config)
    fits = study.fits(table, config) if study.fits is not None else None
    text = study.summarize(table, config, fits)
    timing = time_summary(RunStore(root), study.expand(config))
    if timing:  # under the study's title: the rest of the page is the study's own
        title, newline, rest = text.partition("\n") if text.startswith("# ") else ("", "", text)
        text = f"{title}{newline}\n{timing}\n{rest.lstrip(chr(10))}" if title else f"{timing}\n{text}"
    atomic_write(root / "summary.md", text)
    if fits is not None:  # every fitted rate with its interval, for scripts and notebooks
        atomic_write(root / "fits.csv", fits.to_csv(index=False))
    from ntksim.analysis.figures import as_written

    return as_written(study.figures(table, config, root / "figures", fits)), fits


def time_summary(store: RunStore, cells: list[CellLike]) -> str:
    """summary.md's section on where the time went: compile vs compute seconds over all cells."""
    times = store.timings(cells)
    if not len(times):
        return ""
    compile_s, compute_s = float(times["compile_s"].sum()), float(times["compute_s"].sum())
    hits, misses = (int(times[c].fillna(0).sum()) for c in ("cache_hits", "cache_misses"))
    return (
        f"Time: {len(times)} cells, {compile_s:.1f} s compiling (tracing, lowering, XLA; {hits} programs "
        f"loaded from the persistent cache, {misses} compiled) and {compute_s:.1f} s computing.\n"
    )


def finish(
    config: Any, cells: list[CellLike], store: RunStore
) -> tuple[pd.DataFrame, dict[str, list[CellLike]], pd.DataFrame | None]:
    """Assemble results.csv, write summary, fits and figures; returns (table, cells by state, fits)."""
    table, state = store.collect(cells)
    _, fits = write_outputs(config, table, store.root)
    template = store.logs / "%j"  # submitit's folder template, re-created empty by its executors
    if template.is_dir() and not any(template.iterdir()):
        template.rmdir()
    return table, state, fits


@dataclass(frozen=True)
class Run:
    """A finished or partial run, as a notebook wants it: the tidy table (one row per measurement),
    the validated config, the study's fitted rates (None when it fits nothing) and the directory;
    from `ntksim.run` and `ntksim.status` also the cells by state and those still in flight.

    state: "done" / "failed" / "pending" → cells; in_flight: cell id → SLURM task still holding it
    (None: squeue could not be asked); final: the end of a run, where a pending cell that no task
    holds is a failure; submitted: the SLURM job ids of a run that submitted and returned."""

    table: pd.DataFrame
    config: Any
    fits: pd.DataFrame | None
    directory: Path
    state: dict[str, list[CellLike]] | None = None
    in_flight: dict[str, str] | None = None
    final: bool = False
    submitted: tuple[str, ...] = ()
    cells: list[CellLike] | None = None

    def count(self, which: str) -> int:
        """How many cells are "done", "failed" or "pending" (0 without a state)."""
        return len(self.state[which]) if self.state is not None else 0

    @property
    def stranded(self) -> int:
        """Pending cells that no queued or running SLURM task holds."""
        return self.count("pending") - len(self.in_flight or {})

    @property
    def exit_code(self) -> int:
        """1 if a cell failed or, at the end of a run, one is still pending that no SLURM task
        holds (its task died); 0 otherwise, and for a submission that returned at once."""
        if self.state is None or self.submitted:
            return 0
        return 1 if self.count("failed") or (self.final and self.stranded) else 0

    def timing(self) -> str:
        """Compile and compute seconds over the cells with a timing record ("" when none has one)."""
        return time_report(RunStore(self.directory), self.cells or [])

    def report(self) -> str:
        """Cell counts, cells in flight, failures with their reasons, and what to do next."""
        done, failed, pending = (self.count(k) for k in ("done", "failed", "pending"))
        lines = [
            f"{self.directory}: {done} cells done, {failed} failed, {pending} pending; "
            f"results.csv has {len(self.table)} rows"
        ]
        if self.in_flight:
            jobs = sorted({job.split("_")[0] for job in self.in_flight.values()})
            lines.append(
                f"  {len(self.in_flight)} of the pending cells are in flight (queued or running in SLURM "
                f"job {', '.join(jobs)}); {pending - len(self.in_flight)} are neither done nor in flight"
            )
        store = RunStore(self.directory)
        lines += [
            f"  failed: {cell.label()} [{cell.cell_id}]: {store.failure(cell)}"
            for cell in (self.state or {}).get("failed", [])
        ]
        if self.final and self.stranded:
            lines.append(
                f"  {self.stranded} cells are still pending: run the same command again to compute them"
            )
        return "\n".join(lines)


def open_run(directory: str | Path) -> Run:
    """`ntksim.load_run(DIR)`: read DIR/results.csv (what `ntksim run` or `status` assembled) and
    DIR/config.yaml. ConfigError (one line) when DIR is not a run directory or has no results yet."""
    root = Path(directory)
    path = root / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{root}: no config.yaml (is it a run directory?)")
    try:
        config = validate(with_data_paths_from(yaml.safe_load(path.read_text()), started_in(root)))
    except (ConfigError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: {str(err).splitlines()[0]}") from None
    results = root / "results.csv"
    if not results.is_file():
        raise ConfigError(f"{root}: no results.csv yet (`ntksim status {root}` assembles what is done)")
    table = pd.read_csv(results)
    study = study_of(config)
    fits = study.fits(table, config) if study.fits is not None and len(table) else None
    return Run(table, config, fits, root)
