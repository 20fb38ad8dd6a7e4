"""The `loopwright` command line. Parsing only: commands import their heavy modules lazily,
so `--help` and `workflows check` stay fast (litellm is never imported for them)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from app import regress_args

EXIT_CODES = (
    "exit status: 0 passed, 1 errored, 2 bad usage or input, 3 braked, 4 stuck, 130 cancelled"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="loopwright",
        description="Run AI agent loops unattended: maker turns under brakes, graded by checkers.",
        epilog=EXIT_CODES,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the service (API, executor, triggers)")
    serve.add_argument("--host", default=None, help="default: LOOPWRIGHT_HOST or 127.0.0.1")
    serve.add_argument("--port", type=int, default=None, help="default: LOOPWRIGHT_PORT or 8000")

    run = sub.add_parser("run", help="run one loop in the foreground", epilog=EXIT_CODES)
    run.add_argument("workflow", help="a workflow name from the workflows dir, or a .md path")
    run.add_argument("--workdir", default=".", help="the workspace directory (default: .)")
    run.add_argument("--instruction", default="", help="text for the task template")
    run.add_argument("--model", default=None, help="maker model (any litellm model string)")

    runs = sub.add_parser("runs", help="list, show, cancel or resume runs")
    runs_sub = runs.add_subparsers(dest="runs_command", required=True, metavar="ACTION")
    listing = runs_sub.add_parser("list", help="runs, newest first")
    listing.add_argument("--status")
    listing.add_argument("--workflow")
    listing.add_argument("--source")
    listing.add_argument("--limit", type=int, default=20)
    listing.add_argument("--json", action="store_true")
    show = runs_sub.add_parser("show", help="one run and its turns")
    show.add_argument("run", help="run id or a unique prefix")
    show.add_argument("--json", action="store_true")
    cancel = runs_sub.add_parser("cancel", help="cancel a queued or running run")
    cancel.add_argument("run")
    resume = runs_sub.add_parser(
        "resume", help="continue a braked, cancelled, stuck or interrupted run", epilog=EXIT_CODES
    )
    resume.add_argument("run")
    resume.add_argument("--add-turns", type=int, default=0, metavar="N")
    resume.add_argument("--add-cost", type=float, default=0.0, metavar="USD")
    resume.add_argument("--add-tokens", type=int, default=0, metavar="N")
    resume.add_argument("--add-seconds", type=float, default=0.0, metavar="S")

    workflows = sub.add_parser("workflows", help="validate workflow files")
    wf_sub = workflows.add_subparsers(dest="workflows_command", required=True, metavar="ACTION")
    check = wf_sub.add_parser("check", help="report every problem as file:line: reason")
    check.add_argument("paths", nargs="*", help="files or directories (default: workflows dir)")

    schedules = sub.add_parser("schedules", help="scheduled workflows and their next fire times")
    schedules.add_argument("--count", type=int, default=3, help="fire times to show (default: 3)")
    schedules.add_argument("--json", action="store_true")

    regress_args.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from app import commands

    try:
        return commands.dispatch(args)
    except commands.UsageProblem as exc:
        print(f"loopwright: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
