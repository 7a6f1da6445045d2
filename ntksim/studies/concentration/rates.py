"""The concentration study's fitted rates: one slope of median err_op against m per curve, and
the summary table of them."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ntksim.analysis.fit import fit_rate, slope_text
from ntksim.analysis.tables import markdown_table

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


def summary_markdown(
    results: pd.DataFrame, title: str = "ntksim run", fits: pd.DataFrame | None = None
) -> str:
    """summary.md: the fitted rates per (activation, depth, …) with 95% bootstrap intervals."""
    fits = fit_table(results) if fits is None else fits  # the study's fits.csv, when given
    lines = [
        f"# {title}",
        "",
        "Fitted log–log slope of the median (over seeds) err_op = ‖K(θ) − K∞‖₂ against the base",
        "width m; 95% interval from a bootstrap over seeds. Theory (m_k = k²m): slope −0.5.",
        "",
    ]
    notes = set()
    rows = []
    for row in fits.itertuples():
        slope, interval = slope_text(row.slope, row.ci_low, row.ci_high, row.widths, row.seeds)
        if row.depth == 1:
            notes.add(DEPTH_ONE)
        if row.widths < 2:
            notes.add("A slope needs at least two widths.")
        if row.seeds < 2:
            notes.add("An interval needs at least two seeds (the bootstrap resamples seeds).")
        rows.append(
            [
                row.activation,
                row.kernel,
                row.depth,
                row.out_dim,
                slope,
                interval,
                f"{row.m_min}–{row.m_max}",
                row.seeds,
                f"{row.err_op_m_min:.4g}",
                f"{row.err_op_m_max:.4g}",
            ]
        )
    columns = [
        "activation",
        "kernel",
        "depth",
        "out_dim",
        "slope",
        "95% CI",
        "m range",
        "seeds",
        "median err_op at m_min",
        "at m_max",
    ]
    lines += markdown_table(columns, rows)
    if notes:
        lines += ["", *sorted(notes)]
    return "\n".join(lines) + "\n"


DEPTH_ONE = "Depth 1 is a linear model in its parameters: its eNTK equals the limit; err_op is round-off."
