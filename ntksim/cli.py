"""`ntksim run CONFIG.yaml` and `ntksim plot DIR`.

User mistakes end with exit code 2 and one line on stderr, before anything is written.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

EXECUTORS = ("inline", "local", "debug", "slurm")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line instead of usage + message
        self.exit(2, f"ntksim: error: {message} (see ntksim --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ntksim", description="Finite- vs infinite-width NTKs of MLPs at the Edge of Chaos."
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser("run", help="run a YAML-configured sweep")
    run.add_argument("config", type=Path, help="experiment YAML file")
    run.add_argument("--out", type=Path, default=None, help="output directory (default: runs/<config name>)")
    run.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key (dotted path, YAML value); repeatable",
    )
    run.add_argument(
        "--executor", choices=EXECUTORS, default="inline", help="where cells run (default inline)"
    )
    run.add_argument("--force", action="store_true", help="overwrite results already in --out")
    run.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    plot = sub.add_parser("plot", help="redraw the figures of a run from its results.csv")
    plot.add_argument("dir", type=Path, help="a run's output directory")
    return parser


def _fail(message: str) -> NoReturn:
    print(f"ntksim: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _run(args: argparse.Namespace) -> None:
    import jax

    # Limits and metrics are float64; the eNTK dtype is chosen per config (ntk.dtype).
    jax.config.update("jax_enable_x64", True)

    import yaml

    from ntksim.config import ConfigError, load
    from ntksim.fit import summary_markdown
    from ntksim.plots import plot_all
    from ntksim.sweep import load_data, run_sweep

    try:
        config, resolved = load(args.config, args.overrides)
        x = load_data(config)
    except ConfigError as err:
        _fail(str(err))
    if args.executor != "inline":
        _fail(f"--executor {args.executor}: only 'inline' is available in this version")
    out = args.out if args.out is not None else Path("runs") / args.config.stem
    if out.exists() and not out.is_dir():
        _fail(f"--out {out}: exists and is not a directory")
    if (out / "results.csv").exists() and not args.force:
        _fail(f"--out {out}: already holds results.csv; choose another --out or pass --force")

    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False, allow_unicode=True))
    results = run_sweep(config, x, out, progress=False if args.no_progress else None)
    (out / "summary.md").write_text(summary_markdown(results, config.name))
    figures = plot_all(results, out / "figures")
    print((out / "summary.md").read_text())
    print(
        f"wrote {out / 'results.csv'} ({len(results)} rows), {out / 'summary.md'}, "
        f"{len(figures)} figures in {out / 'figures'}"
    )


def _plot(args: argparse.Namespace) -> None:
    import pandas as pd

    from ntksim.plots import plot_all
    from ntksim.sweep import COLUMNS

    path = args.dir / "results.csv"
    if not path.is_file():
        _fail(f"{path}: no such file (is {args.dir} a run directory?)")
    try:
        results = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        _fail(f"{path}: cannot parse as CSV ({str(err).splitlines()[0]})")
    missing = [c for c in COLUMNS if c not in results.columns]
    if missing:
        _fail(f"{path}: missing columns {', '.join(missing)}")
    if results.empty:
        _fail(f"{path}: has no rows to plot")
    figures = plot_all(results, args.dir / "figures")
    print(f"wrote {len(figures)} figures in {args.dir / 'figures'}")


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    {"run": _run, "plot": _plot}[args.command](args)


if __name__ == "__main__":
    main()
