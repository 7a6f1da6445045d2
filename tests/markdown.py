"""Reading the Markdown tables ntksim writes (summary.md, `ntksim eoc`): cells, not spacing."""

from __future__ import annotations

import re

_RULE = re.compile(r"^\|(\s*:?-+:?\s*\|)+$")


def table_rows(text: str) -> list[list[str]]:
    """Every row of every table in `text`, headers included, rules left out: stripped cells, unescaped."""
    rows = []
    for line in text.splitlines():
        if not line.startswith("|") or _RULE.match(line):
            continue
        cells = re.split(r"(?<!\\)\|", line)[1:-1]
        rows.append([cell.strip().replace(r"\|", "|") for cell in cells])
    return rows


def has_row(text: str, *cells: str) -> bool:
    """Whether some table row of `text` starts with these cells."""
    return any(row[: len(cells)] == list(cells) for row in table_rows(text))
