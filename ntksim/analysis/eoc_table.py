"""The table behind `ntksim eoc`: each activation's Edge-of-Chaos point (σ_w, q*, V'(q*)) per σ_b,
and its EOC curve σ_w(σ_b) for the phase diagram."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ntksim.activations import AnyActivation
from ntksim.activations.eoc import NoEOCPoint, eoc, eoc_curve
from ntksim.analysis.tables import markdown_table

EOC_SIGMA_B = (0.0, 0.1, 0.2, 0.5)
EOC_CURVE_POINTS = 81  # σ_b grid of the phase diagram, 0 … 1


def eoc_table(
    activations: Sequence[AnyActivation], sigma_bs: Sequence[float], explicit: bool
) -> pd.DataFrame:
    """One row per (activation, σ_b): the EOC point, or NaN where there is none, with σ_w and
    V'(q*) of an unstable fixed point where χ = 1 holds only there. explicit: σ_b values the user
    asked for, where a missing EOC point is an error (NoEOCPoint) rather than a NaN row."""
    rows = []
    for act in activations:
        for sigma_b in sigma_bs:
            try:
                point = eoc(act, sigma_b)
            except NoEOCPoint:
                if explicit:
                    raise
                point = None
            try:  # where there is no stable point, say whether χ = 1 holds at an unstable one
                unstable = None if point else eoc(act, sigma_b, allow_unstable=True)
            except NoEOCPoint:
                unstable = None
            rows.append(
                {
                    "activation": act.name,
                    "sigma_b": sigma_b,
                    "sigma_w": point.sigma_w if point else float("nan"),
                    "q_star": point.q_star if point else float("nan"),
                    "variance_slope": point.variance_slope if point else float("nan"),
                    "unstable_sigma_w": unstable.sigma_w if unstable else float("nan"),
                    "unstable_slope": unstable.variance_slope if unstable else float("nan"),
                }
            )
    return pd.DataFrame(rows)


def table_markdown(table: pd.DataFrame) -> str:
    """The table as Markdown, one line per row, saying where there is no (stable) EOC point."""
    rows = []
    for r in table.itertuples():
        if np.isfinite(r.unstable_sigma_w):
            unstable = f"no stable EOC point (χ = 1 at σ_w = {r.unstable_sigma_w:.6g}, unstable)"
            rows.append([r.activation, f"{r.sigma_b:g}", unstable, "—", f"{r.unstable_slope:.4g}"])
        elif np.isnan(r.sigma_w):
            rows.append([r.activation, f"{r.sigma_b:g}", "no EOC point", "—", "—"])
        else:
            q = "any (the family's variance map is the identity)" if np.isnan(r.q_star) else f"{r.q_star:.6g}"
            rows.append([r.activation, f"{r.sigma_b:g}", f"{r.sigma_w:.6g}", q, f"{r.variance_slope:.4g}"])
    return "\n".join(markdown_table(["activation", "σ_b", "σ_w", "q*", "V'(q*)"], rows))


def eoc_curves(activations: Sequence[AnyActivation]) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """name → (σ_b grid (P,), σ_w of stable EOC points (P,), σ_w where χ = 1 only at an unstable
    fixed point (P,)), NaN where there is none; the grid is dense near σ_b = 0, where curves bend."""
    grid = np.linspace(0.0, 1.0, EOC_CURVE_POINTS) ** 2
    curves = {}
    for act in activations:
        points = eoc_curve(act, grid, allow_unstable=True)
        curves[act.name] = (
            grid,
            np.array([p.sigma_w if p and p.stable else np.nan for p in points]),
            np.array([p.sigma_w if p and not p.stable else np.nan for p in points]),
        )
    return curves


def curve_table(curves: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]) -> pd.DataFrame:
    """The curves as rows (activation, σ_b, σ_w, stable), points without χ = 1 left out."""
    return pd.DataFrame(
        [
            {
                "activation": name,
                "sigma_b": b,
                "sigma_w": w if np.isfinite(w) else u,
                "stable": bool(np.isfinite(w)),
            }
            for name, (bs, ws, us) in curves.items()
            for b, w, u in zip(bs, ws, us, strict=True)
            if np.isfinite(w) or np.isfinite(u)
        ]
    )


def write(
    out: Path, table: pd.DataFrame, curves: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]
) -> list[Path]:
    """eoc.csv, eoc_curves.csv and the phase diagram (in every current figure format) in `out`;
    the paths written, the figure's as phase_diagram.png."""
    from ntksim.analysis.phase_diagram import plot_phase_diagram

    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "eoc.csv", out / "eoc_curves.csv", out / "phase_diagram.png"]
    table.to_csv(paths[0], index=False)
    curve_table(curves).to_csv(paths[1], index=False)
    plot_phase_diagram(curves, paths[2])
    return paths
