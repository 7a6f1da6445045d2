"""A run directory: shards of finished cells, failure records, claims, and the assembled table.

    DIR/config.yaml            resolved config
    DIR/run.json               config hash, versions, devices, start and end times; `history`:
                               every earlier invocation
    DIR/tasks/<job>.json       per executor task: host, devices, job id, cells, one entry per attempt
    DIR/shards/<cell>.csv      rows of one finished cell (written to a temp file, then renamed)
    DIR/failed/<cell>.json     why a cell failed
    DIR/timings/<cell>.json    a finished cell's compile and compute seconds (written before its shard)
    DIR/jax-cache/             JAX's persistent compilation cache (the default place; --compile-cache)
    DIR/claims/<cell>.claim    "being computed by host:pid" (skipped by other live processes)
    DIR/results.csv            assembled from the shards of the config's cells (the study's table)
    DIR/.lock                  held while a run checks and writes config.yaml
    DIR/logs/                  submitit logs

Every write is a temp file plus `os.replace`, so a reader or a crash never sees half a file, and
two processes writing the same cell leave exactly one shard.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ntksim.analysis.files import atomic_write, temp_name, write_synced
from ntksim.engine.study import CellLike as Cell
from ntksim.engine.study import CountedCell

# A claim is alive while its owner refreshes it (every CLAIM_REFRESH_S, from a thread, so also
# during a long XLA call); after CLAIM_LEASE_S without refresh any process may take it over.
CLAIM_REFRESH_S = 30.0
CLAIM_LEASE_S = 300.0


def _tmp_owner_is_dead(tmp: Path) -> bool:
    """Whether a temp name of `temp_name` belongs to a process of this host that has exited."""
    prefix, pid, _tid, _suffix = [*tmp.name.rsplit(".", 3), "", "", ""][:4]
    return prefix.endswith(f".{socket.gethostname()}") and pid.isdigit() and not _pid_alive(int(pid))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _claim_is_live(path: Path) -> bool:
    """A claim file is live while its owner on this host runs (and is not us), or, for another
    host or an unreadable owner, until its lease runs out without a refresh."""
    try:
        age = time.time() - path.stat().st_mtime
        owner = path.read_text().strip()
    except OSError:
        return False
    host, _, pid = owner.rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        return _pid_alive(int(pid)) and int(pid) != os.getpid()
    return age < CLAIM_LEASE_S  # another host, or a claim being written: trust its lease


def _remove_stale_claim(path: Path) -> None:
    """Delete a claim judged stale, unless someone re-claimed the cell since that judgement.

    Renaming is atomic, so of several processes removing the same stale claim exactly one gets
    it; if what it got is live after all (a fresh claim made in between), it is put back.
    """
    tomb = temp_name(path, "stale")
    try:
        os.rename(path, tomb)
    except FileNotFoundError:
        return  # someone else removed it
    try:
        if _claim_is_live(tomb):
            with contextlib.suppress(FileExistsError):
                os.link(tomb, path)
    finally:
        tomb.unlink(missing_ok=True)


class RunStore:
    """Reads and writes one run directory.

    columns: the study's table columns; shards are written with them and read only if their
    header is these (or one of `legacy_columns`, read with the newer columns empty). None: any
    header (tools that only manage claims).
    """

    # What ntksim itself puts in a run directory before config.yaml exists (another process
    # may be setting it up at this moment), so none of it makes the directory "foreign".
    OWN_ENTRIES = frozenset({"shards", "failed", "claims", "logs", "tasks", "timings", "jax-cache", ".lock"})

    def __init__(
        self,
        root: Path,
        columns: Sequence[str] | None = None,
        legacy_columns: Sequence[Sequence[str]] = (),
    ) -> None:
        self.root = Path(root)
        self.columns = list(columns) if columns is not None else None
        self.legacy_columns = [list(c) for c in legacy_columns]
        self._held: set[Path] = set()
        self._linking: set[Path] = set()  # claims being linked: maybe ours, never refreshed
        self._lock = threading.Lock()
        self._keeper: threading.Thread | None = None

    # --- layout -----------------------------------------------------------------------------
    @property
    def results_path(self) -> Path:
        return self.root / "results.csv"

    @property
    def config_path(self) -> Path:
        return self.root / "config.yaml"

    @property
    def run_path(self) -> Path:
        return self.root / "run.json"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def submitted_path(self) -> Path:
        """Every accepted SLURM submission's tasks and their cells (ntksim.engine.inflight)."""
        return self.root / "submitted.json"

    @property
    def lock_path(self) -> Path:
        return self.root / ".lock"

    def scaffolding(self) -> list[Path]:
        """The directories a run makes before its first result (shards, failed, claims, logs)."""
        return [self.root / sub for sub in ("shards", "failed", "claims")] + [self.logs]

    def shard_path(self, cell: Cell) -> Path:
        return self.root / "shards" / f"{cell.cell_id}.csv"

    def failure_path(self, cell: Cell) -> Path:
        return self.root / "failed" / f"{cell.cell_id}.json"

    def claim_path(self, cell: Cell) -> Path:
        return self.root / "claims" / f"{cell.cell_id}.claim"

    def timing_path(self, cell: Cell) -> Path:
        return self.root / "timings" / f"{cell.cell_id}.json"

    def create(self) -> None:
        # logs/ only when a submitit executor writes there (submit creates it)
        for sub in ("shards", "failed", "claims"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    def foreign_entries(self) -> list[str]:
        """Names in the directory that no ntksim run put there (empty if it has config.yaml)."""
        if not self.root.is_dir() or self.config_path.exists():
            return []
        names = (p.name for p in self.root.iterdir())
        return sorted(n for n in names if n not in self.OWN_ENTRIES and not n.endswith(".tmp"))

    @contextlib.contextmanager
    def setup_lock(self) -> Iterator[None]:
        """Hold an exclusive lock on the directory while checking and writing its config, so two
        runs started together never see each other's half-made directory. Creates the directory."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # --- run metadata -------------------------------------------------------------------------
    def read_run(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.run_path.read_text())
        except (OSError, ValueError):
            return None

    def write_run(self, info: dict[str, Any]) -> None:
        """Record this invocation at the top of run.json; earlier invocations (another `started`)
        move into its `history` list, so a no-op re-run never erases the compute that made the
        results."""
        with self.setup_lock():  # drivers finishing together must not drop each other's record
            previous = self.read_run() or {}
            history = list(previous.get("history", []))
            same = ("invocation", "started")
            if previous and any(previous.get(k) != info.get(k) for k in same):
                history.append({k: v for k, v in previous.items() if k != "history"})
            record = {**info, "history": history}
            atomic_write(self.run_path, json.dumps(record, indent=2, sort_keys=True) + "\n")

    @property
    def tasks(self) -> Path:
        return self.root / "tasks"

    def write_task(self, name: str, attempt: dict[str, Any]) -> None:
        """Append one attempt of an executor task (host, devices, job id, cells) to
        DIR/tasks/<name>.json; a requeued task adds its next attempt to the same file."""
        self.tasks.mkdir(parents=True, exist_ok=True)
        path = self.tasks / f"{name}.json"
        try:
            attempts = json.loads(path.read_text())
        except (OSError, ValueError):
            attempts = []
        atomic_write(path, json.dumps([*attempts, attempt], indent=2, sort_keys=True) + "\n")

    def write_config(self, text: str) -> None:
        atomic_write(self.config_path, text)

    # --- cells ----------------------------------------------------------------------------------
    def is_done(self, cell: Cell) -> bool:
        return self.shard_path(cell).exists()

    def write_shard(self, cell: Cell, rows: list[dict[str, Any]]) -> None:
        if not rows:
            raise ValueError(f"cell {cell.cell_id} produced no rows")
        frame = pd.DataFrame(rows, columns=self.columns).assign(cell=cell.cell_id)
        atomic_write(self.shard_path(cell), frame.to_csv(index=False))
        self.failure_path(cell).unlink(missing_ok=True)

    def write_timing(self, cell: Cell, timing: dict[str, Any]) -> None:
        """Where a cell's seconds went (compile vs compute); written just before its shard."""
        path = self.timing_path(cell)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps({"cell": cell.cell_id, **timing}, sort_keys=True) + "\n")

    def timings(self, cells: Iterable[Cell]) -> pd.DataFrame:
        """One row per cell that has a timing record: cell, compile_s, compute_s, cache_hits,
        cache_misses (runs made before timings were recorded have none)."""
        rows = []
        for cell in unique_cells(cells):
            with contextlib.suppress(OSError, ValueError):
                record = json.loads(self.timing_path(cell).read_text())
                if isinstance(record, dict):
                    rows.append(record)
        columns = ["cell", "compile_s", "compute_s", "cache_hits", "cache_misses"]
        return pd.DataFrame(rows).reindex(columns=columns) if rows else pd.DataFrame(columns=columns)

    def write_failure(self, cell: Cell, reason: str) -> None:
        record = {"cell": cell.cell_id, "label": cell.label(), "reason": reason}
        atomic_write(self.failure_path(cell), json.dumps(record) + "\n")

    def failure(self, cell: Cell) -> str | None:
        try:
            return json.loads(self.failure_path(cell).read_text())["reason"]
        except (OSError, ValueError, KeyError):
            return None

    def claim_is_live(self, cell: Cell) -> bool:
        """Whether another process holds a claim on the cell that has not gone stale."""
        return _claim_is_live(self.claim_path(cell))

    def claim(self, cell: Cell) -> bool:
        """Mark the cell as being computed here; False if another live process holds it.

        The claim file appears atomically with its owner written in it (hard link of a synced
        temp file); stale claims (dead owner on this host, or no refresh within the lease) are
        taken over.
        """
        path = self.claim_path(cell)
        with self._lock:
            held = path in self._held
        if held:  # claimed here already (a study computing it with another cell): still ours?
            with contextlib.suppress(OSError):
                if path.read_text() == f"{socket.gethostname()}:{os.getpid()}":
                    return True
        tmp = temp_name(path)
        try:  # the temp file inside: an interrupt during its fsync must not leave it behind
            write_synced(tmp, f"{socket.gethostname()}:{os.getpid()}")
            for _ in range(2):
                # marked before the link, so an interrupt right after it cannot leak the claim;
                # apart from _held, so the keeper never refreshes another's claim meanwhile
                with self._lock:
                    self._linking.add(path)
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    with self._lock:
                        self._linking.discard(path)
                    if self.claim_is_live(cell):
                        return False
                    _remove_stale_claim(path)
                    continue
                with self._lock:
                    self._held.add(path)
                    self._linking.discard(path)
                self._start_keeper()
                return True
            return False
        finally:
            tmp.unlink(missing_ok=True)

    def release(self, cell: Cell) -> None:
        path = self.claim_path(cell)
        with self._lock:
            self._held.discard(path)
        path.unlink(missing_ok=True)

    def release_held(self) -> None:
        """Release every claim this process holds (an interrupt can land between a claim and the
        try block that would release it)."""
        with self._lock:
            held = self._held | self._linking
            self._held, self._linking = set(), set()
        mine = f"{socket.gethostname()}:{os.getpid()}"
        for path in held:
            with contextlib.suppress(OSError):
                if path.read_text() == mine:  # never another's (held is marked before linking)
                    path.unlink()

    def reap(self) -> None:
        """Remove what dead processes left: stale claims (e.g. of a cell whose shard was written
        just before its process was killed, so nobody needs to take it over) and their temp files."""
        with self._lock:
            held = set(self._held)
        for path in (self.root / "claims").glob("*.claim"):
            if path not in held and not _claim_is_live(path):
                _remove_stale_claim(path)
        for sub in ("", "shards", "failed", "claims"):
            for tmp in (self.root / sub).glob(".*.*"):
                if tmp.name.endswith((".tmp", ".stale")) and _tmp_owner_is_dead(tmp):
                    tmp.unlink(missing_ok=True)

    def _start_keeper(self) -> None:
        if self._keeper is None or not self._keeper.is_alive():
            self._keeper = threading.Thread(target=self._refresh_claims, name="ntksim-claims", daemon=True)
            self._keeper.start()

    def _refresh_claims(self) -> None:
        while True:
            time.sleep(CLAIM_REFRESH_S)
            with self._lock:
                held = list(self._held)
            for path in held:
                try:
                    os.utime(path)
                except OSError:
                    pass

    # --- results --------------------------------------------------------------------------------
    def read_shard(self, cell: Cell) -> pd.DataFrame | None:
        """The cell's rows, or None. An unreadable or incomplete shard (a crash of the storage
        itself) is moved aside as <id>.csv.corrupt, so the cell counts as pending again."""
        path = self.shard_path(cell)
        if not path.exists():
            return None
        try:
            frame = pd.read_csv(path)
            header = list(frame.columns)[:-1] if list(frame.columns)[-1:] == ["cell"] else None
            rows = cell.rows if isinstance(cell, CountedCell) else None
            accepted = header is not None and (
                self.columns is None or header == self.columns or header in self.legacy_columns
            )
            if not accepted or frame.empty or (rows is not None and len(frame) != rows):
                raise ValueError(f"{len(frame)} rows, columns {list(frame.columns)[:3]}…")
            if self.columns is None:
                return frame
            missing = [c for c in self.columns if c not in (header or [])]
            frame = frame.reindex(columns=[*self.columns, "cell"])
            for column in missing:
                # A column added after the shard was written (concentration's `kernel`) takes the
                # value its cell has, which is what the old code computed; others stay empty.
                value = getattr(cell, column, None)
                if isinstance(value, str | int | float | bool):
                    frame[column] = value
            return frame
        except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
            os.replace(path, path.with_name(path.name + ".corrupt"))
            print(f"ntksim: warning: {path} was unreadable ({str(err).splitlines()[0]}); "
                  "moved aside, the cell will be recomputed", file=sys.stderr)  # fmt: skip
            return None

    def assemble(self, cells: Iterable[Cell]) -> pd.DataFrame:
        """results.csv from the shards of `cells` (in cell order); written atomically."""
        return self.collect(cells)[0]

    def collect(self, cells: Iterable[Cell]) -> tuple[pd.DataFrame, dict[str, list[Cell]]]:
        """Read every shard once: write results.csv and return it with the cells by state."""
        frames = []
        state: dict[str, list[Cell]] = {"done": [], "failed": [], "pending": []}
        for cell in unique_cells(cells):
            frame = self.read_shard(cell)
            if frame is not None:
                frames.append(frame)
                state["done"].append(cell)
            elif self.failure_path(cell).exists():
                state["failed"].append(cell)
            else:
                state["pending"].append(cell)
        columns = self.columns if self.columns is not None else []
        table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[*columns, "cell"])
        table = table.drop(columns="cell")
        atomic_write(self.results_path, table.to_csv(index=False))
        return table, state

    def status(self, cells: Iterable[Cell]) -> dict[str, list[Cell]]:
        """Cells by state: done (a readable shard), failed (a record, no shard), pending (neither)."""
        out: dict[str, list[Cell]] = {"done": [], "failed": [], "pending": []}
        for cell in unique_cells(cells):
            if self.read_shard(cell) is not None:
                out["done"].append(cell)
            elif self.failure_path(cell).exists():
                out["failed"].append(cell)
            else:
                out["pending"].append(cell)
        return out


def unique_cells(cells: Iterable[Cell]) -> list[Cell]:
    """Cells in order, each id once (a config listing a setting twice makes the same cell twice)."""
    seen: set[str] = set()
    out = []
    for cell in cells:
        if cell.cell_id not in seen:
            seen.add(cell.cell_id)
            out.append(cell)
    return out
