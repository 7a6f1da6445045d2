"""The study engine runs a study that no engine file knows: a toy one defined in the test suite.

Through every executor with equal numbers, through kill -9 with resume, with a failing cell
recorded; and a concentration run directory written before studies existed resumes with zero
cells recomputed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

import pandas as pd
import pytest
import yaml

from ntksim import engine as engine_package
from ntksim.engine.config import ConfigError
from ntksim.engine.loading import validate
from ntksim.engine.study import Memo, UnknownStudy, in_groups, load_study
from tests.conftest import without_scheduler

REPO = Path(__file__).resolve().parents[2]
TOY = "tests.engine.toy_study"
OLD_RUN = Path(__file__).parent / "data" / "run_before_studies"


def _env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return without_scheduler(dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1", PYTHONPATH=path))


def ntksim(*args: object, cwd: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "ntksim", *map(str, args)]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=_env(), timeout=300)


def toy_config(path: Path, **keys: object) -> Path:
    path.write_text(yaml.safe_dump({"name": "toy", "study": TOY, "values": [1, 2, 3, 4, 5, 6], **keys}))
    return path


def test_no_engine_file_names_a_study() -> None:
    engine = Path(engine_package.__file__).parent
    for source in engine.glob("*.py"):
        text = source.read_text()
        for word in ("toy_study", "import ntksim.studies", "from ntksim.studies", "positivity"):
            assert word not in text, f"{source.name} mentions {word}"


def test_unknown_study_is_a_one_line_config_error() -> None:
    with pytest.raises(ConfigError, match=r"^study: unknown study 'nope'; choose one of .*concentration"):
        validate({"study": "nope"})
    with pytest.raises(UnknownStudy):
        load_study("tests.engine.no_such_module")


def test_a_study_whose_config_is_not_a_run_config_is_refused(tmp_path: Path, monkeypatch) -> None:
    """The engine calls RunConfig's methods (check_installation) on every config: a STUDY whose
    config model does not extend RunConfig is named as such, not an AttributeError mid-run."""
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "__init__.py").write_text("")
    (tmp_path / "outside" / "plain.py").write_text(
        "from pydantic import BaseModel\n"
        "from tests.engine import toy_study as toy\n"
        "from ntksim.engine.study import Study\n"
        "class Plain(BaseModel):\n"
        "    study: str = 'outside.plain'\n"
        "STUDY = Study('outside.plain', Plain, toy.COLUMNS, toy.expand, toy.compute, toy.summarize,\n"
        "              toy.figures)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(
        UnknownStudy, match=r"^module 'outside\.plain': STUDY's config must be a subclass of RunConfig"
    ):
        load_study("outside.plain")


@pytest.mark.cli
def test_toy_study_runs_alike_through_every_executor(tmp_path: Path) -> None:
    config = toy_config(tmp_path / "toy.yaml")
    tables = {}
    for executor in ("inline", "debug", "local"):
        out = tmp_path / executor
        proc = ntksim("run", config, "--out", out, "--executor", executor, "--no-progress", cwd=tmp_path)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "6 cells done, 0 failed, 0 pending" in proc.stdout
        tables[executor] = pd.read_csv(out / "results.csv").sort_values(
            ["value", "repeat"], ignore_index=True
        )
        assert (out / "summary.md").read_text().endswith("sum of squares 182\n")  # 2·Σv²
        assert (out / "figures" / "values.txt").read_text() == "1 2 3 4 5 6"
        assert (out / "logs").exists() == (executor != "inline")  # no empty logs/ of an inline run
        assert not (out / "logs" / "%j").exists()  # nor submitit's empty folder template
    assert len(tables["inline"]) == 12
    pd.testing.assert_frame_equal(tables["inline"], tables["debug"])
    pd.testing.assert_frame_equal(tables["inline"], tables["local"])
    status = ntksim("status", tmp_path / "local", cwd=tmp_path)
    assert status.returncode == 0 and "6 cells done" in status.stdout


@pytest.mark.cli
def test_toy_study_failure_is_recorded_and_the_rest_computed(tmp_path: Path) -> None:
    config = toy_config(tmp_path / "toy.yaml", fail_on=3)
    proc = ntksim("run", config, "--out", tmp_path / "out", "--no-progress", cwd=tmp_path)
    assert proc.returncode == 1
    assert "5 cells done, 1 failed, 0 pending" in proc.stdout
    assert "toy v=3" in proc.stdout and "ArithmeticError: toy failure at 3" in proc.stdout
    assert sorted(pd.read_csv(tmp_path / "out" / "results.csv")["value"].unique()) == [1, 2, 4, 5, 6]


@pytest.mark.cli
def test_toy_study_survives_kill_9_and_resumes_without_recomputing(tmp_path: Path) -> None:
    log = tmp_path / "computed.log"
    config = toy_config(tmp_path / "toy.yaml", sleep_s=0.4, log=str(log))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "ntksim", "run", str(config), "--out", str(out), "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(list((out / "shards").glob("*.csv"))) < 2:
        assert time.monotonic() < deadline and proc.poll() is None, "no shards appeared"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    done_before = {int(v) for v in pd.concat(pd.read_csv(p) for p in (out / "shards").glob("*.csv"))["value"]}
    assert 2 <= len(done_before) < 6
    computed_before = log.read_text().split()
    resumed = ntksim("run", config, "--out", out, "--no-progress", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "6 cells done, 0 failed, 0 pending" in resumed.stdout
    recomputed = {int(v) for v in log.read_text().split()[len(computed_before) :]}
    assert recomputed == set(range(1, 7)) - done_before  # finished cells are never computed again
    assert len(pd.read_csv(out / "results.csv")) == 12
    assert not list((out / "claims").iterdir())  # the killed run's claim was reaped


@pytest.mark.cli
def test_concentration_run_from_before_studies_resumes_with_nothing_recomputed(tmp_path: Path) -> None:
    """tests/engine/data/run_before_studies was written by ntksim before the study engine (no
    `study:` key in its config.yaml). Re-running its config finds every cell done."""
    out = tmp_path / "old"
    shutil.copytree(OLD_RUN, out)
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "shards").glob("*.csv")}
    assert len(stamps) == 4
    config = tmp_path / "config.yaml"
    shutil.copy(out / "config.yaml", config)
    assert "study" not in yaml.safe_load(config.read_text())
    # issue 25, bug 9: shards from before `kernel` existed (no provenance); the old code computed the NTK
    provenance = ["kernel", "dtype", "limit_backend", "limit_version", "jax_version"]
    for shard in (out / "shards").glob("*.csv"):
        pd.read_csv(shard).drop(columns=provenance).to_csv(shard, index=False)
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "shards").glob("*.csv")}
    written = (out / "config.yaml").read_bytes()
    proc = ntksim("run", config, "--out", out, "--no-progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "4 cells: 4 done, 0 failed before, 0 to run" in proc.stdout
    assert (out / "config.yaml").read_bytes() == written  # a finished run's files stay as they were
    filled = pd.read_csv(out / "results.csv")
    assert (filled["kernel"] == "ntk").all() and filled["limit_backend"].isna().all()
    assert {p.name: p.stat().st_mtime_ns for p in (out / "shards").glob("*.csv")} == stamps
    old = pd.read_csv(OLD_RUN / "results.csv")
    new = pd.read_csv(out / "results.csv")
    # columns may be added, none removed: the data identity came later and is empty for old shards
    assert new["data"].isna().all()
    kept = [c for c in old.columns if c not in provenance[1:]]
    pd.testing.assert_frame_equal(old[kept], new.drop(columns=["data"])[kept])


# --- the memo: cells a study computes together ---------------------------------------------------
class _Cell:
    def __init__(self, cell_id: str, group: str) -> None:
        self.cell_id, self.group = cell_id, group


def _fail(message: str) -> None:
    raise ValueError(message)


def _group(cell: _Cell) -> str:
    return cell.group


def test_cells_run_group_by_group_in_a_stable_order() -> None:
    cells = [_Cell(f"c{i}", "aba"[i % 3]) for i in range(6)]  # a: c0 c2 c3 c5, b: c1 c4
    assert [c.cell_id for c in in_groups(cells, _group)] == ["c0", "c2", "c3", "c5", "c1", "c4"]
    assert in_groups(cells, None) == cells


def test_memo_offers_the_next_available_cells_of_a_group() -> None:
    cells = in_groups([_Cell(f"c{i}", "ab"[i % 2]) for i in range(7)], _group)  # c0 c2 c4 c6 c1 c3 c5
    unavailable = {"c4"}  # done, or claimed by another process
    claimed, released = [], []

    def claim(cell: _Cell) -> bool:
        claimed.append(cell.cell_id)
        return cell.cell_id not in unavailable

    memo = Memo(None, cells, _group, claim, lambda cell: released.append(cell.cell_id))

    def ids(group: list[_Cell]) -> list[str]:
        return [c.cell_id for c in group]

    assert ids(memo.together(cells[0], 8)) == ["c0", "c2", "c6"]
    assert claimed == ["c2", "c4", "c6"]  # the partners are claimed, the cell itself is the engine's
    claimed.clear()
    assert ids(memo.together(cells[0], 2)) == ["c0", "c2"]
    assert claimed == ["c2"]  # no more than needed
    memo.give_back(cells[1:3])
    assert released == ["c2", "c4"]
    assert ids(memo.together(cells[0], 1)) == ["c0"]
    assert ids(memo.together(cells[1], 8)) == ["c2", "c6"]  # never a cell before it
    memo.keep(cells[1], [{"row": 2}])
    try:
        _fail("c6 is bad")
    except ValueError as err:
        memo.keep(cells[3], err)
    assert ids(memo.together(cells[0], 8)) == ["c0"]  # kept ones are not offered
    assert ids(memo.together(cells[4], 8)) == ["c1", "c3", "c5"]
    assert memo.take(cells[1]) == [{"row": 2}]
    assert memo.take(cells[1]) is None  # taken once
    with pytest.raises(ValueError, match="c6 is bad") as raised:
        memo.take(cells[3])
    frames = [frame.f_code.co_name for frame, _ in traceback.walk_tb(raised.value.__traceback__)]
    assert "_fail" not in frames  # kept without the frames that raised it (and their arrays)
    assert memo.take(cells[3]) is None
    # a cell listed twice is not its own partner
    twice = [cells[0], cells[1], cells[0]]
    assert ids(Memo(None, twice, _group).together(cells[0], 8)) == ["c0", "c2"]
    # without a group key (or a memo made without cells) a cell comes alone
    assert ids(Memo(None, cells).together(cells[0], 8)) == ["c0"]
    assert ids(Memo(None).together(cells[0], 8)) == ["c0"]
