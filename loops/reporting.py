"""The reporter port: how a run's progress goes back to where its job came from.

Triggers implement `Reporter` (a GitHub comment edited in place, a Slack message updated); the
service delivers reports in order per run, retries failures, and never lets reporting fail or
slow down the run itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

from loops.checking import CheckResult
from loops.jobs import LoopJob, RunStatus
from loops.usage import Usage

ReportKind = Literal["queued", "started", "turn_finished", "finished"]


@dataclass(frozen=True, kw_only=True)
class RunReport:
    kind: ReportKind
    run_id: str
    job_id: str
    job: LoopJob
    status: RunStatus
    workflow: str
    turn: int = 0
    max_turns: int = 0
    usage: Usage = field(default_factory=Usage)
    checks: tuple[CheckResult, ...] = ()
    reason: str = ""
    elapsed_s: float = 0.0
    trace_url: str | None = None
    extra: dict[str, object] = field(default_factory=dict)  # the run's stored trigger data


class Reporter(Protocol):
    async def report(self, report: RunReport) -> None:
        """Deliver one report; raise to have it retried."""
        ...
