"""The `loopwright regress` arguments: parsing only, so `--help` stays fast (the commands
themselves are in `app.regress_cli`)."""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_DIR = Path("regressions")
DEFAULT_DATASET = "loopwright-regressions"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    regress = sub.add_parser("regress", help="export failing traces as cases; re-run them")
    actions = regress.add_subparsers(dest="regress_command", required=True, metavar="ACTION")
    export = actions.add_parser("export", help="turn failing runs' traces into regression cases")
    export.add_argument("--since", help="only traces started within this (90m, 24h, 7d, 2w)")
    export.add_argument("--workflow", help="only runs of this workflow")
    export.add_argument("--filter", help="an extra Opik filter, e.g. 'metadata.repo = \"a/b\"'")
    export.add_argument("--dataset", default=DEFAULT_DATASET, help="the Opik dataset")
    export.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="default: ./regressions")
    export.add_argument("--limit", type=int, default=500, help="traces per search")
    run = actions.add_parser(
        "run",
        help="re-run cases; exit 1 when any ends worse than recorded",
        epilog="exit status: 0 no case regressed, 1 some case regressed, 2 bad input",
    )
    mode = run.add_mutually_exclusive_group()
    mode.add_argument("--replay", action="store_true", help="recorded answers, offline (default)")
    mode.add_argument("--live", action="store_true", help="the current model and workflow")
    run.add_argument("paths", nargs="*", type=Path, help="case files or dirs (./regressions)")
    run.add_argument("--experiment", help="--live: the Opik experiment's name")
