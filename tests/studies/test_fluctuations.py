"""The fluctuations study: its merged statistics, its cells against the theory, its config errors."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ntksim.engine.config import ConfigError
from ntksim.engine.loading import validate
from ntksim.engine.study import Memo
from ntksim.studies import fluctuations


def test_blocks_of_seeds_merge_to_the_statistics_of_all_seeds() -> None:
    """Power sums of two blocks give the mean, variance and their standard errors of the union."""
    rng = np.random.default_rng(0)
    values = rng.gamma(2.0, size=300)
    rows = []
    for start, block in ((0, values[:120]), (120, values[120:])):
        setting = {"activation": "relu", "sigma_b": 0.0, "depth": 2, "schedule": "constant", "kernel": "ntk"}
        entry = {"out_dim": 1, "width": 8, "beta": 0.125, "quantity": "entry", "i": 0, "a": 0, "j": 0, "b": 0}
        sums = {f"s{k}": float(np.sum(block**k)) for k in range(1, 5)}
        extra = {"seeds": len(block), "cosine": 1.0, "limit": 1.0, "pred_mean": 0.0, "pred_var": 1.0}
        rows.append(setting | entry | sums | extra | {"seed_start": start})
    stats = fluctuations.merged(pd.DataFrame(rows))
    assert len(stats) == 1 and stats["N"].iloc[0] == 300
    np.testing.assert_allclose(stats["mean"].iloc[0], values.mean(), rtol=1e-12)
    np.testing.assert_allclose(stats["var"].iloc[0], values.var(), rtol=1e-10)
    central4 = np.mean((values - values.mean()) ** 4)
    np.testing.assert_allclose(
        stats["se_var"].iloc[0], math.sqrt((central4 - values.var() ** 2) / 300), rtol=1e-8
    )
    np.testing.assert_allclose(stats["se_mean"].iloc[0], values.std() / math.sqrt(300), rtol=1e-10)


def test_a_cell_measures_what_the_theory_predicts() -> None:
    """One cell of 1 500 draws (relu, depth 2, m = 64): every entry's variance within 4 standard
    errors of the prediction (depth 2 is exact at every width: no remainder), rows as announced."""
    raw = {"study": "fluctuations", "nets": ["relu"], "depths": [2], "widths": [64], "seeds": 1500}
    config = validate(raw | {"cosines": [0.3, -1.0], "norms": [1.0, 0.7, 1.2], "out_dim": 2})
    (cell,) = fluctuations.expand(config)
    rows = fluctuations.compute(cell, Memo(config))
    assert len(rows) == cell.rows
    stats = fluctuations.merged(pd.DataFrame(rows))
    entries = stats[stats["quantity"] == "entry"]
    floor = 1e-12 * entries["pred_var"].max()  # K(x, −1.2x) of ReLU at depth 2 is exactly 0
    assert np.all(np.abs(entries["var"] - entries["pred_var"]) <= 4 * entries["se_var"] + floor), entries
    assert entries["pred_var"].max() > 0 and np.all(np.abs(entries["mean"]) < 4 * entries["se_mean"] + 1e-9)
    fro = stats[stats["quantity"] == "fro_sq"].iloc[0]
    assert abs(fro["mean"] - fro["pred_mean"]) < 4 * fro["se_mean"]
    # err_op: the surrogate's mean (higher cumulants are O(1/m²): 4β of room at m = 64, β = 1/64)
    op = stats[stats["quantity"] == "err_op"].iloc[0]
    assert abs(op["mean"] - op["pred_mean"]) < 4 * op["se_mean"] + 4 * op["beta"] * op["pred_mean"], op


@pytest.mark.parametrize(
    ("change", "words"),
    [({"depths": [1]}, "depths.0:"), ({"cosines": [1.5]}, "cosines.0:"), ({"norms": [1.0]}, "norms:"),
     ({"norms": [1.0, 1.0, 1.0]}, "norms: one per input"), ({"nets": ["gelu"]}, "nets.0"),
     ({"nets": [{"activation": "relu", "sigma_b": -1}]}, "nets.0.sigma_b:")],
)  # fmt: skip
def test_bad_settings_are_one_line_naming_the_key(change: dict, words: str) -> None:
    raw = {"study": "fluctuations", "nets": ["relu"], "depths": [2], "widths": [8], "cosines": [0.5]} | change
    with pytest.raises(ConfigError) as err:
        validate(raw)
    assert "\n" not in str(err.value) and words in str(err.value), str(err.value)


# What tests/studies/test_study_runs.py runs of this study, as of every study: its shipped
# config made small (--set overrides), and the columns that order its rows.
SMALL_RUN = [
    "nets=[relu, abs]",
    "depths=[2]",
    "widths=[8, 16]",
    "kernels=[ntk, nngp]",
    "seeds=40",
    "seeds_per_cell=20",
    "cosines=[0.5]",
    "norms=[1.0, 0.9]",
]
ROW_KEYS = ["activation", "kernel", "depth", "width", "seed_start", "quantity", "i", "a", "j", "b"]
