"""The depth study: the limit kernel along depth at and off the Edge of Chaos (science.md, "Depth")."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ntksim import MLP, activation, chi, eoc, limit_ntk
from ntksim.engine.config import ConfigError
from ntksim.engine.loading import validate
from ntksim.engine.study import Memo
from ntksim.kernels.limits import pair_recursion
from ntksim.studies import depth as study

# The study computes in float64 (the CLI turns x64 on); the float32 pass checks only its config.
needs_x64 = pytest.mark.skipif(
    not __import__("jax").config.jax_enable_x64, reason="the study runs in float64"
)


def _curve(name: str, sigma_b: float, factor: float, max_depth: int = 1000, cosine: float = 0.5):
    config = validate(
        {
            "study": "depth",
            "activations": [name],
            "sigma_b": [sigma_b],
            "sigma_w_factors": [factor],
            "max_depth": max_depth,
            "cosines": [cosine],
        }
    )
    cell = study.expand(config)[0]
    import pandas as pd

    table = pd.DataFrame(study.compute(cell, Memo(config)), columns=study.COLUMNS)
    return table, study.rates(table).iloc[0]


@needs_x64
@pytest.mark.parametrize("name", ["relu", "abs", "leaky_relu(0.2)"])
def test_family_on_eoc_diagonal_is_exactly_l_times_q(name: str) -> None:
    act = activation(name)
    sigma_w = 1 / math.sqrt(act.second_moment)
    out = pair_recursion(act, sigma_w, 0.0, [1.0], [1.0], [0.3], 1000)
    q = sigma_w**2  # ⟨x,x⟩/m0 = 1
    # "exactly" up to one rounding per layer: 1000 sums in float64 (σ_w² itself is 2 ± 1 ulp)
    np.testing.assert_allclose(out["t11"][:, 0], q * np.arange(1, 1001), rtol=1000 * np.finfo(float).eps)


@needs_x64
@pytest.mark.parametrize(("name", "sigma_b"), [("tanh", 0.3), ("elu", 0.2), ("erf", 0.5)])
def test_rho_converges_at_rate_one_over_xi_c_off_eoc(name: str, sigma_b: float) -> None:
    """Ordered phase: 1 − ρ^l shrinks by χ per layer, χ computed independently from 1-D moments
    at the fixed point q*. Twin: the same fit is clearly off the χ of a different σ_w."""
    act = activation(name)
    _, fit = _curve(name, sigma_b, 0.8)
    expected = -math.log(chi(act, 0.8 * eoc(act, sigma_b).sigma_w, sigma_b))
    assert fit["phase"] == "ordered"
    assert fit["rho_rate"] == pytest.approx(expected, rel=0.01)
    other = -math.log(chi(act, 0.9 * eoc(act, sigma_b).sigma_w, sigma_b))
    assert abs(fit["rho_rate"] - other) > 0.1 * expected


@needs_x64
def test_normalised_ntk_vanishes_at_rate_ln_chi_in_the_chaotic_phase() -> None:
    act = activation("tanh")
    table, fit = _curve("tanh", 0.3, 1.25, max_depth=400)
    expected = math.log(chi(act, 1.25 * eoc(act, 0.3).sigma_w, 0.3))
    assert fit["phase"] == "chaotic" and fit["normalized_rate"] == pytest.approx(expected, rel=0.02)
    theta_off = table["theta_off"].to_numpy()
    assert np.all(np.isfinite(theta_off)) and abs(theta_off[-1] - theta_off[-50]) < 1e-6 * abs(theta_off[-1])


@needs_x64
def test_on_eoc_convergence_is_polynomial() -> None:
    """1 − ρ^l ~ l^-2 for ReLU, ~ l^-1 for tanh at σ_b > 0 (smooth φ)."""
    _, relu = _curve("relu", 0.0, 1.0)
    _, tanh = _curve("tanh", 0.3, 1.0)
    assert relu["rho_exponent"] == pytest.approx(2.0, abs=0.15)
    assert tanh["rho_exponent"] == pytest.approx(1.0, abs=0.1)
    assert relu["theta_diag_over_l_at_L"] == pytest.approx(2.0, rel=1e-12)  # Θ^l/l = q exactly


@needs_x64
@pytest.mark.parametrize(
    ("name", "sigma_b", "factor"), [("relu", 0.0, 1.0), ("tanh", 0.2, 0.9), ("elu", 0.1, 1.2)]
)
def test_limit_quantities_at_l_2_and_3_equal_limit_ntk(name: str, sigma_b: float, factor: float) -> None:
    table, _ = _curve(name, sigma_b, factor, max_depth=3)
    act = activation(name)
    sigma_w = factor * (1 / math.sqrt(act.second_moment) if name == "relu" else eoc(act, sigma_b).sigma_w)
    x = np.array([[1.0, 0.0, 0.0, 0.0], [0.5, math.sqrt(0.75), 0.0, 0.0]]) * 2.0  # radius √4, cosine 0.5
    for depth in (2, 3):
        net = MLP(activation=act, depth=depth, width=8, sigma_w=sigma_w, sigma_b=sigma_b or None)
        theta = np.asarray(limit_ntk(net, x)) * 2  # undo the 1/n
        row = table[table["depth"] == depth].iloc[0]
        np.testing.assert_allclose(
            [row["theta_diag"], row["theta_off"]], [theta[0, 0], theta[0, 1]], rtol=1e-11
        )
        assert row["rho"] < 1


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("sigma_w_factors", [0.8, -1], "sigma_w_factors.1: Input should be greater than 0"),
        ("cosines", [1.0], "cosines.0: Input should be less than 1"),
        ("max_depth", 1, "max_depth: Input should be greater than or equal to 2"),
        ("sigma_b", [-0.1], "sigma_b.0: Input should be greater than or equal to 0"),
        ("bogus", 1, "bogus: unknown key"),
        ("finite", {"depths": [0]}, "finite.depths.0: Input should be greater than 0"),
    ],
)
def test_bad_depth_config_is_one_line_naming_the_key(key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        validate({"study": "depth", "activations": ["relu"], key: value})
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_no_eoc_point_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"^activations\.0: .*gelu"):
        validate({"study": "depth", "activations": ["gelu"], "sigma_b": [0.0]})


@needs_x64
def test_recursion_off_the_diagonal_matches_monte_carlo_layer_by_layer() -> None:
    """Θ^3(x,x') of tanh by sampling each layer's Gaussian pair (2·10⁶ draws): independent of the
    quadrature the study uses. Twin: a 5% different σ_w is clearly outside the tolerance."""
    act = activation("tanh")
    sigma_b = 0.2
    sigma_w = 0.9 * eoc(act, sigma_b).sigma_w
    rng = np.random.default_rng(1)

    def sampled_theta3(w: float) -> float:
        sigma = w**2 * np.array([[1.0, 0.5], [0.5, 1.0]]) + sigma_b**2
        theta = sigma.copy()
        for _ in range(2):
            uv = rng.multivariate_normal(np.zeros(2), sigma, size=2_000_000)
            f, df = np.tanh(uv), 1 - np.tanh(uv) ** 2
            e_phi = np.array([[np.mean(f[:, i] * f[:, j]) for j in range(2)] for i in range(2)])
            e_dphi = np.array([[np.mean(df[:, i] * df[:, j]) for j in range(2)] for i in range(2)])
            sigma = w**2 * e_phi + sigma_b**2
            theta = sigma + w**2 * e_dphi * theta
        return float(theta[0, 1])

    out = pair_recursion(act, sigma_w, sigma_b, [1.0], [1.0], [0.5], 3)
    assert out["t12"][2, 0] == pytest.approx(sampled_theta3(sigma_w), rel=3e-3)
    other = pair_recursion(act, 0.95 * sigma_w, sigma_b, [1.0], [1.0], [0.5], 3)["t12"][2, 0]
    assert abs(other / out["t12"][2, 0] - 1) > 0.03


@needs_x64
def test_settings_that_break_the_generic_picture_say_why() -> None:
    _, relu = _curve("relu", 0.0, 0.8, max_depth=50)
    assert relu["remark"].startswith("homogeneous") and math.isnan(relu["rate_theory"])
    _, tanh = _curve("tanh", 0.0, 0.8, max_depth=50)
    assert tanh["remark"].startswith("q* = 0") and tanh["q_star"] == 0.0
    _, fine = _curve("tanh", 0.2, 0.8, max_depth=200)
    assert fine["remark"] == "" and fine["q_star"] > 0 and np.isfinite(fine["rate_theory"])


def test_repeated_cosines_are_one_pair_and_a_one_point_file_is_a_config_error(tmp_path) -> None:
    config = validate({"study": "depth", "activations": ["relu"], "cosines": [0.5, 0.5, 0.1]})
    assert config.cosines == [0.5, 0.1]
    np.save(tmp_path / "one.npy", np.ones((1, 3)))
    config = validate({"study": "depth", "activations": ["relu"], "cosines": [],
                       "data": {"kind": "file", "path": str(tmp_path / "one.npy")}})  # fmt: skip
    with pytest.raises(ConfigError, match=r"^data: the data file has fewer than 2 points"):
        study.expand(config)


def test_finite_cells_take_fast_compile_from_the_config_and_keep_their_ids_without_it() -> None:
    """`finite.ntk.fast_compile` reaches the concentration cells the depth study computes; off (or
    false) they are the cells of runs made before the key existed."""
    raw = {"study": "depth", "activations": ["relu"], "finite": {"depths": [2], "width": 8, "seeds": 2}}
    config = validate(raw)
    fast = validate(raw | {"finite": raw["finite"] | {"ntk": {"fast_compile": True}}})
    off = validate(raw | {"finite": raw["finite"] | {"ntk": {"fast_compile": False}}})
    inner = [
        [c.inner for c in study.expand(cfg) if isinstance(c, study.FiniteCell)] for cfg in (config, fast, off)
    ]
    assert inner[0] and all(not c.fast_compile for c in inner[0]) and all(c.fast_compile for c in inner[1])
    assert [c.cell_id for c in inner[0]] == [c.cell_id for c in inner[2]]
    assert {c.cell_id for c in inner[0]}.isdisjoint(c.cell_id for c in inner[1])


def test_finite_cells_that_differ_in_sigma_b_have_different_labels() -> None:
    """Issue 25, bug 11: the progress lines of two finite cells at σ_b = 0 and 0.2 read the same."""
    config = validate({"study": "depth", "activations": ["tanh"], "sigma_b": [0.0, 0.2], "max_depth": 4,
                       "finite": {"depths": [2], "width": 8, "seeds": 2}})  # fmt: skip
    labels = [c.label() for c in study.expand(config) if "finite" in c.label()]
    assert len(labels) == 2 and len(set(labels)) == 2 and any("σ_b=0.2" in label for label in labels)


# What tests/studies/test_study_runs.py runs of this study, as of every study: its shipped
# config made small (--set overrides), and the columns that order its rows.
SMALL_RUN = [
    "activations=[relu, tanh]",
    "sigma_b=[0.2]",
    "sigma_w_factors=[1.0, 0.8]",
    "max_depth=30",
    "finite.depths=[1, 3]",
    "finite.width=16",
    "finite.seeds=2",
]
ROW_KEYS = ["part", "activation", "sigma_w_factor", "pair", "depth", "seed"]
# key → (bad value, the key path the one-line message must start with)
BAD_VALUES = {
    "activations": ("nope", "activations.0:"),
    "sigma_b": ("x", "sigma_b.0:"),
    "sigma_w_factors": ([0], "sigma_w_factors.0:"),
    "max_depth": (100001, "max_depth:"),
    "cosines": ([-2], "cosines.0:"),
    "data": ({"kind": "cube"}, "data.kind:"),
    "finite": ({"depths": [2], "width": 0}, "finite.width:"),
    "finite.depths": ([-1], "finite.depths.0:"),
    "finite.schedule": ("cubic", "finite.schedule:"),
    "finite.seeds": (0, "finite.seeds:"),
    "finite.data": ({"n": 0}, "finite.data.n:"),
    "finite.ntk": ({"method": "x"}, "finite.ntk.method:"),
}
