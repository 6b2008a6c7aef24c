"""The ``layerscope`` command: ``report`` from event files, ``demo``, ``info``, ``--version``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    from layerscope import __version__

    parser = argparse.ArgumentParser(prog="layerscope", description=__doc__)
    parser.add_argument("--version", action="version", version=f"layerscope {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    report = commands.add_parser("report", help="render a Matplotlib report from event files")
    report.add_argument("run_dir", type=Path, help="a directory with TensorBoard event files")
    report.add_argument("--out", type=Path, help="where figures go (default RUN_DIR/report)")
    report.add_argument(
        "--format",
        action="append",
        choices=("png", "svg", "pdf"),
        help="figure format; repeat for several (default png)",
    )
    demo = commands.add_parser("demo", help="train the demo MLP healthy and broken")
    demo.add_argument("--out", type=Path, default=Path("runs/demo"), help="output directory")
    demo.add_argument("--steps", type=int, default=150, help="training steps per variant")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    commands.add_parser("info", help="versions, the engine's build flags and the extras")
    return parser


def report(run_dir: Path, out: Path | None, formats: Sequence[str]) -> list[Path]:
    """Render one report per run found under ``run_dir``; return the figure paths."""
    from layerscope.docs import error_message
    from layerscope.sinks.events import read_run
    from layerscope.sinks.report import render_report

    runs = read_run(run_dir)
    if not runs:
        raise ValueError(
            error_message(
                f"report: RUN_DIR {str(run_dir)!r} holds no TensorBoard event files",
                "no-event-files",
            )
        )
    target = out if out is not None else run_dir / "report"
    paths: list[Path] = []
    for name, records in runs.items():
        paths += render_report(records, target if name == "." else target / name, formats)
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "report":
            for path in report(args.run_dir, args.out, args.format or ["png"]):
                print(path)
        elif args.command == "info":
            from layerscope.info import collect, format_info

            print(format_info(collect()))
        else:
            from layerscope.demo import run_demo

            run_demo(args.out, steps=args.steps, progress=not args.quiet)
    except (ValueError, RuntimeError, ImportError) as error:
        parser.exit(2, f"layerscope {args.command}: error: {error}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
