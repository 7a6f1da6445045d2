"""Fitted concentration rates: log–log slope of median err_op against m, with bootstrap CIs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

# Columns that identify one curve err_op(m) in results.csv.
CURVE_KEYS = [
    "activation",
    "a",
    "b",
    "depth",
    "out_dim",
    "schedule",
    "n",
    "in_dim",
    "sigma_w",
    "sigma_b",
    "method",
    "kernel",
]


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


def fit_table(results: pd.DataFrame) -> pd.DataFrame:
    """One row per curve: its keys, fitted slope with CI, and median err_op at the extreme m."""
    rows = []
    if "kernel" not in results.columns:  # tables from before the NNGP measured the NTK
        results = results.assign(kernel="ntk")
    for keys, group in results.groupby(CURVE_KEYS, sort=False, dropna=False):
        by_width = sorted(group.groupby("width")["err_op"])
        widths = np.array([w for w, _ in by_width])
        errors = [e.to_numpy() for _, e in by_width]
        fit = fit_rate(widths, errors)
        rows.append(
            dict(
                zip(CURVE_KEYS, keys, strict=True),
                slope=fit.slope,
                ci_low=fit.low,
                ci_high=fit.high,
                widths=len(widths),
                seeds=int(group["seed"].nunique()),
                m_min=int(widths.min()),
                m_max=int(widths.max()),
                err_op_m_min=float(np.median(errors[0])),
                err_op_m_max=float(np.median(errors[-1])),
            )
        )
    return pd.DataFrame(rows)


def summary_markdown(results: pd.DataFrame, title: str = "ntksim run") -> str:
    """summary.md: the fitted rates per (activation, depth, …) with 95% bootstrap intervals."""
    fits = fit_table(results)
    lines = [
        f"# {title}",
        "",
        "Fitted log–log slope of the median (over seeds) err_op = ‖K(θ) − K∞‖₂ against the base",
        "width m; 95% interval from a bootstrap over seeds. Theory (m_k = k²m): slope −0.5.",
        "",
        "| activation | kernel | depth | out_dim | slope | 95% CI | m range | seeds "
        "| median err_op at m_min | at m_max |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    notes = set()
    for row in fits.itertuples():
        slope, interval = slope_text(row.slope, row.ci_low, row.ci_high, row.widths, row.seeds)
        if row.depth == 1:
            notes.add(DEPTH_ONE)
        if row.widths < 2:
            notes.add("A slope needs at least two widths.")
        if row.seeds < 2:
            notes.add("An interval needs at least two seeds (the bootstrap resamples seeds).")
        lines.append(
            f"| {row.activation} | {row.kernel} | {row.depth} | {row.out_dim} | {slope} | {interval} | "
            f"{row.m_min}–{row.m_max} | {row.seeds} | {row.err_op_m_min:.4g} | {row.err_op_m_max:.4g} |"
        )
    if notes:
        lines += ["", *sorted(notes)]
    return "\n".join(lines) + "\n"


DEPTH_ONE = "Depth 1 is a linear model in its parameters: its eNTK equals the limit; err_op is round-off."


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
