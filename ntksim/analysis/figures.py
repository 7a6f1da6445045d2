"""What every study's figures share: colours, panel grids, and saving in the chosen formats."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextvars import ContextVar
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import NullFormatter

from ntksim.analysis.files import atomic_write


def activation_colors(results: pd.DataFrame) -> dict[str, tuple]:
    names = list(dict.fromkeys(results["activation"]))
    cmap = plt.get_cmap("tab10")
    return {name: cmap(i % 10) for i, name in enumerate(names)}


def panel_grid(count: int, width: float = 4.2, height: float = 3.6) -> tuple[plt.Figure, np.ndarray]:
    """A figure with `count` panels, 3 or 4 a row (whichever leaves fewer empty slots; 4 on a
    tie), the unused ones hidden: (fig, axes 2-D)."""
    cols = count if count <= 4 else min((4, 3), key=lambda c: (-count % c, -c))
    rows = -(-count // cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(width * cols, height * rows), squeeze=False, constrained_layout=True
    )
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return fig, axes


FIGURE_FORMATS = ("png", "pdf", "svg")  # PNG for reading, PDF and SVG (vector) for papers


_FORMATS: ContextVar[tuple[str, ...]] = ContextVar("figure_formats", default=("png",))


# no creation dates: the same table gives the same file, byte for byte
_NO_DATE = {"png": None, "pdf": {"CreationDate": None}, "svg": {"Date": None}}


@contextlib.contextmanager
def figure_formats(formats: Sequence[str]) -> Iterator[None]:
    """Every figure saved inside is written once per format (each beside the others: x.png,
    x.pdf); `ntksim run/plot/eoc --format pdf,png` sets it."""
    unknown = [f for f in formats if f not in FIGURE_FORMATS]
    if unknown or not formats:
        named = ", ".join(unknown) or "(none)"
        raise ValueError(f"figure format {named}: choose from {', '.join(FIGURE_FORMATS)}")
    # PNG first, always: a figure saved once more re-runs its layout, and the PNG of
    # `--format pdf,png` must equal that of a plain run
    token = _FORMATS.set(tuple(f for f in FIGURE_FORMATS if f in formats))
    try:
        yield
    finally:
        _FORMATS.reset(token)


def as_written(paths: Sequence[Path]) -> list[Path]:
    """The files `save_figure` wrote for figures named `paths` (whatever their suffix)."""
    return [path.with_suffix(f".{fmt}") for path in paths for fmt in _FORMATS.get()]


def save_figure(fig: plt.Figure, path: Path) -> None:
    """The figure in every current format (`figure_formats`; PNG by default) beside `path`, each
    written atomically: two runs finishing together never leave a torn figure."""
    for fmt in _FORMATS.get():
        buffer = io.BytesIO()
        fig.savefig(buffer, format=fmt, dpi=150, metadata=_NO_DATE[fmt])
        atomic_write(path.with_suffix(f".{fmt}"), buffer.getvalue())
    plt.close(fig)


# a study's figure: its file name, how to draw it from its rows (False: nothing to draw), the rows
Figure = tuple[str, Callable[[pd.DataFrame, Path], bool | None], pd.DataFrame]


def draw_figures(directory: Path, figures: Iterable[Figure]) -> list[Path]:
    """Each (name, plot, rows) drawn as `plot(rows, directory / name)`, in order, into `directory`
    (made if missing): the paths of those drawn. Empty rows are not drawn; nor is a figure whose
    plot returns False (it found nothing to show)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, plot, rows in figures:
        path = directory / name
        if len(rows) and plot(rows, path) is not False:
            paths.append(path)
    return paths


def plain_minor_ticks(axes: np.ndarray) -> None:
    """No labels on minor log ticks (a short decade range would crowd them into each other)."""
    for ax in axes.flat:
        ax.xaxis.set_minor_formatter(NullFormatter())
