"""The study extension point: what the engine needs from an experiment, and how it finds one.

A study is one module that ends with `STUDY = Study(...)`. The engine (config dispatch, cells,
shards, claims, resume, failures, executors, status, plot) calls only these fields and never
names a study. Studies are found by import path, not registered in memory, because a submitit
worker (local subprocess or SLURM node) is a fresh process: `load_study("depth")` imports
`ntksim.studies.depth`, and `load_study("package.module")` a module anywhere on the path.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Any, Generic, NamedTuple, Protocol, TypeVar, runtime_checkable

import pandas as pd

from ntksim.engine.config import RunConfig
from ntksim.engine.packing import CellCost

BUILTIN_PACKAGE = "ntksim.studies"

T = TypeVar("T")


class UnknownStudy(LookupError):
    """A study name that names no importable study module."""


class CellLike(Protocol):
    """What the engine needs of a cell: a content hash and a label for humans."""

    @property
    def cell_id(self) -> str: ...

    def label(self) -> str: ...


@runtime_checkable
class CountedCell(CellLike, Protocol):
    """A cell that knows how many rows its shard must have: a shard with fewer or more is torn
    and the cell is computed again (a cell without `rows` accepts any non-empty shard)."""

    @property
    def rows(self) -> int: ...


class Memo:
    """Per-process cache handed to `Study.compute`: the run's config and values that several cells
    share (data, limit kernels), computed once per process.

    For a study with a `group` key it also knows the cells this process is to compute, in order
    (each group's cells one after another, see `in_groups`), so that `compute` can compute a
    cell's group in one go (`together`, which claims the partners) and keep the others' rows
    until the engine reaches them (`keep`, `take`; `give_back` releases partners not kept).
    `interruptions`: exceptions that must stop the run, never be kept or taken for a cell's
    failure (a scheduler's "time is up"). `device_bytes`: the memory a cell may use, if known."""

    def __init__(
        self,
        config: Any,
        cells: Sequence[Any] = (),
        group: Callable[[Any], Hashable] | None = None,
        claim: Callable[[Any], bool] | None = None,
        release: Callable[[Any], None] | None = None,
        interruptions: tuple[type[BaseException], ...] = (),
        device_bytes: int | None = None,
    ) -> None:
        self.config = config
        self.interruptions = interruptions
        self.device_bytes = device_bytes
        self._cells = list(cells)
        self._group = group
        self._claim = claim or (lambda cell: True)
        self._release = release or (lambda cell: None)
        self._values: dict[Hashable, Any] = {}
        self._kept: dict[str, Any] = {}

    def get(self, key: Hashable, make: Callable[[], T]) -> T:
        if key not in self._values:
            self._values[key] = make()
        return self._values[key]

    def together(self, cell: Any, limit: int) -> list[Any]:
        """`cell` and up to `limit` − 1 of the cells after it in this process's order, in its
        group, not kept, that this process could claim (not done, not claimed by another
        process): what the study may compute now with it. The partners stay claimed until the
        engine computes them (or `give_back`). Just `[cell]` without a group key."""
        group = self._group
        if group is None or limit <= 1:
            return [cell]
        groups = self.get(("together", "order"), lambda: _positions(self._cells, group))
        members = groups.get(group(cell), [])
        ids = [c.cell_id for c in members]
        later = members[ids.index(cell.cell_id) + 1 :] if cell.cell_id in ids else []
        partners: list[Any] = []
        for other in later:
            if len(partners) == limit - 1:
                break
            if other.cell_id != cell.cell_id and other.cell_id not in self._kept and self._claim(other):
                partners.append(other)
        return [cell, *partners]

    def give_back(self, cells: Sequence[Any]) -> None:
        """Release the claims of partners that will not be kept (the engine claims them anew)."""
        for cell in cells:
            self._release(cell)

    def keep(self, cell: Any, outcome: list[dict[str, Any]] | Exception) -> None:
        """A cell's rows (or the exception that fails it), computed with another one, kept until
        the engine computes that cell (`take`). Held in memory only: a crash loses them, and the
        cell is computed again. An exception is kept without its traceback (whose frames would
        hold the batch's arrays)."""
        if isinstance(outcome, BaseException):
            outcome = outcome.with_traceback(None)
        self._kept[cell.cell_id] = outcome

    def take(self, cell: Any) -> list[dict[str, Any]] | None:
        """The rows kept for `cell` (raising the exception kept for it), or None."""
        outcome = self._kept.pop(cell.cell_id, None)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


def in_groups(cells: Sequence[Any], group: Callable[[Any], Hashable] | None) -> list[Any]:
    """The cells with each group's members moved up behind its first one (a stable order
    otherwise): a study computing a group together then writes its shards one after another."""
    if group is None:
        return list(cells)
    return [cell for members in _positions(list(cells), group).values() for cell in members]


def _positions(cells: list[Any], group: Callable[[Any], Hashable]) -> dict[Hashable, list[Any]]:
    groups: dict[Hashable, list[Any]] = {}
    for cell in cells:
        groups.setdefault(group(cell), []).append(cell)
    return groups


ConfigT = TypeVar("ConfigT", bound=RunConfig)
CellT = TypeVar("CellT", bound=CellLike)


class Study(NamedTuple, Generic[ConfigT, CellT]):
    """An experiment, as pure functions the engine calls, typed by its config model (ConfigT) and
    its cells (CellT); the engine holds any study as `Study[Any, Any]`.

    config: its pydantic model (extends RunConfig; `study: Literal[name]`).
    columns: its tidy table's columns; every shard is checked against them.
    expand: config → cells (stable order; raises ConfigError for bad input it can only see late,
        e.g. an unreadable data file).
    compute: (cell, memo) → rows (dicts over `columns`); raises to record the cell as failed.
    summarize: (table, config, fits) → summary.md text; fits: what `fits` returned for this
        table (None when the study fits nothing), computed once per write.
    figures: (table, config, directory, fits) → paths of the figures written.
    legacy_columns: older headers still accepted for shards written before columns were added
        (read with the new columns empty).
    fits: (table, config) → a table of every fitted rate with its interval, written as fits.csv
        beside summary.md and handed to summarize and figures (None: the study fits nothing).
    cost: (cells, config) → each cell's estimated seconds and peak bytes (`CellCost`), from its
        shapes alone, without computing anything (None: no estimates; cells are then grouped into
        tasks in config order and nothing is checked against the device's memory).
    group: cell → a key; cells with equal keys may be computed together (`Memo.together`), and
        a process runs each group's cells one after another (None: no groups).
    """

    name: str
    config: type[ConfigT]
    columns: tuple[str, ...]
    expand: Callable[[ConfigT], list[CellT]]
    compute: Callable[[CellT, Memo], list[dict[str, Any]]]
    summarize: Callable[[pd.DataFrame, ConfigT, pd.DataFrame | None], str]
    figures: Callable[[pd.DataFrame, ConfigT, Path, pd.DataFrame | None], list[Path]]
    legacy_columns: tuple[tuple[str, ...], ...] = ()
    fits: Callable[[pd.DataFrame, ConfigT], pd.DataFrame] | None = None
    cost: Callable[[list[CellT], ConfigT], list[CellCost]] | None = None
    group: Callable[[CellT], Hashable] | None = None


def builtin_studies() -> list[str]:
    """Short names of the studies that ship with ntksim (the modules of ntksim.studies)."""
    package = importlib.import_module(BUILTIN_PACKAGE)
    return sorted(m.name for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_"))


def load_study(name: str) -> Study[Any, Any]:
    """The study a config names: a built-in short name, or a dotted module path with a STUDY."""
    if not all(part.isidentifier() for part in name.split(".")):
        raise UnknownStudy(f"study {name!r} is not a name or a module path (package.module)")
    module_name = f"{BUILTIN_PACKAGE}.{name}" if "." not in name else name
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name is not None and module_name.startswith(err.name):
            raise UnknownStudy(
                f"unknown study {name!r}; choose one of {', '.join(builtin_studies())} or give a module path "
                "(package.module) that defines STUDY"
            ) from None
        raise  # the study module exists but one of its imports is missing: a real error
    study = getattr(module, "STUDY", None)
    if not isinstance(study, Study):
        raise UnknownStudy(f"module {module_name!r} defines no STUDY = Study(...)")
    if not (isinstance(study.config, type) and issubclass(study.config, RunConfig)):
        raise UnknownStudy(f"module {module_name!r}: STUDY's config must be a subclass of RunConfig")
    return study
