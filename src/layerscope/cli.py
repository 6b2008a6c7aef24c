"""The layerscope command: report from event files, demo, info, --version."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

#: Exit statuses: a run-time failure, and a command line argparse refused.
EXIT_ERROR, EXIT_USAGE = 1, 2

_REPORT_HELP = """\
Render a report for each run under RUN_DIR: every folder that holds TensorBoard event files
(written by layerscope or any other program), searched without entering hidden folders,
virtual environments or symbolic links. Each run's report goes to OUT/<run path>. A run that
cannot be read is reported and skipped; the others are still rendered. Progress goes to
stderr, the paths written to stdout."""


class _Defaults(argparse.HelpFormatter):
    """Show each option's default after its help, where it has a value worth showing."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.option_strings and action.default not in (None, False, argparse.SUPPRESS):
            text += " (default: %(default)s)"
        return text


def _parser() -> argparse.ArgumentParser:
    from layerscope import __version__

    defaults = _Defaults
    parser = argparse.ArgumentParser(
        prog="layerscope",
        description="See what happens inside a PyTorch model while it trains.",
        formatter_class=defaults,
    )
    parser.add_argument("--version", action="version", version=f"layerscope {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    report = commands.add_parser(
        "report",
        help="render reports from TensorBoard event files",
        description=_REPORT_HELP,
        formatter_class=defaults,
    )
    report.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run, or a folder of runs")
    report.add_argument("--out", type=Path, help="where reports go (default: RUN_DIR/report)")
    report.add_argument(
        "--format",
        action="append",
        choices=("html", "png", "svg", "pdf"),
        help="output format; repeat for several (default: html, one self-contained page)",
    )
    report.add_argument(
        "--max-runs",
        type=int,
        default=20,
        help="refuse to render more runs than this (a folder that holds many runs is likely "
        "not meant: point at one run, or raise the limit)",
    )
    demo = commands.add_parser(
        "demo",
        help="train the demo MLP healthy and broken (needs scikit-learn)",
        description="Train a small MLP on scikit-learn's digits, healthy and with planted "
        "faults; write TensorBoard runs and reports under --out and print the findings.",
        formatter_class=defaults,
    )
    demo.add_argument("--out", type=Path, default=Path("runs/demo"), help="output directory")
    demo.add_argument("--steps", type=int, default=150, help="training steps per variant")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    commands.add_parser(
        "info",
        help="versions, the engine's build flags and the extras",
        description="Print the versions, the C++ engine's build flags and the optional extras.",
    )
    return parser


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def report(
    run_dir: Path,
    out: Path | None,
    formats: Sequence[str],
    max_runs: int = 20,
    say: Callable[[str], None] = _say,
) -> tuple[list[Path], list[str]]:
    """Render one report per run found under ``run_dir``.

    Returns:
        The paths written, and one line per run that could not be rendered.

    Raises:
        ValueError: ``run_dir`` is not a folder, holds no event files, or more runs than
            ``max_runs``.
    """
    from layerscope.docs import error_message
    from layerscope.sinks.events import find_runs, read_events
    from layerscope.sinks.report import render_report

    if max_runs < 1:
        raise ValueError(f"report: --max-runs must be at least 1, got {max_runs}")
    if not run_dir.is_dir():
        raise ValueError(f"report: RUN_DIR must be a folder, got {str(run_dir)!r}")
    runs = find_runs(run_dir)
    if not runs:
        raise ValueError(
            error_message(
                f"report: RUN_DIR {str(run_dir)!r} holds no TensorBoard event files",
                "no-event-files",
            )
        )
    if len(runs) > max_runs:
        shown = ", ".join(str(r.relative_to(run_dir)) for r in runs[:5])
        raise ValueError(
            f"report: RUN_DIR {str(run_dir)!r} holds {len(runs)} runs ({shown}, ...), more "
            f"than --max-runs {max_runs}; point RUN_DIR at one run, or pass --max-runs "
            f"{len(runs)} to render them all"
        )
    target = out if out is not None else run_dir / "report"
    say(
        f"layerscope report: {len(runs)} run(s) under {run_dir}; "
        f"writing {', '.join(formats)} to {target}"
    )
    paths: list[Path] = []
    failed: list[str] = []
    for i, directory in enumerate(runs, 1):
        name = directory.relative_to(run_dir).as_posix()
        where = target if name == "." else target / name
        try:
            records = read_events(directory)
            written = render_report(records, where, formats) if records else []
        except Exception as error:  # noqa: BLE001 - one malformed run must not stop the others
            failed.append(f"{name}: {type(error).__name__}: {error}")
            say(f"[{i}/{len(runs)}] {name}: not rendered: {type(error).__name__}: {error}")
            continue
        if not written:
            failed.append(f"{name}: no scalars or histograms to plot")
            say(f"[{i}/{len(runs)}] {name}: nothing to plot (no scalars or histograms)")
            continue
        paths += written
        say(f"[{i}/{len(runs)}] {name}: {len(written)} file(s) in {where}")
    return paths, failed


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (0 done, 1 failed, 2 bad usage)."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "report":
            paths, failed = report(
                args.run_dir, args.out, args.format or ["html"], max_runs=args.max_runs
            )
            for path in paths:
                print(path)
            if failed:
                _say(f"layerscope report: {len(failed)} run(s) not rendered:")
                for line in failed:
                    _say(f"  {line}")
                return EXIT_ERROR
        elif args.command == "info":
            from layerscope.info import collect, format_info

            print(format_info(collect()))
        else:
            from layerscope.demo import run_demo

            run_demo(args.out, steps=args.steps, progress=not args.quiet)
    except (ValueError, RuntimeError, ImportError, OSError) as error:
        _say(f"layerscope {args.command}: error: {error}")
        return EXIT_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
