"""Live progress for `loopwright run` and `runs resume`: one line per step, check and turn."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TextIO

from loops.events import (
    CheckFinished,
    Event,
    Outcome,
    RunFinished,
    StepFinished,
    TurnFinished,
    TurnStarted,
)
from loops.reporting import RunReport
from loops.usage import Usage

MARKS = {True: "✓", False: "✗"}
ENDINGS: dict[str, str] = {
    "passed": "The run passed",
    "braked": "A brake stopped the run",
    "stuck": "The run is stuck",
    "cancelled": "The run was cancelled",
    "errored": "The run failed with an error",
}
"""How progress messages (GitHub, Slack) say a run ended, by status."""


def money(usd: float) -> str:
    return f"${usd:.4f}" if usd < 1 else f"${usd:.2f}"


def duration(seconds: float) -> str:
    """Elapsed time for people: ``42s``, ``1m 05s``, ``2h 03m``."""
    minutes, secs = divmod(max(0, round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def figures(report: RunReport, trace_link: Callable[[str], str]) -> str:
    """A progress message's line of figures: tokens, cost, time and, if traced, the trace
    (written by `trace_link`, in the message's own markup)."""
    usage = report.usage
    parts = [
        f"{usage.input_tokens:,} input / {usage.output_tokens:,} output tokens",
        money(usage.cost_usd),
        duration(report.elapsed_s),
    ]
    if report.trace_url:
        parts.append(trace_link(report.trace_url))
    return " · ".join(parts)


def usage_line(usage: Usage) -> str:
    return f"{usage.total_tokens:,} tokens · {money(usage.cost_usd)}"


class ProgressPrinter:
    """A listener that prints the run as it goes."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.max_turns = 0

    def __call__(self, event: Event) -> None:
        match event:
            case TurnStarted(turn=turn, max_turns=max_turns):
                self.max_turns = max_turns
                self._say(f"turn {turn}/{max_turns}")
            case StepFinished(step=step, tools=tools, usage=usage):
                did = ", ".join(tools) if tools else "answered"
                self._say(f"  step {step}: {did} · {usage_line(usage)}")
            case CheckFinished(result=result):
                detail = "" if result.passed else _first_line(result.findings)
                score = f" (score {result.score:.2f})" if result.score is not None else ""
                self._say(f"  {MARKS[result.passed]} {result.name}{score}{detail}")
            case TurnFinished(record=record, usage=usage):
                verdict = "passed" if record.verdict and record.verdict.passed else "failed"
                self._say(f"  turn {record.number} {verdict} · {usage_line(usage)}")
            case RunFinished(outcome=outcome):
                self._say(summary(outcome))

    def _say(self, line: str) -> None:
        print(line, file=self.stream, flush=True)


def summary(outcome: Outcome) -> str:
    return (
        f"{outcome.status}: {outcome.reason}\n"
        f"run {outcome.run_id} · {outcome.turns} turn(s) · {usage_line(outcome.usage)}"
        f" · {outcome.elapsed_s:.1f}s"
    )


def _first_line(findings: str) -> str:
    for line in findings.splitlines():
        if line.strip() and not line.startswith("$"):
            return f" — {line.strip()[:120]}"
    return ""
