"""Fitted power-law rates: log–log slopes with bootstrap intervals over seeds."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RateFit:
    """slope of log2(median err_op) vs log2(m), and its bootstrap 95% interval over seeds."""

    slope: float
    low: float
    high: float
    num_widths: int


def _ls_slope(logm: np.ndarray, logy: np.ndarray) -> np.ndarray:
    """Least-squares slopes; logm (W,), logy (..., W) → (...)."""
    xc = logm - logm.mean()
    return ((logy - logy.mean(axis=-1, keepdims=True)) * xc).sum(axis=-1) / (xc**2).sum()


def fit_rate(widths: np.ndarray, errors: list[np.ndarray], num_boot: int = 2000, seed: int = 0) -> RateFit:
    """Fit err_op ∝ m^slope through the medians over seeds.

    Args:
      widths: (W,) distinct m values.
      errors: W arrays, the err_op of each seed at that m (lengths may differ).
    The interval resamples seeds with replacement independently at each m.
    """
    widths = np.asarray(widths, dtype=float)
    if len(widths) < 2:
        return RateFit(float("nan"), float("nan"), float("nan"), len(widths))
    logm = np.log2(widths)
    medians = np.array([np.median(e) for e in errors])
    slope = float(_ls_slope(logm, np.log2(medians)))
    rng = np.random.default_rng(seed)
    boot = np.stack(
        [np.median(e[rng.integers(0, len(e), (num_boot, len(e)))], axis=1) for e in errors], axis=-1
    )  # (B, W)
    slopes = _ls_slope(logm, np.log2(boot))
    low, high = np.percentile(slopes, [2.5, 97.5])
    return RateFit(slope, float(low), float(high), len(widths))


def slope_text(slope: float, low: float, high: float, widths: int, seeds: int) -> tuple[str, str]:
    """The slope and its interval as printed: "—" where a fit cannot say anything (one width: no
    slope; one seed: no interval, the bootstrap has nothing to resample)."""
    if widths < 2 or not np.isfinite(slope):
        return "—", "—"
    if seeds < 2:
        return f"{slope:.3f}", "— (one seed)"
    return f"{slope:.3f}", f"[{low:.3f}, {high:.3f}]"


def log_slope(x: np.ndarray, y: np.ndarray, log_x: bool) -> float:
    """Least-squares slope of ln y against x (exponential rate per unit x) or against ln x
    (power-law exponent); nan with fewer than 3 usable points (y > 0 and finite)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y) & (y > 0) & (x > 0 if log_x else True)
    if ok.sum() < 3:
        return float("nan")
    return float(_ls_slope(np.log(x[ok]) if log_x else x[ok], np.log(y[ok])))
