"""Width schedules."""

import pytest

from ntksim import hidden_widths


def test_quadratic_and_constant() -> None:
    assert hidden_widths(5, 16, "quadratic") == (16, 64, 144, 256)
    assert hidden_widths(4, 16, "constant") == (16, 16, 16)
    assert hidden_widths(1, 16, "quadratic") == ()


def test_explicit() -> None:
    assert hidden_widths(3, None, [7, 9]) == (7, 9)
    with pytest.raises(ValueError, match="needs 2"):
        hidden_widths(3, None, [7])


@pytest.mark.parametrize(
    ("depth", "width", "schedule"), [(0, 8, "quadratic"), (3, 0, "constant"), (3, 8, "cubic")]
)
def test_invalid(depth: int, width: int, schedule: str) -> None:
    with pytest.raises(ValueError):
        hidden_widths(depth, width, schedule)
