"""The concentration study's default path: cells that draw the same parameters (its activations at
one depth and width) are computed together, from one draw per seed, with every number equal to
computing them one at a time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ntksim.engine.loading import validate
from ntksim.engine.run import compute_cells, store_for, study_of
from ntksim.studies import _concentration_cells as cells_module
from ntksim.studies import concentration
from ntksim.studies._sections import load_data

METRICS = ["err_op", "err_fro", "err_max", "rel_op", "kinf_op"]


def _config(**keys: object):
    base = {"activations": ["relu", "abs", "tanh"], "depths": [2], "widths": [4, 8], "seeds": 3,
            "data": {"n": 6, "dim": 3}}  # fmt: skip
    return validate(base | keys)


def _run(config, tmp_path: Path, cells=None):
    study = study_of(config)
    store = store_for(tmp_path / "run", study)
    store.create()
    cells = study.expand(config) if cells is None else cells
    report = compute_cells(config, cells, store, progress=False)
    return store, report


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The activations of every call of empirical_ntk_seeds_together."""
    seen: list[list[str]] = []
    original = cells_module.empirical_ntk_seeds_together

    def counting(nets, *args, **kwargs):
        seen.append([net.activation.name for net in nets])
        return original(nets, *args, **kwargs)

    monkeypatch.setattr(cells_module, "empirical_ntk_seeds_together", counting)
    return seen


def test_one_draw_serves_every_activation_and_numbers_equal_one_cell_at_a_time(tmp_path: Path, calls) -> None:
    config = _config()
    store, report = _run(config, tmp_path)
    assert len(report.computed) == 6 and not report.failed
    assert calls == [["relu", "abs", "tanh"]] * 2  # one program per width, not per cell
    table, _ = store.collect(study_of(config).expand(config))
    x = load_data(config.data)
    for cell in study_of(config).expand(config):
        kinf = concentration.limit_kernel(cell.net(), x, cell.kernel, cell.backend)
        alone = pd.DataFrame(cells_module.compute_cell(cell, x, kinf))
        mine = table[(table.activation == cell.activation.name) & (table.width == cell.width)]
        mine = mine.sort_values("seed")
        for name in METRICS:  # bit for bit
            assert np.array_equal(mine[name].to_numpy(), alone[name].to_numpy()), (cell.label(), name)


def _nan_metrics_for_call(monkeypatch: pytest.MonkeyPatch, index: int) -> None:
    """The `index`-th evaluation of the metrics (0: the group's first cell) gives NaN."""
    original = cells_module.concentration
    count = iter(range(100))

    def nan_once(ks, kinf):
        metrics = original(ks, kinf)
        return {k: v * np.nan for k, v in metrics.items()} if next(count) == index else metrics

    monkeypatch.setattr(cells_module, "concentration", nan_once)


@pytest.mark.parametrize("bad", [0, 1])  # the group's lead cell, or a partner
def test_a_cell_with_non_finite_numbers_fails_alone(tmp_path: Path, calls, monkeypatch, bad: int) -> None:
    config = _config(widths=[4])
    _nan_metrics_for_call(monkeypatch, bad)
    store, report = _run(config, tmp_path)
    names = ["relu", "abs", "tanh"]
    assert calls == [names]
    assert [c.activation.name for c in report.failed] == [names[bad]]
    assert sorted(c.activation.name for c in report.computed) == sorted(set(names) - {names[bad]})
    failure = store.failure_path(report.failed[0]).read_text()
    assert "CellFailure" in failure and "non-finite" in failure


def test_a_group_s_shards_are_written_before_the_next_group_is_computed(
    tmp_path: Path, calls, monkeypatch
) -> None:
    """Cells run group by group, so a crash loses at most the kept rows of one group."""
    config = _config()
    shards: list[int] = []
    original = cells_module.empirical_ntk_seeds_together

    def watching(nets, *args, **kwargs):
        shards.append(len(list((tmp_path / "run" / "shards").glob("*.csv"))))
        return original(nets, *args, **kwargs)

    monkeypatch.setattr(cells_module, "empirical_ntk_seeds_together", watching)
    _run(config, tmp_path)
    assert shards == [0, 3]


