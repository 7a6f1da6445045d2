"""A study that only the test suite knows: the engine must run it like any other.

Each cell is one integer v; its rows are v², √v and a deterministic pseudo-random number per
repeat, so runs through different executors can be compared number for number. `fail_on`
makes that cell raise (a recorded failure); `sleep_s` slows every cell (to kill a run mid-way);
`log` names a file each computation appends its value to (to count recomputations).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from ntksim.engine.cells import content_id
from ntksim.engine.config import RunConfig
from ntksim.engine.study import Memo, Study

NAME = "tests.engine.toy_study"
COLUMNS = ("value", "repeat", "square", "root", "noise")


class ToyConfig(RunConfig):
    study: Literal["tests.engine.toy_study"] = NAME
    values: Annotated[list[Annotated[int, Field(ge=0, strict=True)]], Field(min_length=1)]
    repeats: Annotated[int, Field(gt=0, strict=True)] = 2
    fail_on: int | None = None
    sleep_s: float = 0.0
    log: str | None = None


@dataclass(frozen=True)
class ToyCell:
    value: int
    repeats: int

    @property
    def cell_id(self) -> str:
        return content_id({"study": NAME, "value": self.value, "repeats": self.repeats})

    @property
    def rows(self) -> int:
        return self.repeats

    def label(self) -> str:
        return f"toy v={self.value}"


def expand(config: ToyConfig) -> list[ToyCell]:
    return [ToyCell(v, config.repeats) for v in config.values]


def compute(cell: ToyCell, memo: Memo) -> list[dict]:
    config: ToyConfig = memo.config
    time.sleep(config.sleep_s)
    if cell.value == config.fail_on:
        raise ArithmeticError(f"toy failure at {cell.value}")
    if config.log:
        with open(config.log, "a") as handle:
            handle.write(f"{cell.value}\n")
    noise = np.random.default_rng(cell.value).standard_normal(cell.repeats)
    return [
        {
            "value": cell.value,
            "repeat": r,
            "square": cell.value**2,
            "root": math.sqrt(cell.value),
            "noise": float(noise[r]),
        }
        for r in range(cell.repeats)
    ]


def summarize(table: pd.DataFrame, config: ToyConfig, fits: None = None) -> str:
    return f"# {config.name}\n\n{len(table)} rows, sum of squares {int(table['square'].sum())}\n"


def figures(table: pd.DataFrame, config: ToyConfig, directory: Path, fits: None = None) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "values.txt"
    path.write_text(" ".join(str(v) for v in sorted(table["value"].unique())))
    return [path]


STUDY = Study(NAME, ToyConfig, COLUMNS, expand, compute, summarize, figures)
