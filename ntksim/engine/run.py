"""A run of any study: its store, computing its cells in this process, and its outputs.

The CLI (inline), the submitit workers (local, debug, SLURM) and `status`/`plot` all go through
these functions, so every study gets the same resume, failure and output behaviour.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from ntksim.engine.config import ConfigError, validate
from ntksim.engine.store import RunStore, atomic_write, unique_cells
from ntksim.engine.study import CellLike, Memo, Study, load_study
from ntksim.engine.sweep import SweepReport, run_cells


def study_of(config: Any) -> Study:
    """The Study of a validated config."""
    return load_study(config.study)


def store_for(root: Path, study: Study) -> RunStore:
    """The run directory, reading and writing the study's table."""
    return RunStore(root, study.columns, study.legacy_columns)


def compute_cells(
    config: Any, cells: list[CellLike], store: RunStore, progress: bool | None = None
) -> SweepReport:
    """Compute the cells that have no shard yet, in this process (one memo for all of them)."""
    study = study_of(config)
    memo = Memo(config)
    return run_cells(cells, lambda cell: study.compute(cell, memo), store, progress)


def load_run(directory: Path) -> tuple[Any, list[CellLike], RunStore]:
    """(config, cells, store) of an existing run directory; ConfigError if it is not one."""
    path = Path(directory) / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{directory}: no config.yaml (is it a run directory?)")
    try:
        config = validate(yaml.safe_load(path.read_text()))
        study = study_of(config)
        return config, unique_cells(study.expand(config)), store_for(Path(directory), study)
    except (ConfigError, yaml.YAMLError, OSError) as err:
        raise ConfigError(f"{path}: {str(err).splitlines()[0]}") from None


def write_outputs(config: Any, table: pd.DataFrame, root: Path) -> list[Path]:
    """summary.md and the figures of a (possibly partial) table; nothing for an empty one."""
    if not len(table):
        return []
    study = study_of(config)
    atomic_write(root / "summary.md", study.summarize(table, config))
    return study.figures(table, config, root / "figures")


def finish(config: Any, cells: list[CellLike], store: RunStore) -> tuple[pd.DataFrame, dict[str, list]]:
    """Assemble results.csv, write summary and figures; returns (table, cells by state)."""
    table, state = store.collect(cells)
    write_outputs(config, table, store.root)
    template = store.logs / "%j"  # submitit's folder template, re-created empty by its executors
    if template.is_dir() and not any(template.iterdir()):
        template.rmdir()
    return table, state
