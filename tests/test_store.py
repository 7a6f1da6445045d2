"""Run-directory store: claims (liveness, leases, take-over) and shard validation."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pandas as pd
import pytest

from ntksim import store as store_module
from ntksim.cells import expand
from ntksim.config import validate
from ntksim.store import COLUMNS, RunStore

CONFIG = validate({"activations": ["relu"], "depths": [2], "widths": [4, 8], "seeds": 2})


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    s = RunStore(tmp_path / "run")
    s.create()
    return s


def _rows(cell) -> list[dict]:
    return [dict.fromkeys(COLUMNS, 0.0) | {"seed": s, "activation": "relu"} for s in cell.seeds]


def test_claim_is_exclusive_and_released(store: RunStore) -> None:
    cell = expand(CONFIG)[0]
    assert store.claim(cell)
    assert store.claim_path(cell).read_text() == f"{socket.gethostname()}:{os.getpid()}"
    other = RunStore(store.root)  # another process would see a live pid on this host
    store.claim_path(cell).write_text(f"{socket.gethostname()}:1")  # pid 1 is alive
    assert other.claim_is_live(cell) and not other.claim(cell)
    store.release(cell)
    assert not store.claim_path(cell).exists()


def test_dead_local_owner_is_taken_over(store: RunStore) -> None:
    cell = expand(CONFIG)[0]
    store.claim_path(cell).write_text(f"{socket.gethostname()}:999999999")  # no such pid
    assert not store.claim_is_live(cell)
    assert store.claim(cell)


@pytest.mark.parametrize("owner", ["node17:4242", ""], ids=["other-host", "empty"])
def test_foreign_or_empty_claim_lives_for_its_lease_only(store: RunStore, owner: str) -> None:
    cell = expand(CONFIG)[0]
    path = store.claim_path(cell)
    path.write_text(owner)
    assert store.claim_is_live(cell) and not store.claim(cell)  # fresh: trusted
    old = time.time() - store_module.CLAIM_LEASE_S - 1
    os.utime(path, (old, old))
    assert not store.claim_is_live(cell) and store.claim(cell)  # stale: taken over


def test_held_claims_are_refreshed(store: RunStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "CLAIM_REFRESH_S", 0.05)
    cell = expand(CONFIG)[0]
    assert store.claim(cell)
    old = time.time() - 1000
    os.utime(store.claim_path(cell), (old, old))
    time.sleep(0.3)
    assert store.claim_path(cell).stat().st_mtime > old + 900  # the keeper touched it again
    store.release(cell)


@pytest.mark.parametrize(
    "content", ["", "activation,a\nrelu,1\n", "garbage\x00\x01"], ids=["empty", "short", "binary"]
)
def test_unreadable_shard_is_moved_aside_and_pending(store: RunStore, content: str, capsys) -> None:
    cells = expand(CONFIG)
    store.write_shard(cells[0], _rows(cells[0]))
    store.shard_path(cells[1]).write_text(content)  # e.g. a zero-length file after a power loss
    table = store.assemble(cells)
    assert len(table) == 2
    assert store.status(cells)["pending"] == [cells[1]]
    assert store.shard_path(cells[1]).with_name(store.shard_path(cells[1]).name + ".corrupt").exists()
    assert "moved aside" in capsys.readouterr().err


def test_assemble_keeps_one_row_per_cell_and_seed(store: RunStore) -> None:
    cells = expand(CONFIG)
    for cell in cells:
        store.write_shard(cell, _rows(cell))
        store.write_shard(cell, _rows(cell))  # a second writer of the same cell
    table = pd.read_csv(store.results_path) if store.assemble(cells) is not None else None
    assert len(table) == 4 and list(table.columns) == COLUMNS
