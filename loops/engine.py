"""The loop engine: a small state machine driving maker turns and checker verdicts.

State (`RunState`, mutable) and dependencies (`EngineDeps`, frozen) are kept apart. Each step
returns the next step or `Done`; `run_loop` is the driver. Brakes, cancellation and wall time
are raised inside the steps and converted into an `Outcome` once, here at the edge, after the
interrupted turn's partial work has been recorded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from loops.brakes import Brakes
from loops.budget import BudgetedModel, PriceBook, RetryPolicy, TokenEstimator, estimate_tokens
from loops.checking import Checker
from loops.clock import Clock
from loops.errors import BrakeTripped, ModelError
from loops.events import Listener, Outcome, RunFinished, emit
from loops.jobs import RunStatus
from loops.model import ModelPort
from loops.records import RunStore, ToolCallRecord, TurnRecord
from loops.stuck import StuckDetector
from loops.tools import Toolbox
from loops.usage import Usage
from loops.workflows import Workflow
from loops.workspace import Workspace

log = structlog.get_logger("loops.engine")


@dataclass(frozen=True, kw_only=True)
class EngineDeps:
    """Everything a run needs that does not change while it runs."""

    run_id: str
    workflow: Workflow
    brakes: Brakes
    model: ModelPort  # the raw port; the engine meters it
    model_name: str
    checker: Checker
    workspace: Workspace
    toolbox: Toolbox
    store: RunStore
    clock: Clock
    prices: PriceBook
    variables: Mapping[str, object] = field(default_factory=dict)
    check_env: Mapping[str, str] = field(default_factory=dict)
    listeners: tuple[Listener, ...] = ()
    estimator: TokenEstimator = estimate_tokens
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    stop: asyncio.Event | None = None
    """Set on shutdown: the run stops at the next step boundary and goes back to `queued`."""


@dataclass(kw_only=True)
class TurnInProgress:
    number: int
    started_at: float
    usage_before: Usage
    tool_calls: list[ToolCallRecord] = field(default_factory=list)
    steps: int = 0
    summary: str = ""


@dataclass(kw_only=True)
class RunState:
    """What changes as a run goes on; rebuilt from the ledger's turns on resume."""

    turns_done: int = 0
    usage: Usage = field(default_factory=Usage)
    consecutive_passes: int = 0
    findings: str = ""
    elapsed_before: float = 0.0  # wall seconds used by earlier sessions of this run
    started: float = 0.0  # monotonic start of this session
    stuck: StuckDetector = field(default_factory=StuckDetector)
    current: TurnInProgress | None = None

    @classmethod
    def from_turns(cls, turns: list[TurnRecord]) -> RunState:
        state = cls()
        for record in turns:
            state.turns_done = record.number
            state.usage.merge(record.usage)
            state.consecutive_passes = record.consecutive_passes
            state.findings = record.findings
            state.elapsed_before = record.elapsed_s
            if record.verdict is not None:
                state.stuck.observe(record.verdict)
        return state


@dataclass(frozen=True, kw_only=True)
class Done:
    status: RunStatus
    reason: str


class Step(Protocol):
    async def run(self, state: RunState, deps: EngineDeps, model: ModelPort) -> Step | Done: ...


async def run_loop(deps: EngineDeps, state: RunState) -> Outcome:
    """Drive the run until the exit condition holds, a brake trips, it is stuck or cancelled."""
    from loops.turns import StartTurn  # the steps import this module's types

    state.started = deps.clock.monotonic()
    model = _metered(deps, state)
    step: Step | Done = StartTurn()
    brake: str | None = None
    try:
        async with asyncio.timeout(_wall_budget(deps, state)):
            while not isinstance(step, Done):
                step = SHUTDOWN if _stopping(deps) else await step.run(state, deps, model)
    except BrakeTripped as exc:
        step, brake = Done(status="braked", reason=str(exc)), exc.brake
    except TimeoutError:
        step, brake = _wall_tripped(deps, state), "max_wall_seconds"
    except asyncio.CancelledError:
        _uncancel()
        step = SHUTDOWN if _stopping(deps) else Done(status="cancelled", reason="cancelled")
    except ModelError as exc:
        step = Done(status="errored", reason=f"model call failed: {exc}")
    except Exception as exc:
        log.exception("loop_crashed")
        step = Done(status="errored", reason=f"internal error: {type(exc).__name__}: {exc}")
    await _record_interrupted(deps, state, step.reason)
    return _finish(deps, state, step, brake)


SHUTDOWN = Done(status="queued", reason="interrupted by a shutdown; it resumes on the next start")


def _stopping(deps: EngineDeps) -> bool:
    return deps.stop is not None and deps.stop.is_set()


def _uncancel() -> None:
    # The cancel has been turned into an outcome; clear it so recording the outcome can await.
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()


def elapsed(deps: EngineDeps, state: RunState) -> float:
    return state.elapsed_before + deps.clock.monotonic() - state.started


def _metered(deps: EngineDeps, state: RunState) -> BudgetedModel:
    return BudgetedModel(
        deps.model,
        brakes=deps.brakes,
        usage=state.usage,
        elapsed=lambda: elapsed(deps, state),
        clock=deps.clock,
        prices=deps.prices,
        estimator=deps.estimator,
        retry=deps.retry,
    )


def _wall_budget(deps: EngineDeps, state: RunState) -> float | None:
    remaining = deps.brakes.remaining_seconds(state.elapsed_before)
    return None if remaining is None else max(remaining, 0.001)


def _wall_tripped(deps: EngineDeps, state: RunState) -> Done:
    limit = deps.brakes.max_wall_seconds or 0.0
    exc = BrakeTripped("max_wall_seconds", limit, round(elapsed(deps, state), 3))
    return Done(status="braked", reason=str(exc))


async def record_turn(deps: EngineDeps, record: TurnRecord) -> None:
    """Commit a turn even if the run is cancelled meanwhile: a half-known commit is worse."""
    task = asyncio.ensure_future(deps.store.turn_completed(record))
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise


async def _record_interrupted(deps: EngineDeps, state: RunState, reason: str) -> None:
    """Keep the cost and tool calls of a turn a brake or cancel cut short."""
    turn = state.current
    if turn is None:
        return
    state.current = None
    state.turns_done = turn.number
    state.consecutive_passes = 0
    record = TurnRecord(
        run_id=deps.run_id,
        number=turn.number,
        maker_summary=turn.summary,
        tool_calls=tuple(turn.tool_calls),
        usage=state.usage.minus(turn.usage_before),
        steps=turn.steps,
        started_at=turn.started_at,
        ended_at=deps.clock.now(),
        elapsed_s=elapsed(deps, state),
        consecutive_passes=0,
        findings=state.findings,
        interrupted=reason,
    )
    try:
        await record_turn(deps, record)
    except Exception:
        log.exception("interrupted_turn_not_recorded", turn=turn.number)


def _finish(deps: EngineDeps, state: RunState, done: Done, brake: str | None) -> Outcome:
    outcome = Outcome(
        run_id=deps.run_id,
        status=done.status,
        reason=done.reason,
        turns=state.turns_done,
        usage=state.usage.copy(),
        elapsed_s=round(elapsed(deps, state), 3),
        brake=brake,
    )
    event = "brake_tripped" if brake else "loop_finished"
    log.info(event, status=done.status, reason=done.reason, turns=state.turns_done)
    emit(deps.listeners, RunFinished(outcome=outcome))
    return outcome
