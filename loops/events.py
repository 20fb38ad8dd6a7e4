"""Progress events the engine emits, for live CLI output and for reporting back to a trigger.

Listeners are plain callables; they must be quick, and whatever they raise is logged and
swallowed, because reporting never decides a run's fate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import structlog

from loops.checking import CheckResult
from loops.jobs import RunStatus
from loops.records import ToolCallRecord, TurnRecord
from loops.usage import Usage

log = structlog.get_logger("loops.events")


@dataclass(frozen=True, kw_only=True)
class TurnStarted:
    run_id: str
    turn: int
    max_turns: int


@dataclass(frozen=True, kw_only=True)
class StepFinished:
    run_id: str
    turn: int
    step: int
    tools: tuple[str, ...]
    usage: Usage  # run totals after the step


@dataclass(frozen=True, kw_only=True)
class ToolFinished:
    run_id: str
    turn: int
    call_id: str
    record: ToolCallRecord
    started_at: float  # unix time


@dataclass(frozen=True, kw_only=True)
class CheckFinished:
    run_id: str
    turn: int
    result: CheckResult


@dataclass(frozen=True, kw_only=True)
class TurnFinished:
    record: TurnRecord
    usage: Usage  # run totals


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """How a run (or one session of it) ended."""

    run_id: str
    status: RunStatus
    reason: str
    turns: int
    usage: Usage
    elapsed_s: float
    brake: str | None = None


@dataclass(frozen=True, kw_only=True)
class RunFinished:
    outcome: Outcome


Event = TurnStarted | StepFinished | ToolFinished | CheckFinished | TurnFinished | RunFinished
Listener = Callable[[Event], None]


def emit(listeners: tuple[Listener, ...], event: Event) -> None:
    for listener in listeners:
        try:
            listener(event)
        except Exception:
            log.exception("progress_listener_failed", event=type(event).__name__)
