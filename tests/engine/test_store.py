"""Run-directory store: claims (liveness, leases, take-over) and shard validation."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pandas as pd
import pytest

from ntksim.engine import store as store_module
from ntksim.engine.loading import validate
from ntksim.engine.store import RunStore
from ntksim.studies.concentration import COLUMNS, TABLE_COLUMNS, expand

CONFIG = validate({"activations": ["relu"], "depths": [2], "widths": [4, 8], "seeds": 2})


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    s = RunStore(tmp_path / "run", TABLE_COLUMNS, [COLUMNS])
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
    assert len(table) == 4 and list(table.columns) == list(TABLE_COLUMNS)


def test_reap_removes_what_dead_processes_left_and_nothing_live(store: RunStore, dead_pid: int) -> None:
    """A process killed between writing its shard and releasing its claim leaves a claim nobody
    needs to take over; the next run removes it (and dead processes' temp files), nothing else."""
    host, dead = socket.gethostname(), dead_pid
    cells = expand(CONFIG)
    store.claim_path(cells[0]).write_text(f"{host}:{dead}")  # dead owner: removed
    store.claim_path(cells[1]).write_text(f"{host}:1")  # live owner: kept
    foreign = store.root / "claims" / "other.claim"
    foreign.write_text("node17:4242")  # another host within its lease: kept
    dead_tmp = store.root / "shards" / f".x.csv.{host}.{dead}.7.tmp"
    live_tmp = store.root / "shards" / f".y.csv.{host}.1.7.tmp"
    for path in (dead_tmp, live_tmp):
        path.write_text("partial")
    store.reap()
    assert not store.claim_path(cells[0]).exists() and not dead_tmp.exists()
    assert store.claim_path(cells[1]).exists() and foreign.exists() and live_tmp.exists()


def test_finished_cell_with_a_dead_claim_leaves_no_claim_after_a_run(store: RunStore, dead_pid: int) -> None:
    """The kill -9 race: shard written, claim not yet released when the process died."""
    from ntksim.engine.sweep import run_cells

    cell = expand(CONFIG)[0]
    store.write_shard(cell, _rows(cell))
    store.claim_path(cell).write_text(f"{socket.gethostname()}:{dead_pid}")
    report = run_cells([cell], lambda c: [], store, progress=False)
    assert report.skipped == [cell] and not report.computed
    assert not list((store.root / "claims").iterdir())


def test_removing_a_claim_that_became_live_puts_it_back(store: RunStore) -> None:
    """Two processes judging the same claim stale: if one has already re-claimed the cell when
    the other removes "the stale claim", the fresh claim is restored, not lost."""
    cell = expand(CONFIG)[0]
    path = store.claim_path(cell)
    path.write_text(f"{socket.gethostname()}:1")  # what the other process's fresh claim looks like
    store_module._remove_stale_claim(path)
    assert path.read_text() == f"{socket.gethostname()}:1"
    assert not [p for p in path.parent.iterdir() if p != path]  # no tombstone left


def test_directory_set_up_by_another_run_is_not_foreign(store: RunStore) -> None:
    """Another run may be between creating the directory and renaming config.yaml into place."""
    (store.root / ".lock").touch()
    (store.root / f".config.yaml.{socket.gethostname()}.1.2.tmp").write_text("name: x\n")
    assert store.foreign_entries() == []
    (store.root / "notes.txt").write_text("mine")
    assert store.foreign_entries() == ["notes.txt"]


def test_legacy_shards_without_provenance_columns_are_read(store: RunStore) -> None:
    """Shards written before the provenance columns existed count as done, not as corrupt."""
    cell = expand(CONFIG)[0]
    legacy = pd.DataFrame(_rows(cell), columns=COLUMNS).assign(cell=cell.cell_id)
    store.shard_path(cell).write_text(legacy.to_csv(index=False))
    frame = store.read_shard(cell)
    assert frame is not None and len(frame) == 2 and frame["limit_backend"].isna().all()
    assert list(store.assemble([cell]).columns) == list(TABLE_COLUMNS)


def test_interrupt_leaves_no_claim_behind(store: RunStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C inside claim() — during the temp file's fsync, or right after the link — and the
    sweep's release_held() leave neither a claim nor its temp file; another's claim is kept."""
    first, second = expand(CONFIG)[:2]

    def interrupted(path: Path, text: str) -> None:
        path.write_text(text)
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(store_module, "write_synced", interrupted)
        with pytest.raises(KeyboardInterrupt):
            store.claim(first)
    assert not list((store.root / "claims").iterdir())
    real_link = os.link

    def link_then_interrupt(src: object, dst: object) -> None:
        real_link(src, dst)
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(store_module.os, "link", link_then_interrupt)
        with pytest.raises(KeyboardInterrupt):
            store.claim(first)
    store.claim_path(second).write_text("node17:4242")  # another process's, never released here
    store._linking.add(store.claim_path(second))  # as if interrupted between marking and a failed link
    store.release_held()
    assert [p.name for p in (store.root / "claims").iterdir()] == [store.claim_path(second).name]
