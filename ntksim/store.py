"""A run directory: shards of finished cells, failure records, claims, and the assembled table.

    DIR/config.yaml            resolved config
    DIR/run.json               config hash, versions, devices, start and end times
    DIR/shards/<cell>.csv      rows of one finished cell (written to a temp file, then renamed)
    DIR/failed/<cell>.json     why a cell failed
    DIR/claims/<cell>.claim    "being computed by host:pid" (skipped by other live processes)
    DIR/results.csv            assembled from the shards of the config's cells
    DIR/logs/                  submitit logs

Every write is a temp file plus `os.replace`, so a reader or a crash never sees half a file, and
two processes writing the same cell leave exactly one shard.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from ntksim.cells import Cell

COLUMNS = [
    "activation", "a", "b", "depth", "width", "widths", "schedule", "n", "in_dim", "out_dim",
    "sigma_w", "sigma_b", "seed", "method", "err_op", "err_fro", "err_max", "rel_op", "kinf_op",
    "seconds",
]  # fmt: skip


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunStore:
    """Reads and writes one run directory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

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

    def shard_path(self, cell: Cell) -> Path:
        return self.root / "shards" / f"{cell.cell_id}.csv"

    def failure_path(self, cell: Cell) -> Path:
        return self.root / "failed" / f"{cell.cell_id}.json"

    def claim_path(self, cell: Cell) -> Path:
        return self.root / "claims" / f"{cell.cell_id}.claim"

    def create(self) -> None:
        for sub in ("shards", "failed", "claims", "logs"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    # --- run metadata -------------------------------------------------------------------------
    def read_run(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.run_path.read_text())
        except (OSError, ValueError):
            return None

    def write_run(self, info: dict[str, Any]) -> None:
        _atomic_write(self.run_path, json.dumps(info, indent=2, sort_keys=True) + "\n")

    def write_config(self, text: str) -> None:
        _atomic_write(self.config_path, text)

    # --- cells ----------------------------------------------------------------------------------
    def is_done(self, cell: Cell) -> bool:
        return self.shard_path(cell).exists()

    def write_shard(self, cell: Cell, rows: list[dict[str, Any]]) -> None:
        frame = pd.DataFrame(rows, columns=COLUMNS).assign(cell=cell.cell_id)
        _atomic_write(self.shard_path(cell), frame.to_csv(index=False))
        self.failure_path(cell).unlink(missing_ok=True)

    def write_failure(self, cell: Cell, reason: str) -> None:
        record = {"cell": cell.cell_id, "label": cell.label(), "reason": reason}
        _atomic_write(self.failure_path(cell), json.dumps(record) + "\n")

    def failure(self, cell: Cell) -> str | None:
        try:
            return json.loads(self.failure_path(cell).read_text())["reason"]
        except (OSError, ValueError, KeyError):
            return None

    def claim(self, cell: Cell) -> bool:
        """Mark the cell as being computed here; False if a live process on this host holds it."""
        path = self.claim_path(cell)
        me = f"{socket.gethostname()}:{os.getpid()}"
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                try:
                    host, pid = path.read_text().strip().rsplit(":", 1)
                except (OSError, ValueError):
                    return False  # being written right now by its owner
                if host == socket.gethostname() and not _pid_alive(int(pid)):
                    path.unlink(missing_ok=True)  # stale: its owner died (kill -9, pre-emption)
                    continue
                # A claim from another host cannot be checked; trust it unless it is our own.
                return f"{host}:{pid}" == me
            with os.fdopen(fd, "w") as handle:
                handle.write(me)
            return True
        return False

    def release(self, cell: Cell) -> None:
        self.claim_path(cell).unlink(missing_ok=True)

    # --- results --------------------------------------------------------------------------------
    def assemble(self, cells: Iterable[Cell]) -> pd.DataFrame:
        """results.csv from the shards of `cells` (in cell order); written atomically."""
        frames = []
        for cell in cells:
            path = self.shard_path(cell)
            if path.exists():
                frames.append(pd.read_csv(path))
        table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[*COLUMNS, "cell"])
        table = table.drop_duplicates(subset=["cell", "seed"]).drop(columns="cell")[COLUMNS]
        _atomic_write(self.results_path, table.to_csv(index=False))
        return table

    def status(self, cells: list[Cell]) -> dict[str, list[Cell]]:
        """Cells by state: done (a shard), failed (a record, no shard), pending (neither)."""
        out: dict[str, list[Cell]] = {"done": [], "failed": [], "pending": []}
        for cell in cells:
            if self.is_done(cell):
                out["done"].append(cell)
            elif self.failure_path(cell).exists():
                out["failed"].append(cell)
            else:
                out["pending"].append(cell)
        return out
