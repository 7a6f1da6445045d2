"""The training study: cells, rows, the limit only where it exists, data from a file."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ntksim.engine.config import ConfigError, validate
from ntksim.engine.study import Memo
from ntksim.studies import training as study

needs_x64 = pytest.mark.skipif(
    not __import__("jax").config.jax_enable_x64, reason="the study trains in float64"
)
SMALL = {
    "activations": ["relu"],
    "widths": [16],
    "seeds": 2,
    "steps": 20,
    "observe": 3,
    "data": {"n_train": 8, "n_test": 4, "dim": 4},
    "target": {"width": 64},
}


def _run(**keys: object) -> tuple[pd.DataFrame, object]:
    config = validate({"study": "training", **SMALL, **keys})
    memo = Memo(config)
    rows = []
    for cell in study.expand(config):
        got = study.compute(cell, memo)
        assert len(got) == cell.rows
        rows += got
    return pd.DataFrame(rows, columns=study.COLUMNS), config


@needs_x64
def test_rows_losses_and_the_limit_only_for_sgd() -> None:
    table, config = _run(
        optimizers=[
            {"name": "sgd", "learning_rate": 0.5},
            {"name": "sgd", "learning_rate": 0.5, "params": {"momentum": 0.5}},
            {"name": "adam", "learning_rate": 0.01, "relative": False},
        ]
    )
    assert sorted(table["step"].unique()) == [0, 1, 4, 20]
    start = table[table["step"] == 0]
    # at step 0 the network, its linearisation and the limit (from the network's own f₀) coincide
    assert np.allclose(start["diff_lin"], 0) and np.allclose(start["drift"], 0)
    sgd = table[table["optimizer"].str.startswith("sgd")]
    assert np.allclose(sgd[sgd["step"] == 0]["diff_limit"], 0) and sgd["limit_test_loss"].notna().all()
    assert table[table["optimizer"].str.startswith("adam")]["limit_test_loss"].isna().all()
    last = table[table["step"] == 20]
    assert (last["train_loss"] < start["train_loss"].to_numpy()).all()  # training reduces the loss
    # η relative: 0.5 · 2/λ_max, and the table records both
    assert np.allclose(sgd["lr_relative"], 0.5)
    summary = study.summarize(table, config)
    assert "| relu | 3 | 0 | sgd(0.5·2/λmax) |" in summary


@needs_x64
def test_data_from_a_file_is_split_in_order(tmp_path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(14, 3))
    y = np.sin(x[:, 0])
    path = tmp_path / "d.npz"
    np.savez(path, x=x, y=y)
    data = {"kind": "file", "path": str(path), "n_train": 10, "n_test": 4}
    config = validate({"study": "training", **SMALL, "data": data})
    x_train, _, _, y_test = study.load_training_data(config)
    np.testing.assert_array_equal(x_train, x[:10])
    np.testing.assert_array_equal(y_test[:, 0], y[10:])
    bad = validate({"study": "training", **SMALL, "data": {**data, "n_train": 12}})
    with pytest.raises(ConfigError, match=r"data.n_train: n_train \+ n_test = 16 but the file has 14 rows"):
        study.expand(bad)


def test_two_optimizers_with_one_name_need_labels() -> None:
    with pytest.raises(ConfigError, match="optimizers: two entries with one name"):
        validate({"study": "training", **SMALL, "optimizers": [{"name": "sgd"}, {"name": "sgd"}]})
