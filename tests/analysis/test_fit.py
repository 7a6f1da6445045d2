"""Rate fits (ntksim.analysis.fit, ntksim.studies.concentration.rates) and the theory prefactor."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ntksim.activations import Activation
from ntksim.analysis.fit import fit_rate
from ntksim.studies.concentration.plots import theory_prefactor
from ntksim.studies.concentration.rates import CURVE_KEYS, fit_table, summary_markdown
from tests.markdown import has_row, table_rows

WIDTHS = 2 ** np.arange(4, 11)  # 16 … 1024


def test_exact_power_law_gives_exact_slope_and_degenerate_ci() -> None:
    """errors = 3·m^-0.5, identical over seeds: slope −0.5 to 1e-12 and a zero-width interval."""
    errors = [np.full(8, 3.0 * m**-0.5) for m in WIDTHS]
    fit = fit_rate(WIDTHS, errors)
    assert fit.slope == pytest.approx(-0.5, abs=1e-12)
    assert fit.low == pytest.approx(-0.5, abs=1e-12) and fit.high == pytest.approx(-0.5, abs=1e-12)
    assert fit.num_widths == len(WIDTHS)


def test_noisy_power_law_ci_covers_the_truth() -> None:
    """Lognormal noise, 32 seeds: the slope lies in its CI, which contains −0.5 and is not degenerate."""
    rng = np.random.default_rng(1234)
    errors = [3.0 * m**-0.5 * rng.lognormal(0.0, 0.3, size=32) for m in WIDTHS]
    fit = fit_rate(WIDTHS, errors)
    assert fit.low <= fit.slope <= fit.high
    assert fit.low <= -0.5 <= fit.high
    assert 0.0 < fit.high - fit.low < 0.2
    assert fit.slope == pytest.approx(-0.5, abs=0.05)


def test_bootstrap_is_reproducible_and_handles_ragged_seeds() -> None:
    """Same seed, same interval; widths may have different numbers of seeds."""
    rng = np.random.default_rng(0)
    errors = [m**-1.0 * rng.lognormal(0.0, 0.2, size=k) for m, k in zip(WIDTHS, range(5, 12), strict=True)]
    first, second = fit_rate(WIDTHS, errors), fit_rate(WIDTHS, errors)
    assert first == second
    assert first.low <= first.slope <= first.high
    assert first.slope == pytest.approx(-1.0, abs=0.1)


def test_single_width_has_no_slope() -> None:
    """One width gives NaN slope and interval, not an exception."""
    fit = fit_rate(np.array([64]), [np.ones(4)])
    assert math.isnan(fit.slope) and math.isnan(fit.low) and math.isnan(fit.high)
    assert fit.num_widths == 1


def synthetic_results(seeds: int = 4) -> pd.DataFrame:
    """A results table with relu (err ∝ m^-0.5) and abs (err ∝ m^-1), depth 3, exact values."""
    rows = []
    for name, (a, b), power in (("relu", (0.5, 0.5), -0.5), ("abs", (0.0, 1.0), -1.0)):
        for m in WIDTHS[:4]:
            for seed in range(seeds):
                rows.append(
                    {
                        "activation": name,
                        "a": a,
                        "b": b,
                        "depth": 3,
                        "width": int(m),
                        "widths": f"{m}-{4 * m}",
                        "schedule": "quadratic",
                        "n": 6,
                        "in_dim": 4,
                        "out_dim": 1,
                        "sigma_w": 1.4142135623730951,
                        "sigma_b": 0.0,
                        "seed": seed,
                        "method": "structured",
                        "err_op": 2.0 * float(m) ** power,
                    }
                )
    return pd.DataFrame(rows)


def test_fit_table_one_row_per_curve() -> None:
    """Two activations → two rows, in order, with their keys, slopes and extremes."""
    fits = fit_table(synthetic_results())
    assert list(fits["activation"]) == ["relu", "abs"]
    assert set(CURVE_KEYS) <= set(fits.columns)
    relu, abs_ = fits.iloc[0], fits.iloc[1]
    assert relu["slope"] == pytest.approx(-0.5, abs=1e-12)
    assert abs_["slope"] == pytest.approx(-1.0, abs=1e-12)
    for row in (relu, abs_):
        assert row["ci_low"] == pytest.approx(row["slope"], abs=1e-12)
        assert row["ci_high"] == pytest.approx(row["slope"], abs=1e-12)
        assert (row["widths"], row["seeds"], row["m_min"], row["m_max"]) == (4, 4, 16, 128)
    assert relu["err_op_m_min"] == pytest.approx(2.0 / 4.0)
    assert abs_["err_op_m_max"] == pytest.approx(2.0 / 128.0)


def test_fit_table_separates_depths() -> None:
    """Every curve key splits curves: another depth is another row."""
    results = synthetic_results()
    deeper = results.assign(depth=4)
    fits = fit_table(pd.concat([results, deeper], ignore_index=True))
    assert len(fits) == 4
    assert sorted(zip(fits["activation"], fits["depth"], strict=True)) == [
        ("abs", 3),
        ("abs", 4),
        ("relu", 3),
        ("relu", 4),
    ]


def test_summary_markdown_has_a_row_per_curve() -> None:
    """summary.md: title, table header, and one table row per curve with its slope and CI."""
    text = summary_markdown(synthetic_results(), "my run")
    lines = text.splitlines()
    assert lines[0] == "# my run"
    header, *rows = table_rows(text)
    assert header[:2] == ["activation", "kernel"] and len(rows) == 2
    assert rows[0][:8] == ["relu", "ntk", "3", "1", "-0.500", "[-0.500, -0.500]", "16–128", "4"]
    assert rows[1][:8] == ["abs", "ntk", "3", "1", "-1.000", "[-1.000, -1.000]", "16–128", "4"]
    assert text.endswith("\n")


@pytest.mark.parametrize(
    ("preset", "expected"),
    [("relu", (4 + 3) * 2), ("abs", (1 + 3) * 1), ("leaky_relu(0)", (4 + 3) * 2), ("linear", math.inf)],
)
def test_theory_prefactor(preset: str, expected: float) -> None:
    """(Δ^-2 + √m_l·l)·κ² at depth 3, m_l = 1: relu 14, abs 4, linear ∞ (Δ = 0)."""
    act = Activation.preset(preset)
    assert theory_prefactor(act.delta, act.kappa, 1, 3) == pytest.approx(expected, rel=1e-12)


def test_theory_prefactor_scales_with_out_dim() -> None:
    """The √m_l·l term: m_l = 4 doubles it (relu, depth 3: (4 + 2·3)·2 = 20)."""
    act = Activation.preset("relu")
    assert theory_prefactor(act.delta, act.kappa, 4, 3) == pytest.approx(20.0, rel=1e-12)


def _table(activation: str, a: float, b: float, depth: int, widths: list[int], seeds: int) -> pd.DataFrame:
    rows = [
        {
            "activation": activation,
            "a": a,
            "b": b,
            "depth": depth,
            "out_dim": 1,
            "schedule": "quadratic",
            "n": 4,
            "in_dim": 3,
            "sigma_w": 1.0,
            "sigma_b": 0.0,
            "method": "structured",
            "kernel": "ntk",
            "width": m,
            "seed": s,
            "err_op": (1 + 0.1 * s) * m**-0.5,
        }
        for m in widths
        for s in range(seeds)
    ]
    return pd.DataFrame(rows)


def test_fits_say_what_they_cannot_say() -> None:
    """One width: no slope; one seed: no interval; depth 1: round-off, said so."""
    one_width = summary_markdown(_table("relu", 0.5, 0.5, 2, [16], 4))
    assert has_row(one_width, "relu", "ntk", "2", "1", "—", "—") and "at least two widths" in one_width
    one_seed = summary_markdown(_table("relu", 0.5, 0.5, 2, [16, 64], 1))
    assert table_rows(one_seed)[1][4:6] == ["-0.500", "— (one seed)"] and "at least two seeds" in one_seed
    depth_one = summary_markdown(_table("relu", 0.5, 0.5, 1, [16, 64], 2))
    assert "Depth 1 is a linear model" in depth_one


def test_theory_figure_skips_what_has_no_prefactor(tmp_path) -> None:
    """linear (Δ = 0: infinite prefactor) and depth 1 (round-off) give no point: no figure, no crash."""
    from ntksim.studies.concentration.plots import plot_all, plot_theory

    assert not plot_theory(_table("linear", 1.0, 0.0, 3, [16, 32], 2), tmp_path / "t.png")
    assert not plot_theory(_table("relu", 0.5, 0.5, 1, [16, 32], 2), tmp_path / "t.png")
    assert not (tmp_path / "t.png").exists()
    paths = plot_all(_table("linear", 1.0, 0.0, 3, [16, 32], 2), tmp_path / "figures")
    assert [p.name for p in paths] == ["err_op_depth3.png"]
    assert plot_theory(_table("relu", 0.5, 0.5, 3, [16, 32], 2), tmp_path / "t.png")


def test_theory_figure_uses_every_width_and_separates_out_dims(tmp_path) -> None:
    """The measured constant C is the median over widths of median(err_op)·√m (here exactly 1.05,
    from err_op = (1 + 0.1 s)·m^{-1/2} with seeds 0, 1), one panel per m_l."""
    from ntksim.studies.concentration.plots import plot_theory, theory_points

    table = pd.concat([_table("relu", 0.5, 0.5, d, [16, 64, 256], 2) for d in (2, 3, 4)], ignore_index=True)
    wide = _table("relu", 0.5, 0.5, 3, [16, 64], 2).assign(out_dim=4)
    points = theory_points(pd.concat([table, wide], ignore_index=True))
    assert len(points) == 4 and np.allclose(points["constant"], 1.05)
    assert sorted(points["out_dim"]) == [1, 1, 1, 4]
    assert plot_theory(pd.concat([table, wide], ignore_index=True), tmp_path / "t.png")
