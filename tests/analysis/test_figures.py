"""Figure layout (issue 25, "Figures"): panel grids without empty rows, legends beside the panels
instead of over their curves, a readable axis for a panel of a single eigenvalue."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from ntksim.analysis.figures import panel_grid
from ntksim.studies.positivity.plots import _style_legend
from ntksim.studies.spectrum.plots import _few_eigenvalues
from ntksim.studies.training.plots import _figure_legend

GRIDS = [(1, (1, 1)), (4, (1, 4)), (5, (2, 3)), (6, (2, 3)), (7, (2, 4)), (8, (2, 4)), (9, (3, 3))]


@pytest.mark.parametrize(("count", "shape"), GRIDS)
def test_panel_grids_leave_few_empty_slots(count: int, shape: tuple[int, int]) -> None:
    """Nine panels were drawn on 4×3 (three empty slots): 3 or 4 a row, whichever leaves fewer."""
    fig, axes = panel_grid(count)
    assert axes.shape == shape
    assert sum(ax.get_visible() for ax in axes.flat) == count
    plt.close(fig)


def test_a_panel_of_one_eigenvalue_gets_two_decades_and_says_so() -> None:
    """The `linear` panel: only μ_1 ≠ 0, so a log axis had a degenerate range (no ticks, the frame
    running into the next row)."""
    fig, ax = plt.subplots()
    ax.set_yscale("log")
    ax.plot([1], [1 / 3])
    _few_eigenvalues(ax, pd.DataFrame({"k": [1, 1], "mu": [1.0, 1.0], "trace": [3.0, 3.0]}))
    low, high = ax.get_ylim()
    assert low == pytest.approx(1 / 30) and high == pytest.approx(10 / 3)
    assert [t.get_text() for t in ax.texts] == ["μ_k ≠ 0 only for k = 1"]
    many = pd.DataFrame({"k": [1, 2, 3, 4], "mu": [1.0, 0.5, 0.2, 0.1], "trace": [1.0] * 4})
    fig2, ax2 = plt.subplots()
    _few_eigenvalues(ax2, many)  # a spectrum: left to matplotlib
    assert not ax2.texts
    plt.close(fig)
    plt.close(fig2)


def test_legends_go_beside_the_panels() -> None:
    """positivity's and training's legends were drawn inside the first panel, over its lines."""
    fig, axes = panel_grid(2)
    _style_legend(axes.flat[0], {"relu": "C0", "abs": "C1"}, [0.0, 0.1])
    assert len(fig.legends) == 1 and all(ax.get_legend() is None for ax in axes.flat)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["relu", "abs", "σ_b = 0 (no bias)", "σ_b = 0.1"]
    plt.close(fig)
    fig, axes = panel_grid(2)
    for ax in axes.flat:  # the same entries in every panel: listed once
        ax.plot([1, 2], [1, 2], label="network (test)")
    axes.flat[1].plot([1, 2], [2, 1], label="limit (test)")
    _figure_legend(fig, axes)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["network (test)", "limit (test)"]
    plt.close(fig)


def test_a_phase_diagram_of_curves_alone_is_drawn(tmp_path) -> None:
    """`ntksim plot` of a partial depth run whose EOC-curve cells finished first (no limit rows):
    the axis range must not come from an empty table (NaN limits raised)."""
    from ntksim.studies.depth.plots import plot_depth_phase_diagram

    curves = pd.DataFrame(
        {"activation": ["tanh"] * 3, "sigma_b": [0.0, 0.5, 1.0], "sigma_w": [1.0, 1.2, 1.4]}
    )
    limit = pd.DataFrame(columns=["activation", "sigma_b", "sigma_w", "sigma_w_factor", "phase", "xi_c"])
    plot_depth_phase_diagram(curves, limit, tmp_path / "phase.png")
    assert (tmp_path / "phase.png").stat().st_size > 0


def test_a_phase_diagram_with_no_eoc_point_says_so(monkeypatch, tmp_path) -> None:
    """`ntksim eoc softplus` drew an empty frame over σ_b ∈ [0, 0.055] with only a legend entry."""
    import numpy as np

    from ntksim.analysis import phase_diagram as plots

    drawn = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: drawn.append(fig))
    grid = np.linspace(0, 1, 5)
    plots.plot_phase_diagram({"softplus": (grid, np.full(5, np.nan), np.full(5, np.nan))}, tmp_path / "p.png")
    (ax,) = drawn[0].axes
    assert ax.get_xlim() == (0.0, 1.0)
    assert any("no Edge-of-Chaos point" in t.get_text() and "softplus" in t.get_text() for t in ax.texts)
    plt.close(drawn[0])
