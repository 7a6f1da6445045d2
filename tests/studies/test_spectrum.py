"""The spectrum study: decay exponents, exact zeros and polynomial counts (science.md, "Spectrum
and smoothness on the sphere"). The eigenvalues themselves are tested in tests/kernels/test_mercer.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ntksim.engine.loading import validate
from ntksim.engine.study import Memo
from ntksim.studies import spectrum as study
from tests.markdown import has_row


def _table(**keys: object) -> tuple[pd.DataFrame, object]:
    config = validate({"study": "spectrum", **keys})
    memo = Memo(config)
    rows = [row for cell in study.expand(config) for row in study.compute(cell, memo)]
    return pd.DataFrame(rows, columns=study.COLUMNS), config


def _fits(**keys: object) -> pd.DataFrame:
    table, config = _table(**keys)
    return study.fits(table, *config.fit_range, config.fit.min_relative)


@pytest.mark.parametrize(
    ("name", "dim", "ntk", "nngp"),
    [
        ("relu", 3, 3, 5),
        ("abs", 3, 3, 5),
        ("selu", 3, 3, 5),
        ("elu", 3, 5, 7),
        ("relu", 2, 2, 4),
        ("elu", 2, 4, 6),
        ("relu", 5, 5, 7),
    ],
)
def test_decay_exponent_is_set_by_the_kink_at_every_depth(name: str, dim: int, ntk: int, nngp: int) -> None:
    """φ' jumps: NTK s = d, NNGP d + 2; φ'' jumps (ELU): two more — at depth 3 and 6 alike, both
    parities (abs: even only). A wrong d or kink order is off by ≥ 1; allowed: 0.08 (0.15 at d = 5,
    where k ≤ 160 is less asymptotic: science.md's "more so as d grows")."""
    tolerance = 0.08 if dim <= 3 else 0.15
    fitted = _fits(activations=[name], depths=[3, 6], dims=[dim], kmax=160, fit={"k_min": 20})
    for row in fitted.itertuples():
        if name == "abs" and row.parity == "odd":
            assert row.points == 0  # every odd μ_k is an exact zero
            continue
        expected = ntk if row.kernel == "ntk" else nngp
        assert row.s_theory == expected
        assert abs(row.s - expected) < tolerance, row


def test_depth_two_parity_finding_is_reported() -> None:
    """Without bias, depth 2 of a kinked φ outside the family has one parity decaying two powers
    faster (SELU: odd k, ELU: even k); from depth 3 on both follow science.md's s."""
    fitted = _fits(activations=["selu", "elu"], depths=[2, 3], dims=[3], kernels=["ntk"], kmax=160)
    s = {(r.activation, r.depth, r.parity): r.s for r in fitted.itertuples()}
    assert abs(s[("selu", 2, "even")] - 3) < 0.08 and abs(s[("selu", 2, "odd")] - 5) < 0.08
    assert abs(s[("elu(1)", 2, "odd")] - 5) < 0.08 and abs(s[("elu(1)", 2, "even")] - 7) < 0.1
    assert all(abs(s[(a, 3, p)] - t) < 0.08 for a, t in (("selu", 3), ("elu(1)", 5)) for p in ("even", "odd"))


def test_smooth_activation_decays_faster_than_any_power() -> None:
    fitted = _fits(activations=["tanh"], depths=[3], dims=[3], kernels=["ntk"], kmax=60, fit={"k_min": 5})
    odd = next(r for r in fitted.itertuples() if r.parity == "odd")
    even = next(r for r in fitted.itertuples() if r.parity == "even")
    assert even.points == 0  # tanh is odd: no even μ_k
    assert odd.s_high > odd.s_low + 3  # the local exponent keeps growing
    assert "faster than a power" in study._s_text(odd)


def test_zeros_are_reported_as_zeros() -> None:
    table, _ = _table(activations=["relu", "abs"], depths=[2], dims=[3], kernels=["ntk"], kmax=40)
    relu = table[table["activation"] == "relu"].set_index("k")
    abs_ = table[table["activation"] == "abs"].set_index("k")
    assert relu.loc[1, "zero"] == False and all(relu.loc[k, "zero"] for k in range(3, 41, 2))  # noqa: E712
    assert not any(relu.loc[k, "zero"] for k in range(0, 41, 2))
    assert all(abs_.loc[k, "zero"] for k in range(1, 41, 2))
    assert (table["multiplicity"] == 2 * table["k"] + 1).all()


def test_polynomial_counts_in_the_summary() -> None:
    table, config = _table(
        activations=["monomial(2)", "linear"],
        sigma_w={"monomial(2)": 1.0},
        depths=[2, 3, 4],
        dims=[3],
        kmax=40,
    )
    fitted = study.fits(table, *config.fit_range)
    counts = fitted[(fitted["parity"] == "even") & (fitted["activation"] == "monomial(2)")]
    assert dict(zip(counts["depth"], counts["nonzero_all_k"], strict=True)) == {2: 2, 3: 3, 4: 5}
    assert (fitted[fitted["activation"] == "linear"]["nonzero_all_k"] == 1).all()
    summary = study.summarize(table, config)
    assert has_row(summary, "monomial(2)", "0", "3", "ntk", "4", "8", "5", "5")


def test_trace_column_is_kappa_at_one() -> None:
    table, _ = _table(activations=["relu"], depths=[4], dims=[3], kernels=["ntk", "nngp"], kmax=4)
    ntk = table[table["kernel"] == "ntk"]["trace"].iloc[0]
    nngp = table[table["kernel"] == "nngp"]["trace"].iloc[0]
    # relu at the EOC (σ_w² = 2, ‖x‖² = d): q = Σ^l(x, x) = 2 at every layer, Θ^l(x, x) = l·q
    assert nngp == pytest.approx(2.0, rel=1e-14) and ntk == pytest.approx(8.0, rel=1e-14)


def test_one_recursion_serves_every_depth() -> None:
    """Cells share the per-process memo: depth 3 computed alone equals depth 3 of a sweep to 10."""
    alone, _ = _table(activations=["tanh"], depths=[3], dims=[3], kernels=["ntk"], kmax=30)
    swept, _ = _table(activations=["tanh"], depths=[3, 10], dims=[3], kernels=["ntk"], kmax=30)
    np.testing.assert_array_equal(alone["mu"].to_numpy(), swept[swept["depth"] == 3]["mu"].to_numpy())


# What tests/studies/test_study_runs.py runs of this study, as of every study: its shipped
# config made small (--set overrides), and the columns that order its rows.
SMALL_RUN = ["activations=[relu, elu, monomial(2)]", "depths=[2, 3]", "dims=[3]", "kmax=40", "fit.k_min=10"]
ROW_KEYS = ["activation", "kernel", "dim", "depth", "k"]
# key → (bad value, the key path the one-line message must start with)
BAD_VALUES = {
    "activations": (["gelu"], "activations.0: gelu has no Edge-of-Chaos point"),
    "depths": ([0], "depths.0:"),
    "kernels": (["ntkk"], "kernels.0:"),
    "dims": ([1], "dims.0:"),
    "kmax": (-1, "kmax:"),
    "fit": ({"k_min": 0}, "fit.k_min:"),
    "fit.k_max": ({"k_max": 500}, "fit.k_max: must be at most kmax"),
    "sigma_w": ({"tanhh": 1.0}, "sigma_w: 'tanhh' is not an activation name"),
    "sigma_b": ([-0.1], "sigma_b.0:"),
    "nodes": (2, "nodes:"),
}
