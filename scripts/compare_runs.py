"""Are two sets of run directories the same results? For a refactoring that must not change a
number: run the shipped configs with the old and the new code into two roots, then

    python scripts/compare_runs.py OLD_ROOT NEW_ROOT [NAME ...]

compares each NAME's results.csv (default: every directory under OLD_ROOT) as text, cell by
cell, with the `seconds` column (wall time) left out; exits 1 if any differs or is missing.

    python scripts/compare_runs.py --ids > ids.txt

prints every cell id of every config in configs/ (diff two such files: a changed id is a cell
an old run directory would compute again).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

VOLATILE = ("seconds",)  # measured time, not a result


def table(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)  # as written: no float parsing
    return frame.drop(columns=[c for c in VOLATILE if c in frame.columns])


def compare(old_root: Path, new_root: Path, names: list[str]) -> bool:
    same = True
    for name in names:
        old, new = old_root / name / "results.csv", new_root / name / "results.csv"
        if not (old.is_file() and new.is_file()):
            print(f"{name}: missing {'old' if not old.is_file() else 'new'} results.csv")
            same = False
            continue
        a, b = table(old), table(new)
        if list(a.columns) != list(b.columns) or not a.equals(b):
            differing = [c for c in a.columns if c not in b.columns or not a[c].equals(b[c])]
            print(f"{name}: DIFFERENT ({len(a)} vs {len(b)} rows; columns {differing[:8]})")
            same = False
        else:
            print(f"{name}: identical ({len(a)} rows, {len(a.columns)} columns)")
    return same


def cell_ids() -> None:
    import jax

    jax.config.update("jax_enable_x64", True)  # as every ntksim command
    from ntksim.engine.loading import load
    from ntksim.engine.run import study_of

    for path in sorted(Path("configs").glob("*.yaml")):
        config, _ = load(path, [])
        for cell in study_of(config).expand(config):
            print(path.name, cell.cell_id, cell.label())


def main(argv: list[str]) -> int:
    if argv[:1] == ["--ids"]:
        cell_ids()
        return 0
    if len(argv) < 2:
        print(__doc__)
        return 2
    old_root, new_root = Path(argv[0]), Path(argv[1])
    names = argv[2:] or sorted(p.name for p in old_root.iterdir() if (p / "results.csv").is_file())
    return 0 if compare(old_root, new_root, names) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
