"""The sample-path study: random networks' power spectra and increments against the NNGP."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import ntksim
from ntksim.data.sphere_grids import circle_grid, circle_power, grid_power, kernel_grid_power, sphere_grid
from ntksim.engine.loading import validate
from ntksim.engine.study import Memo
from ntksim.studies import sample_paths as study

needs_x64 = pytest.mark.skipif(
    not __import__("jax").config.jax_enable_x64, reason="the study's networks run in float64"
)


def _table(**keys: object) -> tuple[pd.DataFrame, object]:
    config = validate({"study": "sample_paths", **keys})
    memo = Memo(config)
    rows = [row for cell in study.expand(config) for row in study.compute(cell, memo)]
    return pd.DataFrame(rows, columns=study.COLUMNS), config


def test_power_on_the_circle_is_the_dft_and_the_sphere_grid_is_exact() -> None:
    _, x, w = circle_grid(48)
    f = np.random.default_rng(1).normal(size=(3, 48))
    np.testing.assert_allclose(grid_power(f, x, w, 20), circle_power(f, 20), atol=1e-15)
    x, w = sphere_grid(6)
    # Y ∝ P_2(z) has all its power at k = 2: ∫ P_2(z)² dσ = 1/5 over N(3, 2) = 5
    z = x[:, 2] / math.sqrt(3)
    power = grid_power((1.5 * z**2 - 0.5)[None], x, w, 6)[0]
    np.testing.assert_allclose(power, [0, 0, 1 / 25, 0, 0, 0, 0], atol=1e-15)


@needs_x64
@pytest.mark.parametrize("dim", [2, 3])
def test_depth_two_spectrum_matches_the_nngp_within_4_se_at_any_width(dim: int) -> None:
    """One hidden layer: E[f(x) f(x')] = Σ²(x, x') exactly at every width, so the power of the
    paths averages to the NNGP's grid mean whatever m; every compared k within 4 SE."""
    table, _ = _table(
        activations=["relu"],
        depths=[2],
        dims=[dim],
        widths=[32],
        seeds=64,
        out_dim=4,
        circle_points=256,
        circle_kmax=24,
        sphere_kmax=8,
        increments={"lags": [1, 2]},
        paths=0,
    )
    agreement = study.spectrum_agreement(table[table["part"] == "spectrum"])
    assert agreement["k_compared"].iloc[0] >= (13 if dim == 2 else 5)
    assert agreement["max_z"].iloc[0] < 4, agreement


@needs_x64
def test_wide_deep_networks_match_mu_k_and_a_wrong_kernel_is_caught() -> None:
    """Depth 3 at m = 1024: the paths' power matches the depth-3 μ_k within 4 SE; compared with
    the depth-4 kernel's μ_k instead, the same measurements fail (the test can fail)."""
    table, _ = _table(
        activations=["relu"],
        depths=[3],
        dims=[2],
        widths=[1024],
        seeds=32,
        out_dim=8,
        circle_points=256,
        circle_kmax=16,
        increments={"lags": [1, 2]},
        paths=0,
    )
    spectrum = table[table["part"] == "spectrum"]
    live = spectrum[spectrum["mu"].abs() > 1e-11]
    z = (live["power"] - live["mu"]) / live["power_se"]
    assert len(live) >= 9 and np.max(np.abs(z)) < 4, z
    wrong = ntksim.kernels.mercer.mercer_eigenvalues("relu", 4, 2, 16, "nngp")[live["k"].astype(int)]
    assert np.max(np.abs((live["power"] - wrong) / live["power_se"])) > 4


@needs_x64
def test_increments_show_the_kink_only_from_second_differences() -> None:
    """science.md's trap: first differences ∝ h² for relu, tanh and ELU alike; second and third
    differences ∝ h³ for relu (φ' jumps), h⁵ at third order for ELU, h⁴ and h⁶ for tanh."""
    table, _ = _table(
        activations=["relu", "tanh", "elu"],
        depths=[2],
        dims=[2],
        widths=[256],
        seeds=8,
        out_dim=4,
        circle_points=2048,
        circle_kmax=8,
        increments={"lags": [1, 2, 4, 8]},
        paths=0,
    )
    slopes = study.increment_slopes(table[table["part"] == "increment"])
    got = {(r.activation, r.order): r.measured for r in slopes.itertuples()}
    expected = {
        ("relu", 1): 2,
        ("relu", 2): 3,
        ("relu", 3): 3,
        ("tanh", 1): 2,
        ("tanh", 2): 4,
        ("tanh", 3): 6,
        ("elu(1)", 1): 2,
        ("elu(1)", 2): 4,
        ("elu(1)", 3): 5,
    }
    for key, value in expected.items():
        assert abs(got[key] - value) < 0.12, (key, got[key])
    assert (slopes["theory"] == [expected[(r.activation, r.order)] for r in slopes.itertuples()]).all()


def test_kernel_increment_is_the_gaussian_process_formula() -> None:
    """E|f(x+2h) − 2f(x+h) + f(x)|² = 6κ(1) − 8κ(cos h) + 2κ(cos 2h) for a stationary covariance."""

    def kappa(t: np.ndarray) -> np.ndarray:
        return np.exp(np.asarray(t))

    h = 0.3
    direct = 6 * math.e - 8 * math.exp(math.cos(h)) + 2 * math.exp(math.cos(2 * h))
    assert study.kernel_increment(kappa, 2, h) == pytest.approx(direct, rel=1e-13)
    assert study.kernel_increment(kappa, 1, h) == pytest.approx(
        2 * (math.e - math.exp(math.cos(h))), rel=1e-13
    )


def test_kernel_increment_below_its_round_off_is_nan_not_noise() -> None:
    """tanh's third difference at h = 3e-3 is ~1e-15·κ(1): below what the cancelling sum can
    resolve, so the kernel's value is left out (nan) instead of reported as round-off."""
    act = ntksim.activation("tanh")
    sigma_w, sigma_b = ntksim.resolve_sigmas(act)
    kappa = ntksim.kernels.mercer.kernel_function(act, 2, sigma_w, sigma_b, "nngp")
    assert math.isnan(study.kernel_increment(kappa, 3, 2 * math.pi / 2048))
    assert study.kernel_increment(kappa, 3, 0.1) > 0


def test_pair_polynomials_are_legendre_and_the_sphere_power_matches_funk_hecke() -> None:
    from scipy import special

    from ntksim.data.sphere_grids import _pair_polynomials

    x, _ = sphere_grid(3)
    t = np.clip(x @ x.T / 3, -1, 1)
    for k, p in enumerate(_pair_polynomials(x, 9)):
        np.testing.assert_allclose(p, special.eval_legendre(k, t), atol=1e-12)
    # the Gaussian-process mean of the power on the S² grid is Funk–Hecke's μ_k up to aliasing
    kappa = ntksim.kernels.mercer.kernel_function(ntksim.activation("relu"), 3, math.sqrt(2), 0.0, "nngp")
    mu = ntksim.mercer_eigenvalues("relu", 3, 3, 8, "nngp")
    x, w = sphere_grid(16)
    grid_mu = kernel_grid_power(kappa(np.clip(x @ x.T / 3, -1, 1)), x, w, 8)
    np.testing.assert_allclose(grid_mu, mu, rtol=1e-2)


# What tests/studies/test_study_runs.py runs of this study, as of every study: its shipped
# config made small (--set overrides), and the columns that order its rows.
SMALL_RUN = [
    "activations=[relu, tanh]",
    "depths=[2]",
    "widths=[16, 32]",
    "seeds=4",
    "out_dim=2",
    "circle_points=64",
    "circle_kmax=8",
    "sphere_kmax=4",
    "increments.lags=[1, 2]",
    "paths=1",
]
ROW_KEYS = ["part", "activation", "depth", "dim", "width", "k", "order", "lag", "output", "angle"]
# key → (bad value, the key path the one-line message must start with)
BAD_VALUES = {
    "activations": (["gelu"], "activations.0: gelu has no Edge-of-Chaos point"),
    "dims": ([4], "dims.0:"),
    "widths": ([0], "widths.0:"),
    "seeds": (1, "seeds:"),
    "circle_points": (8, "circle_points:"),
    "circle_kmax": (600, "circle_kmax: must be below"),
    "sphere_kmax": (-1, "sphere_kmax:"),
    "increments": ({"lags": [0, 1]}, "increments.lags.0:"),
    "paths": (20, "paths:"),
    "sigma_w": (0.0, "sigma_w:"),
}
