"""Hidden-width schedules m_1 … m_{l-1} of an l-layer MLP."""

from __future__ import annotations

from collections.abc import Sequence

Schedule = str | Sequence[int]
SCHEDULES = ("quadratic", "constant")


def hidden_widths(depth: int, width: int | None, schedule: Schedule = "quadratic") -> tuple[int, ...]:
    """Hidden widths (m_1, …, m_{depth-1}).

    quadratic: m_k = k²·width (the paper's); constant: m_k = width; a sequence: used as given
    (its length must be depth − 1, and `width` is ignored).
    """
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    if isinstance(schedule, str):
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {schedule!r}; choose quadratic, constant or a list of widths")
        if width is None or width < 1:
            raise ValueError(f"width must be a positive integer, got {width}")
        if schedule == "quadratic":
            return tuple(k * k * width for k in range(1, depth))
        return tuple(width for _ in range(1, depth))
    widths = tuple(int(w) for w in schedule)
    if len(widths) != depth - 1:
        raise ValueError(f"explicit schedule has {len(widths)} widths but depth {depth} needs {depth - 1}")
    if any(w < 1 for w in widths):
        raise ValueError(f"hidden widths must be positive, got {list(widths)}")
    return widths
