"""Run the benchmarks: `python -m tests.benchmarks [NAME ...]` (names: engine, cli, intake,
concurrency, github, slack).

Prints one table and writes the rows to `var/bench/latest.json`. The exit status is 0 whatever
the timings: benchmarks report, they do not gate.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from tests.benchmarks.report import Row, format_table, write_json

BENCHMARKS = ("engine", "cli", "intake", "concurrency", "github", "slack")
OUTPUT = Path("var") / "bench" / "latest.json"


def _runner(name: str) -> Callable[[], list[Row]]:
    module = importlib.import_module(f"tests.benchmarks.bench_{name}")
    runner: Callable[[], list[Row]] = module.run
    return runner


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"any of {', '.join(BENCHMARKS)}")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r}; known: {', '.join(BENCHMARKS)}")
    names: list[str] = args.names or list(BENCHMARKS)
    rows: list[Row] = []
    for name in names:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        rows += _runner(name)()
    print(format_table(rows))
    write_json(rows, OUTPUT)
    print(f"\nrows written to {OUTPUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
