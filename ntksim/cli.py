"""`ntksim run CONFIG.yaml`, `ntksim status DIR`, `ntksim plot DIR`, `ntksim eoc ACT...`.

A thin layer over `ntksim.engine.driver` (`ntksim.run`, `plan`, `status`, `plot`): it parses
arguments, prints, and maps errors to exit codes.

User mistakes end with exit code 2 and one line on stderr, before anything is written. A run
whose cells partly failed ends with exit code 1 and lists them; Ctrl-C ends with 130 and keeps
every finished cell.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

EXECUTORS = ("inline", "local", "debug", "slurm")  # as ntksim.engine.driver.EXECUTORS (not imported: JAX)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line instead of usage + message
        self.exit(2, f"ntksim: error: {message} (see ntksim --help)\n")


def _version() -> str:
    """The installed ntksim's version, with the JAX it runs on (read without importing JAX)."""
    import importlib.metadata as md

    try:
        return f"{md.version('ntksim')} (jax {md.version('jax')})"
    except md.PackageNotFoundError:
        return "unknown"


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ntksim", description="Finite- vs infinite-width NTKs of MLPs at the Edge of Chaos."
    )
    parser.add_argument("--version", action="version", version=f"ntksim {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser("run", help="run (or resume) a YAML-configured sweep")
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
    run.add_argument(
        "--force",
        action="store_true",
        help="accept a config that differs from the one already in --out (finished cells "
        "whose content is unchanged are kept)",
    )
    run.add_argument("--retry-failed", action="store_true", help="recompute cells recorded as failed")
    run.add_argument("--dry-run", action="store_true", help="show what would run or be submitted, then stop")
    run.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    cache = run.add_mutually_exclusive_group()
    cache.add_argument(
        "--compile-cache",
        type=_directory_argument,
        default=None,
        metavar="DIR",
        help="JAX's persistent compilation cache, shared by runs and array tasks (default: OUT/jax-cache)",
    )
    cache.add_argument(
        "--no-compile-cache", action="store_true", help="compile everything afresh, write no cache"
    )
    _format_argument(run)
    status = sub.add_parser("status", help="report done / pending / failed cells and assemble results.csv")
    status.add_argument("dir", type=Path, help="a run's output directory")
    plot = sub.add_parser("plot", help="redraw the figures of a run from its results (partial ones too)")
    plot.add_argument("dir", type=Path, help="a run's output directory")
    _format_argument(plot)
    eoc = sub.add_parser("eoc", help="Edge-of-Chaos points of activations: table and phase diagram")
    eoc.add_argument(
        "activations",
        nargs="+",
        metavar="ACTIVATION",
        help="preset names, with a parameter as in YAML: tanh elu(0.5) monomial(3)",
    )
    eoc.add_argument(
        "--sigma-b",
        dest="sigma_b",
        type=float,
        nargs="+",
        default=None,
        metavar="SB",
        help="bias scales for the table (default 0 0.1 0.2 0.5)",
    )
    eoc.add_argument(
        "--out",
        type=Path,
        default=Path("runs/eoc"),
        help="where eoc.csv and phase_diagram.png go (default runs/eoc)",
    )
    _format_argument(eoc)
    return parser


# as ntksim.analysis.figures.FIGURE_FORMATS (not imported here: matplotlib is slow to load)
FORMATS = ("png", "pdf", "svg")


def _formats(text: str) -> tuple[str, ...]:
    formats = tuple(dict.fromkeys(f.strip().lower() for f in text.split(",") if f.strip()))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise argparse.ArgumentTypeError(
            f"{', '.join(unknown) or repr(text)} is not a figure format; give one or more of "
            f"{', '.join(FORMATS)}, comma-separated (e.g. pdf,png)"
        )
    return formats


def _format_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        dest="formats",
        type=_formats,
        default=("png",),
        metavar="FMT[,FMT]",
        help="figure files: png (default), pdf, svg or several (pdf,png); vector formats for papers",
    )