def test_a_cell_whose_limit_fails_is_left_out_and_fails_alone(tmp_path: Path, calls, monkeypatch) -> None:
    config = _config(widths=[4])
    original = concentration.limit_kernel

    def no_abs(net, *args):
        if net.activation.name == "abs":
            raise ValueError("no limit for abs today")
        return original(net, *args)

    monkeypatch.setattr(concentration, "limit_kernel", no_abs)
    store, report = _run(config, tmp_path)
    assert calls == [["relu", "tanh"]]
    assert [c.activation.name for c in report.failed] == ["abs"]
    assert "no limit for abs today" in store.failure_path(report.failed[0]).read_text()


def test_a_group_that_fails_together_is_computed_one_cell_at_a_time(
    tmp_path: Path, calls, monkeypatch
) -> None:
    config = _config(widths=[4])

    tried: list[int] = []

    def refuse(nets, *args, **kwargs):
        tried.append(len(nets))
        raise MemoryError("several networks do not fit")

    monkeypatch.setattr(cells_module, "empirical_ntk_seeds_together", refuse)
    store, report = _run(config, tmp_path)
    assert len(report.computed) == 3 and not report.failed
    assert tried == [3]  # once: the group's other cells are not tried together again
    assert not list((store.root / "claims").glob("*.claim"))  # the partners' claims were given back


