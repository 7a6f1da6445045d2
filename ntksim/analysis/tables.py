"""Markdown tables for summary.md and the CLI: one helper, so every table is aligned alike."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tabulate import tabulate


def _cell(value: object) -> str:
    # a "|" inside a cell would end it (‖·‖ is spelled |…| in some headers); a row is one line
    return " ".join(str(value).splitlines()).replace("|", r"\|")


def markdown_table(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    """A GitHub-flavoured Markdown table as lines: header, rule, one line per row.

    Cells are written as `str(cell)` — format numbers before (the caller knows their precision);
    nothing is re-parsed as a number, a `|` in a cell is escaped and a line break becomes a space.
    Every row has one cell per column.
    """
    body = [[_cell(value) for value in row] for row in rows]
    for row in body:
        if len(row) != len(columns):
            raise ValueError(f"a table row has {len(row)} cells for {len(columns)} columns: {row}")
    text = tabulate(body, headers=[_cell(c) for c in columns], tablefmt="github", disable_numparse=True)
    return text.splitlines()
