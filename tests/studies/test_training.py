"""The training study: cells, rows, the limit only where it exists, data from a file."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ntksim.engine.config import ConfigError
from ntksim.engine.loading import validate
from ntksim.engine.study import Memo
from ntksim.studies import training as study
from tests.markdown import has_row

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
    assert has_row(summary, "relu", "3", "0", "sgd(0.5·2/λmax)")


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


def test_cell_ids_follow_everything_that_decides_the_numbers() -> None:
    def ids(**keys: object) -> set[str]:
        return {c.cell_id for c in study.expand(validate({"study": "training", **SMALL, **keys}))}

    base = ids()
    for change in (
        {"data": {**SMALL["data"], "n_train": 9}},
        {"target": {"width": 64, "seed": 2}},
        {"schedule": "quadratic"},
        {"dtype": "float32"},
        {"drift": False},
    ):
        assert ids(**change).isdisjoint(base), change
    assert ids(chunk=1) == base  # how seeds are batched does not change the numbers


@pytest.mark.parametrize(
    ("optimizer", "words"),
    [
        ({"name": "adam", "learning_rate": 0.001}, "relative: a rate relative to 2/λ_max"),
        (
            {"name": "sgd", "learning_rate": 0.7, "params": {"momentum": 0.9, "nesterov": True}},
            "stable bound of Nesterov momentum",
        ),
        (
            {"name": "sgd", "learning_rate": 0.5, "params": {"momentum": "fast"}},
            "params.momentum: optax.sgd's momentum is a number, got 'fast'",  # was optax's own words
        ),
    ],
)
def test_optimizer_settings_are_checked_before_any_cell_runs(optimizer: dict, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        validate({"study": "training", **SMALL, "optimizers": [optimizer]})
    # heavy-ball momentum is stable up to (1 + β) × 2/λ_max: 1.5 with β = 0.9 is accepted
    validate(
        {
            "study": "training",
            **SMALL,
            "optimizers": [{"name": "sgd", "learning_rate": 1.5, "params": {"momentum": 0.9}}],
        }
    )


def _known_table() -> pd.DataFrame:
    """drift = 2/m, ‖f − f^∞‖ = m^(−1/2) exactly; the linearisation's loss blows up at m ≤ 32
    while its distance ‖f − f^lin‖ stays 1."""
    rows = []
    for m in (16, 32, 64, 128):
        for seed in range(3):
            for step, lin in ((0, 1.0), (10, 1e9 if m <= 32 else 0.1)):
                rows.append(
                    {
                        "activation": "relu",
                        "depth": 3,
                        "sigma_b": 0.0,
                        "optimizer": "gd",
                        "schedule": "constant",
                        "width": m,
                        "seed": seed,
                        "step": step,
                        "drift": 2 / m,
                        "diff_limit": m**-0.5,
                        "diff_lin": 1.0,
                        "movement": 1 / m,
                        "lin_train_loss": lin,
                    }
                )
    return pd.DataFrame(rows)


def test_width_slopes_and_divergence_on_a_known_table() -> None:
    """drift = 2/m and ‖f − f^∞‖ = m^(−1/2) exactly give slopes −1 and −1/2; a linearisation whose
    loss blows up at the small widths is reported as diverged there, not fitted."""
    slopes = study.width_slopes(_known_table())
    row = slopes.iloc[0]
    assert row["drift"][0] == pytest.approx(-1.0) and row["diff_limit"][0] == pytest.approx(-0.5)
    assert row["lin_diverged"] == [16, 32] and np.isnan(row["diff_lin"][0])


def test_the_width_figure_labels_the_fitted_slopes_and_leaves_out_a_diverged_linearisation(
    tmp_path, monkeypatch
) -> None:
    """The figure's slopes are fits.csv's (−1.00 for the drift, −0.50 for ‖f − f^∞‖), and the
    linearisation summary.md calls diverged is not drawn, though its ‖f − f^lin‖ stays small."""
    from ntksim.studies.training import plots

    labels: list[str] = []

    def keep_labels(fig, path) -> None:
        labels.extend(label for ax in fig.axes for label in ax.get_legend_handles_labels()[1])

    monkeypatch.setattr(plots, "save_figure", keep_labels)
    table = _known_table()
    assert plots.plot_against_width(table, tmp_path / "width.png", study.fits_csv(table, None))
    assert "relu l=3 σ_b=0 gd: slope -1.00" in labels and "relu l=3 σ_b=0 gd: slope -0.50" in labels
    assert "relu gd: linearisation diverges (not drawn)" in labels


@needs_x64
def test_targets_with_two_columns_train_a_two_output_network(tmp_path) -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(12, 3))
    np.savez(tmp_path / "d.npz", x=x, y=np.stack([np.sin(x[:, 0]), np.cos(x[:, 1])], axis=1))
    table, _ = _run(data={"kind": "file", "path": str(tmp_path / "d.npz"), "n_train": 8, "n_test": 4})
    last, first = table[table["step"] == 20], table[table["step"] == 0]
    assert (last["train_loss"].to_numpy() < first["train_loss"].to_numpy()).all()
    assert np.isfinite(last["limit_test_loss"]).all() and np.isfinite(last["drift"]).all()


@needs_x64
def test_the_teacher_is_not_a_student() -> None:
    """Student seed 1 and teacher seed 1 with the same architecture are different networks."""
    table, _ = _run(target={"width": 16, "depth": 3, "seed": 1})
    assert table[(table["step"] == 0) & (table["seed"] == 1)]["train_loss"].iloc[0] > 1e-3


@needs_x64
def test_a_diverging_network_is_a_failed_cell_not_a_result() -> None:
    """Issue 25, bug 5: sgd at η = 1e6 (absolute) gave NaN losses stored as results with exit 0.
    The cell now raises (the engine records it as failed; the run exits 1)."""
    sgd = {"name": "sgd", "learning_rate": 1.0e6, "relative": False}
    config = validate({"study": "training", **SMALL, "optimizers": [sgd]})
    memo = Memo(config)
    with pytest.raises(
        study.TrainingDiverged, match=r"training diverged: the network's train loss is NaN/Inf"
    ):
        for cell in study.expand(config):
            study.compute(cell, memo)


def test_a_diverged_loss_reads_diverged_in_the_summary() -> None:
    assert study._loss_text(1e116, 0.5) == "diverged" and study._loss_text(float("inf"), 0.5) == "diverged"
    assert study._loss_text(0.25, 0.5) == "0.25" and study._loss_text(float("nan"), float("nan")) == "nan"


def test_an_infinite_sine_frequency_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^target\.frequency"):
        validate({"study": "training", **SMALL, "target": {"kind": "sine", "frequency": float("inf")}})


# What tests/studies/test_study_runs.py runs of this study, as of every study: its shipped
# config made small (--set overrides), and the columns that order its rows.
SMALL_RUN = [
    "activations=[relu]",
    "widths=[8, 16]",
    "seeds=2",
    "chunk=1",
    "data.n_train=6",
    "data.n_test=3",
    "target.width=32",
    "steps=4",
    "observe=2",
    "optimizers=[{name: sgd, learning_rate: 0.5}, {name: adam, learning_rate: 0.01, relative: false}]",
]
ROW_KEYS = ["activation", "optimizer", "width", "seed", "step"]
# key → (bad value, the key path the one-line message must start with)
BAD_VALUES = {
    "optimizers": ([{"name": "adamm"}], "optimizers.0.name: unknown optimizer 'adamm'"),
    "optimizers.params": ([{"name": "adam", "params": {"beta1": 0.9}}], "optimizers.0.params.beta1: not"),
    "optimizers.lr": ([{"name": "sgd", "learning_rate": 1.2}], "optimizers.0.learning_rate: 1.2 × 2/"),
    "steps": (0, "steps:"),
    "widths": ([0], "widths.0:"),
    "seeds": (0, "seeds:"),
    "data": ({"kind": "file"}, "data.path: required"),
    "target": ({"kind": "cosine"}, "target.kind:"),
    "schedule": ("cubic", "schedule:"),
    "dtype": ("float16", "dtype:"),
}
