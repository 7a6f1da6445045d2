"""The Markdown table helper: aligned, escaped, one cell per column, read back as written."""

import pytest

from ntksim.analysis.tables import markdown_table
from tests.markdown import has_row, table_rows


def test_a_table_is_aligned_and_reads_back_cell_for_cell() -> None:
    lines = markdown_table(["activation", "median |Δλ|", "m"], [["relu", "1.5e-07", 16], ["abs", "—", 1024]])
    assert len({len(line) for line in lines}) == 1  # every line as wide: columns line up in a terminal
    assert lines[1].replace("|", "").strip("-") == ""  # the rule
    assert table_rows("\n".join(lines)) == [
        ["activation", "median |Δλ|", "m"],
        ["relu", "1.5e-07", "16"],
        ["abs", "—", "1024"],
    ]
    assert has_row("\n".join(lines), "abs", "—") and not has_row("\n".join(lines), "abs", "1.5e-07")


def test_cells_are_not_reparsed_as_numbers() -> None:
    """A caller's formatting stands: 1e-3 is not turned into 0.001, nor 0.50 into 0.5."""
    (_, _, row) = markdown_table(["x", "y"], [["1e-3", "0.50"]])
    assert "1e-3" in row and "0.50" in row


def test_a_row_with_the_wrong_number_of_cells_is_refused() -> None:
    with pytest.raises(ValueError, match="2 cells for 3 columns"):
        markdown_table(["a", "b", "c"], [["1", "2"]])


def test_an_empty_table_is_its_header() -> None:
    assert table_rows("\n".join(markdown_table(["a", "b"], []))) == [["a", "b"]]


def test_a_line_break_in_a_cell_stays_in_its_row() -> None:
    lines = markdown_table(["a", "b"], [["two\nlines", "x"]])
    assert len(lines) == 3 and table_rows("\n".join(lines))[1] == ["two lines", "x"]
