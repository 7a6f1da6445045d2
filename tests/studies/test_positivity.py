"""The positivity study: λ_min and rank of limit Gram matrices (science.md, "Positivity")."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ntksim import activation
from ntksim.analysis.metrics import gram_spectrum
from ntksim.engine.config import ConfigError
from ntksim.engine.loading import validate
from ntksim.engine.study import Memo
from ntksim.studies import positivity as study

needs_x64 = pytest.mark.skipif(
    not __import__("jax").config.jax_enable_x64, reason="the study runs in float64"
)


def _config(**keys: object):
    return validate({"study": "positivity", "activations": ["relu"], **keys})


def _limit(
    name: str,
    n: int,
    depth: int = 2,
    sigma_b: float = 0.0,
    antipodal: bool = False,
    dim: int = 3,
    kernel: str = "ntk",
    sigma_w: float | None = 1.0,
):
    config = _config(
        activations=[name],
        depths=[depth],
        sigma_b=[sigma_b],
        ns=[n],
        antipodal=[antipodal],
        kernels=[kernel],
        sigma_w=sigma_w,
        data={"dim": dim},
    )
    cell = study.expand(config)[0]
    return study.compute(cell, Memo(config))[0]


@needs_x64
@pytest.mark.parametrize("dim", [3, 5])
@pytest.mark.parametrize("depth", [2, 3])
def test_linear_phi_gram_has_rank_m0_and_m0_plus_1_with_bias(dim: int, depth: int) -> None:
    for kernel in ("ntk", "nngp"):
        assert _limit("linear", 16, depth, 0.0, dim=dim, kernel=kernel)["rank"] == dim
        assert _limit("linear", 16, depth, 0.3, dim=dim, kernel=kernel)["rank"] == dim + 1


@needs_x64
@pytest.mark.parametrize("depth", [2, 3])
def test_abs_without_bias_is_singular_on_antipodal_pairs(depth: int) -> None:
    row = _limit("abs", 8, depth, 0.0, antipodal=True)
    assert row["at_floor"] and row["rank"] == 4  # x and −x have identical features
    with_bias = _limit("abs", 8, depth, 0.2, antipodal=True)
    assert not with_bias["at_floor"] and with_bias["lambda_min"] > 1e6 * with_bias["floor"]


@needs_x64
@pytest.mark.parametrize("name", ["relu", "abs", "tanh", "elu", "gelu", "sin"])
@pytest.mark.parametrize("depth", [2, 3])
def test_non_polynomial_phi_is_strictly_positive_on_distinct_sphere_points(name: str, depth: int) -> None:
    row = _limit(name, 12, depth, 0.1, sigma_w=1.2)
    assert row["rank"] == 12 and not row["at_floor"]
    assert row["lambda_min"] > 1e3 * row["floor"]


@needs_x64
def test_polynomial_rank_is_the_dimension_of_spherical_harmonics_it_spans() -> None:
    """s² without bias at depth 2: Θ is a polynomial in t = ⟨x,x'⟩/m₀ with only t⁰ and t²: on
    S² that spans the harmonics of degree 0 and 2 (1 + 5 = 6), below science.md's bound C(3+2, 3) = 10.
    Depth 3 (degree 4, even): 1 + 5 + 9 = 15 ≤ 35; with bias all degrees ≤ 4: 25."""
    two = _limit("monomial(2)", 32, 2)
    assert (two["rank"], two["rank_bound"]) == (6, 10)
    assert _limit("monomial(2)", 48, 3)["rank"] == 15
    assert _limit("monomial(2)", 48, 3, sigma_b=0.3)["rank"] == 25
    assert _limit("monomial(2)", 48, 3, sigma_b=0.3)["rank_bound"] == math.comb(3 + 4, 3)


@needs_x64
def test_affine_polynomial_counts_phi_of_0_as_a_constant() -> None:
    """φ(s) = 1 + s without bias: φ(0) = 1 acts as a bias, so the rank is m₀ + 1, as the bound says."""
    config = _config(activations=[{"preset": "polynomial", "coefficients": [1.0, 1.0]}], depths=[3],
                     sigma_b=[0.0], ns=[16], sigma_w=1.0)  # fmt: skip
    rows = [study.compute(cell, Memo(config))[0] for cell in study.expand(config)]
    assert [(r["rank"], r["rank_bound"]) for r in rows] == [(4, 4.0), (4, 4.0)]  # NTK and NNGP


def test_repeated_settings_are_counted_once() -> None:
    config = _config(ns=[8, 4, 8], depths=[2, 2], sigma_b=[0.1, 0.1])
    assert (config.ns, config.depths, config.sigma_b) == ([4, 8], [2], [0.1])


def test_gram_spectrum_flags_the_floor_and_counts_rank() -> None:
    rng = np.random.default_rng(0)
    basis = rng.standard_normal((10, 4))
    singular = basis @ basis.T  # rank 4
    out = gram_spectrum(singular)
    assert out["rank"] == 4 and out["at_floor"]
    regular = singular + 1e-3 * np.eye(10)
    out = gram_spectrum(regular)
    assert out["rank"] == 10 and not out["at_floor"] and out["lambda_min"] == pytest.approx(1e-3, rel=1e-6)


@needs_x64
@pytest.mark.slow
def test_empirical_lambda_min_approaches_the_limit_as_width_grows() -> None:
    config = _config(
        activations=["tanh"],
        depths=[2],
        sigma_b=[0.1],
        ns=[6],
        kernels=["ntk"],
        finite={"widths": [16, 1024], "n": 6, "seeds": 8},
    )
    memo = Memo(config)
    cells = [c for c in study.expand(config) if isinstance(c, study.FiniteCell)]
    narrow, wide = (study.compute(c, memo) for c in cells)
    diff = [np.median([r["abs_diff"] for r in rows]) for rows in (narrow, wide)]
    assert diff[1] < diff[0] / 3  # 64× the width: about 8× smaller
    for rows in (narrow, wide):  # Weyl: |Δλ_min| ≤ ‖Gram − Gram∞‖₂
        assert all(r["abs_diff"] <= r["err_op"] * (1 + 1e-9) for r in rows)
    # the study's limit Gram is the public limit_ntk's, without its 1/n, at the EOC σ_w
    from ntksim import MLP, eoc, limit_ntk

    x = study.points(config.data, 6, False, 6)
    net = MLP(activation="tanh", depth=2, width=1, sigma_w=eoc(activation("tanh"), 0.1).sigma_w, sigma_b=0.1)
    expected = np.linalg.eigvalsh(np.asarray(limit_ntk(net, x)) * 6)[0]
    assert wide[0]["lambda_min_limit"] == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"ns": [4, 7], "antipodal": [True]}, "ns: antipodal sets {x, −x} need even n"),
        (
            {"antipodal": [True], "finite": {"widths": [8], "n": 7}},
            "finite.n: antipodal sets {x, −x} need an even n",
        ),
        ({"ns": [1]}, "ns.0: Input should be greater than or equal to 2"),
        ({"data": {"n": 8}}, "data.n: the numbers of points are `ns`"),
        ({"finite": {"widths": [8], "n": 100}}, "finite.n: must be at most max(ns) = 64"),
        ({"kernels": ["ntk", "gp"]}, "kernels.1: Input should be 'ntk' or 'nngp'"),
        ({"floor_factor": 0.5}, "floor_factor: Input should be greater than or equal to 1"),
        ({"depths": [0]}, "depths.0: Input should be greater than or equal to 1"),
        ({"activations": ["monomial(2)"]}, "activations.0:"),
    ],
)
def test_bad_positivity_config_is_one_line_naming_the_key(keys: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        _config(**keys)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


# What tests/studies/test_study_runs.py runs of this study, as of every study: its shipped
# config made small (--set overrides), and the columns that order its rows.
SMALL_RUN = [
    "activations=[abs, linear]",
    "depths=[2]",
    "sigma_b=[0.0]",
    "ns=[4, 8]",
    "antipodal=[false, true]",
    "finite.widths=[8, 32]",
    "finite.n=4",
    "finite.seeds=2",
]
ROW_KEYS = ["part", "activation", "kernel", "antipodal", "n", "width", "seed"]
# key → (bad value, the key path the one-line message must start with)
BAD_VALUES = {
    "activations": ([], "activations:"),
    "depths": ([101], "depths.0:"),
    "sigma_w": (-1.0, "sigma_w:"),
    "sigma_b": ([-1.0], "sigma_b.0:"),
    "ns": ([5000], "ns.0:"),
    "antipodal": (["maybe"], "antipodal.0:"),
    "kernels": (["x"], "kernels.0:"),
    "floor_factor": ("big", "floor_factor:"),
    "data": ({"dim": 0}, "data.dim:"),
    "finite": ({"widths": []}, "finite.widths:"),
    "finite.n": (0, "finite.n:"),
    "finite.seeds": (-2, "finite.seeds:"),
    "finite.method": ("x", "finite.method:"),
    "finite.dtype": ("float16", "finite.dtype:"),
}
