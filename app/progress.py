"""Live progress for `loopwright run` and `runs resume`: one line per step, check and turn."""

from __future__ import annotations

import sys
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
