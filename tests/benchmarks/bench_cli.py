"""CLI start-up: wall time of `loopwright` commands as fresh processes, next to a bare interpreter.

Also checks that litellm (seconds and hundreds of MB to import) stays out of the CLI's process
for commands that do not call a model.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from tests.benchmarks.report import Row, median

NAME = "cli"
REPEATS = 15
WARMUPS = 2
TARGET_SECONDS = 0.5
REPO = Path(__file__).resolve().parents[2]
PYTHON = Path(sys.executable)
LOOPWRIGHT = PYTHON.with_name("loopwright")

LITELLM_PROBE = """\
import contextlib, io, sys
import app.cli, app.commands
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    status = app.cli.main(["workflows", "check", "workflows"])
print(status, "litellm" in sys.modules)
"""


def _env() -> dict[str, str]:
    return {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "PYTHONDONTWRITEBYTECODE": "1"}


def _wall_time(argv: Sequence[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, cwd=REPO, env=_env(), capture_output=True, check=False)
    return time.perf_counter() - started


def _median_seconds(argv: Sequence[str]) -> float:
    for _ in range(WARMUPS):
        _wall_time(argv)
    return median([_wall_time(argv) for _ in range(REPEATS)])


def _check_exit(argv: Sequence[str]) -> None:
    """A command that fails at once would look fast: make sure each one works."""
    done = subprocess.run(argv, cwd=REPO, env=_env(), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()}")


def _litellm_loaded() -> str:
    probe = [str(PYTHON), "-c", LITELLM_PROBE]
    done = subprocess.run(probe, cwd=REPO, env=_env(), capture_output=True, text=True, check=False)
    words = done.stdout.split()
    if done.returncode != 0 or len(words) != 2:
        raise RuntimeError(f"litellm probe failed: {done.stderr.strip()}")
    status, loaded = words
    if status != "0":
        raise RuntimeError(f"workflows check exited {status} in the litellm probe")
    return "yes" if loaded == "True" else "no"


def run() -> list[Row]:
    baseline = [str(PYTHON), "-c", "pass"]
    commands = {
        "loopwright --help": [str(LOOPWRIGHT), "--help"],
        "loopwright workflows check workflows/": [
            str(LOOPWRIGHT),
            "workflows",
            "check",
            "workflows",
        ],
    }
    for argv in commands.values():
        _check_exit(argv)
    base = _median_seconds(baseline)
    rows = [
        Row(
            benchmark=NAME,
            variant="python -c pass",
            value=base,
            unit="s",
            note=f"baseline: same interpreter (median of {REPEATS})",
        )
    ]
    for variant, argv in commands.items():
        seconds = _median_seconds(argv)
        verdict = "met" if seconds < TARGET_SECONDS else "MISSED"
        extra = f"+{seconds - base:.3f} s over baseline"
        rows.append(
            Row(
                benchmark=NAME,
                variant=variant,
                value=seconds,
                unit="s",
                note=f"target < {TARGET_SECONDS:g} s: {verdict}; {extra}",
            )
        )
    rows.append(
        Row(
            benchmark=NAME,
            variant="litellm imported by app.cli + workflows check",
            value=_litellm_loaded(),
            note="target: no",
        )
    )
    return rows