def _fail(message: str) -> NoReturn:
    print(f"ntksim: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _directory_argument(text: str) -> Path:
    """A directory path given on the command line: not empty, not an existing file."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path (give a directory)")
    if Path(text).exists() and not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text} exists and is not a directory")
    return Path(text)


def _run(args: argparse.Namespace) -> None:
    from ntksim.engine import driver

    options = dict(out=args.out, overrides=args.overrides, executor=args.executor, force=args.force,
                   retry_failed=args.retry_failed, compile_cache=args.compile_cache,
                   no_compile_cache=args.no_compile_cache)  # fmt: skip
    if args.dry_run:
        plan = driver.plan(args.config, **options)
        print(plan.headline())
        if plan.todo:
            print(plan.would_run())
        plan.refused(say=True)  # one line each on stderr, after the cells
        if estimates := plan.estimates():
            print(estimates)
        return
    try:
        result = driver.run(args.config, progress=False if args.no_progress else None, **options)
    except driver.RunInterrupted:
        # At once, without the interpreter's shutdown: XLA may still be compiling the interrupted
        # cell's program in one of its own threads, and a normal exit waited for it (2 min for a
        # 400-layer network, then a segmentation fault). Everything worth keeping is on disk.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    raise SystemExit(result.exit_code)


def _status(args: argparse.Namespace) -> None:
    from ntksim.engine import driver

    result = driver.status(args.dir)
    print(result.report())
    for text in (result.timing() and f"  {result.timing()}", driver.ended_tasks_report(result)):
        if text:
            print(text)
    raise SystemExit(result.exit_code)


def _plot(args: argparse.Namespace) -> None:
    from ntksim.engine import driver

    figures = driver.plot(args.dir)
    print(f"wrote {len(figures)} figures in {args.dir / 'figures'}")


def _eoc(args: argparse.Namespace) -> None:
    """Table of (σ_w, q*) per activation and σ_b, the curves as CSV, and the phase diagram."""
    from ntksim.activations import activation
    from ntksim.activations.eoc import NoEOCPoint
    from ntksim.analysis import eoc_table as eoc

    try:
        acts = [activation(spec) for spec in args.activations]
        for value in args.sigma_b or ():
            if not value >= 0 or value == float("inf"):  # NaN fails the first test
                raise ValueError(f"--sigma-b {value:g}: must be a non-negative number")
        table = eoc.eoc_table(acts, args.sigma_b or eoc.EOC_SIGMA_B, explicit=args.sigma_b is not None)
    except (ValueError, NoEOCPoint) as err:
        _fail(str(err))
    print(eoc.table_markdown(table))
    try:
        written = eoc.write(args.out, table, eoc.eoc_curves(acts))
    except OSError as err:
        _fail(f"--out {args.out}: cannot write there ({err.strerror})")
    figures = ", ".join(str(written[-1].with_suffix(f".{fmt}")) for fmt in args.formats)
    print(f"wrote {written[0]}, {written[1]} and {figures}")


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    import jax

    # Limits, EOC points and metrics are float64 in every command, so that `status` and `plot`
    # expand a config into the same cells as the `run` that wrote it; the eNTK dtype is per config.
    jax.config.update("jax_enable_x64", True)
    from ntksim.engine.config import ConfigError

    try:
        command = {"run": _run, "status": _status, "plot": _plot, "eoc": _eoc}[args.command]
        if getattr(args, "formats", ("png",)) != ("png",):
            from ntksim.analysis.figures import figure_formats

            with figure_formats(args.formats):
                command(args)
        else:
            command(args)
        sys.stdout.flush()
    except ConfigError as err:  # a user mistake, found before anything was written
        _fail(str(err))
    except KeyboardInterrupt:
        # `run` handles Ctrl-C itself (its cells are saved as they finish); anywhere else
        # (`eoc`, `plot`, `status`) nothing is half-written that a traceback would explain.
        print("ntksim: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except BrokenPipeError:
        # The reader went away (`ntksim run … --dry-run | head`): not an error of ours. Point stdout
        # at /dev/null so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(0) from None


if __name__ == "__main__":
    main()