def test_how_many_cells_go_together(monkeypatch) -> None:
    config = _config(widths=[64], depths=[4])
    cell = study_of(config).expand(config)[0]
    assert concentration.together_limit(cell, 6, 3) == concentration.TOGETHER
    net = cell.net()
    shared = 4 * net.num_params(3) * 4
    each = concentration.bytes_per_seed(net, 6, 3, "structured") - shared + 3 * 36 * 4
    monkeypatch.setattr(concentration, "memory_budget", lambda: shared + 3 * each + each // 2)
    assert concentration.together_limit(cell, 6, 3) == 3
    assert concentration.together_limit(cell, 6, 3, device_bytes=shared + 2 * each) == 2
    monkeypatch.setattr(concentration, "memory_budget", lambda: shared // 2)
    assert concentration.together_limit(cell, 6, 3) == 1  # not even the parameters fit: alone


def test_cells_are_not_grouped_on_several_devices(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    code = (
        "import jax; from ntksim.engine.loading import validate; from ntksim.studies import concentration;"
        "c = validate({'activations': ['relu', 'abs'], 'depths': [2], 'widths': [4], 'seeds': 2});"
        "print(len(jax.devices()), concentration.together_limit(concentration.expand(c)[0], 6, 3))"
    )
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["2", "1"]


def test_a_resumed_run_computes_only_the_pending_cells_together(tmp_path: Path, calls) -> None:
    config = _config(widths=[4])
    cells = study_of(config).expand(config)
    _run(config, tmp_path, cells[1:2])  # abs first, alone
    assert calls == []  # a lone cell: the one-network path
    _, report = _run(config, tmp_path)
    assert calls == [["relu", "tanh"]]
    assert sorted(c.activation.name for c in report.computed) == ["relu", "tanh"]


def test_traced_path_and_other_draws_are_not_computed_together(tmp_path: Path, calls) -> None:
    _run(_config(widths=[4], activations=["relu", "abs"], ntk={"traced": True}), tmp_path / "a")
    assert calls == []
    # σ_b ≠ 0 for all: biases drawn for all, still one draw; depths differ: separate draws
    _run(_config(widths=[4], depths=[2, 3], activations=["relu", "abs"], sigma_b=0.1), tmp_path / "b")
    assert calls == [["relu", "abs"], ["relu", "abs"]]


def test_fast_compile_reaches_the_programs_and_gives_the_cells_their_own_ids(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ntk.fast_compile: true`: every eNTK call of the sweep asks for it, its cells have other ids
    (their numbers may differ in the last bits) while the default's keep theirs, and the family
    without biases in float32 — the shipped CPU configs — gives the default's numbers bit for bit."""
    from ntksim.nets import empirical

    asked: list[bool] = []
    original = empirical._seed_batch

    def recording(*args, **kwargs):
        asked.append(args[-1] if len(args) == 8 else kwargs.get("fast_compile", False))
        return original(*args, **kwargs)

    monkeypatch.setattr(empirical, "_seed_batch", recording)
    keys = {"activations": ["relu", "abs"], "data": {"n": 8, "dim": 3}}
    fast = _config(**keys, ntk={"fast_compile": True})
    default = _config(**keys)
    fast_cells, default_cells = study_of(fast).expand(fast), study_of(default).expand(default)
    assert {c.cell_id for c in fast_cells}.isdisjoint(c.cell_id for c in default_cells)
    assert "fast_compile" not in default_cells[0].canonical()  # ids as before the option existed
    store, _ = _run(fast, tmp_path / "fast")
    assert asked and all(asked)
    asked.clear()
    reference, _ = _run(default, tmp_path / "default")
    assert asked and not any(asked)
    ours, _ = store.collect(fast_cells)
    theirs, _ = reference.collect(default_cells)
    order = ["activation", "width", "seed"]
    ours, theirs = ours.sort_values(order), theirs.sort_values(order)
    for name in METRICS:
        assert np.array_equal(ours[name].to_numpy(), theirs[name].to_numpy()), name


def test_summary_and_figures_carry_the_first_order_theory(tmp_path: Path, monkeypatch) -> None:
    """The summary's "First-order theory" table and the err_fro panel give
    `finite_width(net, x).at(widths).err_fro` for every curve of depth ≥ 2 and width; with
    NTKSIM_THEORY=0 (the test suite's default) neither is there."""
    from ntksim import MLP
    from ntksim.kernels.finite_width import finite_width
    from ntksim.nets.widths import hidden_widths

    config = _config(activations=["relu", "tanh"], depths=[1, 3], widths=[4, 8])
    store, _ = _run(config, tmp_path)
    table = store.assemble(concentration.expand(config))
    assert concentration.theory(table, config).empty  # switched off
    monkeypatch.setenv("NTKSIM_THEORY", "1")
    concentration._THEORY.clear()
    predicted = concentration.theory(table, config)
    assert sorted(set(predicted["activation"])) == ["relu", "tanh"] and set(predicted["depth"]) == {3}
    x = load_data(config.data)
    first = {}  # one finite_width per activation (its joint covariances are shared by `at`)
    for row in predicted.itertuples():
        act = next(a for a in config.activation_objects() if a.name == row.activation)
        net = MLP(act, depth=3, width=row.width, out_dim=1, schedule=config.schedule)
        if row.activation not in first:
            first[row.activation] = finite_width(net, x)
        at = first[row.activation].at(hidden_widths(3, row.width, config.schedule))
        assert row.predicted_fro == pytest.approx(at.err_fro, rel=1e-12)
        assert row.predicted_op == pytest.approx(at.err_op, rel=1e-12)  # n = 6 ≤ 8: err_op predicted
    summary = concentration.summarize(table, config)
    assert "## First-order theory" in summary and f"{predicted['predicted_fro'].iloc[0]:.4g}" in summary
    assert f"{predicted['predicted_op'].iloc[0]:.4g}" in summary
    figures = concentration.figures(table, config, tmp_path / "figures")
    assert any("err_op_depth3" in p.name for p in figures)


# What tests/studies/test_study_runs.py runs of this study, as of every study: its shipped
# config made small (--set overrides), and the columns that order its rows.
SMALL_RUN = ["activations=[relu, abs]", "depths=[2]", "widths=[8, 16]", "seeds=2", "data.n=6", "data.dim=4"]
ROW_KEYS = ["activation", "depth", "width", "seed"]
