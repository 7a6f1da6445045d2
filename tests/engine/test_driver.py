"""`ntksim.run`, `plan`, `status` and `plot` in this process, as a notebook calls them: the
behaviours the CLI tests check through subprocesses, without one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import ntksim
from ntksim.engine import driver
from ntksim.engine.config import ConfigError

TOY = "tests.engine.toy_study"


def _config(tmp_path: Path, name: str = "toy.yaml", **keys: object) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"name": "toy", "study": TOY, "values": [1, 4, 9], **keys}))
    return path


def test_run_computes_every_cell_and_returns_its_table(tmp_path: Path, capsys) -> None:
    result = ntksim.run(_config(tmp_path), out=tmp_path / "run", progress=False)
    assert isinstance(result, ntksim.Run)
    assert result.exit_code == 0 and result.directory == tmp_path / "run"
    assert (result.count("done"), result.count("failed"), result.count("pending")) == (3, 0, 0)
    assert sorted(result.table["square"].unique()) == [1, 16, 81]
    assert result.table.equals(pd.read_csv(tmp_path / "run" / "results.csv"))
    said = capsys.readouterr().out
    assert "3 cells: 0 done, 0 failed before, 3 to run" in said
    assert f"{tmp_path / 'run'}: 3 cells done, 0 failed, 0 pending; results.csv has 6 rows" in said
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["executor"] == "inline" and info["finished"] and info["to_run"] == 3


def test_a_second_run_resumes_with_nothing_to_compute(tmp_path: Path, capsys) -> None:
    log = tmp_path / "computed.log"
    config = _config(tmp_path, log=str(log))
    first = ntksim.run(config, out=tmp_path / "run", progress=False)
    again = ntksim.run(config, out=tmp_path / "run", progress=False)
    assert log.read_text().split() == ["1", "4", "9"]  # each cell computed once
    assert "3 cells: 3 done, 0 failed before, 0 to run" in capsys.readouterr().out
    assert again.table.equals(first.table)


def test_overrides_apply_as_set_does(tmp_path: Path) -> None:
    result = ntksim.run(_config(tmp_path), out=tmp_path / "run", overrides=["values=[2]"], progress=False)
    assert list(result.table["value"].unique()) == [2]
    with pytest.raises(ConfigError, match="--set nope: no such config key"):
        ntksim.run(_config(tmp_path), out=tmp_path / "other", overrides=["nope=1"])
    assert not (tmp_path / "other").exists()


def test_the_default_directory_is_runs_slash_the_config_stem(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    the_plan = ntksim.plan(_config(tmp_path, "mine.yaml"))
    assert the_plan.directory == Path("runs") / "mine"


def test_plan_writes_nothing_and_says_what_would_run(tmp_path: Path) -> None:
    the_plan = ntksim.plan(_config(tmp_path), out=tmp_path / "run")
    assert isinstance(the_plan, ntksim.Plan)
    assert not (tmp_path / "run").exists()
    assert [c.value for c in the_plan.todo] == [1, 4, 9] and not the_plan.done
    text = the_plan.describe()
    assert text.count("would run: toy v=") == 3
    assert the_plan.headline() == "tests.engine.toy_study: 3 cells: 0 done, 0 failed before, 3 to run"
    assert the_plan.tasks() == [] and the_plan.sbatch() is None  # inline: no tasks, no script


def test_a_slurm_plan_renders_its_sbatch_script_without_sbatch(tmp_path: Path) -> None:
    the_plan = ntksim.plan(_config(tmp_path), out=tmp_path / "run", executor="slurm")
    script = the_plan.sbatch()
    assert script is not None and "#SBATCH" in script and "--array=0-" in script
    assert script in the_plan.describe()
    assert not (tmp_path / "run").exists()


def test_plan_after_a_partial_run_counts_done_and_failed(tmp_path: Path) -> None:
    config = _config(tmp_path, fail_on=4)
    result = ntksim.run(config, out=tmp_path / "run", progress=False)
    assert result.exit_code == 1 and [c.value for c in result.state["failed"]] == [4]
    assert "failed: toy v=4" in result.report() and "ArithmeticError" in result.report()
    the_plan = ntksim.plan(config, out=tmp_path / "run")
    assert (len(the_plan.done), len(the_plan.failed), len(the_plan.todo)) == (2, 1, 0)
    retry = ntksim.plan(config, out=tmp_path / "run", retry_failed=True)
    assert [c.value for c in retry.todo] == [4]


def test_retry_failed_recomputes_the_failed_cell(tmp_path: Path) -> None:
    ntksim.run(_config(tmp_path, fail_on=4), out=tmp_path / "run", progress=False)
    fixed = _config(tmp_path, fail_on=4)  # same config: the failure is recorded, not retried
    assert ntksim.run(fixed, out=tmp_path / "run", progress=False).exit_code == 1
    # a changed fail_on is a changed config: force keeps the finished cells
    changed = _config(tmp_path, fail_on=None)
    with pytest.raises(ConfigError, match="holds a run of a different config"):
        ntksim.run(changed, out=tmp_path / "run")
    result = ntksim.run(changed, out=tmp_path / "run", force=True, retry_failed=True, progress=False)
    assert result.exit_code == 0 and result.count("done") == 3


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda d: d.write_text("a file"), "exists and is not a directory"),
        (lambda d: (d.mkdir(), (d / "thesis.tex").write_text("x")), "holds thesis.tex but no ntksim run"),
        (lambda d: (d.mkdir(), (d / "config.yaml").write_text(": :")), "holds an unreadable config.yaml"),
    ],
)
def test_an_unusable_out_is_one_config_error_and_nothing_is_written(tmp_path: Path, setup, message) -> None:
    out = tmp_path / "run"
    setup(out)
    before = sorted(p.name for p in out.iterdir()) if out.is_dir() else None
    with pytest.raises(ConfigError, match=message):
        ntksim.run(_config(tmp_path), out=out)
    assert (sorted(p.name for p in out.iterdir()) if out.is_dir() else None) == before


def test_an_unknown_executor_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--executor cloud: choose one of inline, local, debug, slurm"):
        ntksim.plan(_config(tmp_path), executor="cloud")


def test_ctrl_c_keeps_the_finished_cells_and_raises_run_interrupted(tmp_path: Path, monkeypatch) -> None:
    real = driver.compute_cells

    def interrupted_after_one(config, cells, store, **kwargs):
        real(config, cells[:1], store, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(driver, "compute_cells", interrupted_after_one)
    with pytest.raises(ntksim.RunInterrupted):
        ntksim.run(_config(tmp_path), out=tmp_path / "run", progress=False)
    kept = pd.read_csv(tmp_path / "run" / "results.csv")
    assert list(kept["value"].unique()) == [1]
    monkeypatch.setattr(driver, "compute_cells", real)
    resumed = ntksim.run(_config(tmp_path), out=tmp_path / "run", progress=False)
    assert resumed.count("done") == 3


def test_status_and_plot_of_a_run_directory(tmp_path: Path) -> None:
    ntksim.run(_config(tmp_path), out=tmp_path / "run", progress=False)
    (tmp_path / "run" / "results.csv").unlink()  # status assembles it again from the shards
    state = ntksim.status(tmp_path / "run")
    assert state.exit_code == 0 and state.count("done") == 3 and len(state.table) == 6
    assert (tmp_path / "run" / "results.csv").is_file()
    assert state.report().startswith(f"{tmp_path / 'run'}: 3 cells done, 0 failed, 0 pending")
    (tmp_path / "run" / "figures" / "values.txt").unlink()
    figures = ntksim.plot(tmp_path / "run")  # each figure's files as written (here: .png names)
    assert [f.stem for f in figures] == ["values"]
    assert (tmp_path / "run" / "figures" / "values.txt").read_text() == "1 4 9"


def test_status_and_plot_of_something_else_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no config\.yaml"):
        ntksim.status(tmp_path)
    with pytest.raises(ConfigError, match=r"results\.csv: no such file"):
        ntksim.plot(tmp_path)
    (tmp_path / "results.csv").write_text("activation,depth\n")
    with pytest.raises(ConfigError, match="missing columns"):
        ntksim.plot(tmp_path)


def test_a_concentration_run_in_a_notebook_returns_its_fitted_rates(tmp_path: Path) -> None:
    config = tmp_path / "tiny.yaml"
    tiny = {"name": "tiny", "activations": ["relu"], "depths": [2], "widths": [8, 16], "seeds": 3}
    tiny |= {"data": {"n": 4, "dim": 3}, "limit": {"backend": "closed_form"}}
    config.write_text(yaml.safe_dump(tiny))
    result = ntksim.run(config, out=tmp_path / "run", progress=False)
    assert result.exit_code == 0 and len(result.table) == 6
    assert result.fits is not None and len(result.fits) == 1
    assert np.isfinite(result.fits["slope"].iloc[0])
    assert ntksim.load_run(tmp_path / "run").table.equals(result.table)


def test_one_override_may_be_given_as_a_string(tmp_path: Path) -> None:
    the_plan = ntksim.plan(_config(tmp_path), out=tmp_path / "run", overrides="values=[5]")
    assert [c.value for c in the_plan.todo] == [5]


def test_a_slurm_run_without_sbatch_is_refused_after_the_config_is_read(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(ConfigError, match="--set nope"):  # a config mistake is said first
        ntksim.run(_config(tmp_path), out=tmp_path / "run", executor="slurm", overrides=["nope=1"])
    with pytest.raises(ConfigError, match="--executor slurm: sbatch and srun not found on PATH"):
        ntksim.run(_config(tmp_path), out=tmp_path / "run", executor="slurm")
    assert not (tmp_path / "run").exists()
    assert "#SBATCH" in ntksim.plan(_config(tmp_path), out=tmp_path / "run", executor="slurm").describe()


def test_describe_says_nothing_on_stderr_and_refused_does_when_asked(tmp_path: Path, capsys) -> None:
    the_plan = ntksim.plan(_config(tmp_path), out=tmp_path / "run")
    assert the_plan.describe() == the_plan.describe()
    assert the_plan.refused() == [] and the_plan.refused(say=True) == []
    assert capsys.readouterr().err == ""
