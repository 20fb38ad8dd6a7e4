"""The engine's steps: start a turn, let the maker act, let the checker grade."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from loops.checking import CheckContext, Verdict
from loops.engine import Done, EngineDeps, RunState, TurnInProgress, elapsed, record_turn
from loops.events import (
    CheckFinished,
    StepFinished,
    ToolFinished,
    TurnFinished,
    TurnStarted,
    emit,
)
from loops.model import Message, ModelPort, ModelRequest
from loops.prompts import system_message, task_message
from loops.records import TurnRecord
from loops.workflow_files import render_task

log = structlog.get_logger("loops.engine")

CHECK_TIMEOUT_CAP = 3600.0


@dataclass(frozen=True)
class StartTurn:
    async def run(self, state: RunState, deps: EngineDeps, model: ModelPort) -> MakerStep:
        deps.brakes.check_turn(state.turns_done)
        deps.brakes.check_wall(elapsed(deps, state))
        number = state.turns_done + 1
        state.current = TurnInProgress(
            number=number, started_at=deps.clock.now(), usage_before=state.usage.copy()
        )
        structlog.contextvars.bind_contextvars(turn=number)
        log.info("turn_started", max_turns=deps.brakes.max_turns)
        emit(
            deps.listeners,
            TurnStarted(run_id=deps.run_id, turn=number, max_turns=deps.brakes.max_turns),
        )
        return MakerStep(messages=await _opening(state, deps, number))


async def _opening(state: RunState, deps: EngineDeps, number: int) -> tuple[Message, ...]:
    notes = deps.workspace.read_state()
    task = render_task(
        deps.workflow,
        **{**deps.variables, "findings": state.findings, "state": notes, "turn": number},
    )
    user = task_message(deps.workflow, task, state=notes, findings=state.findings, turn=number)
    return (system_message(deps.workflow), user)


@dataclass(frozen=True)
class MakerStep:
    messages: tuple[Message, ...]

    async def run(
        self, state: RunState, deps: EngineDeps, model: ModelPort
    ) -> MakerStep | CheckStep:
        turn = state.current
        assert turn is not None
        request = ModelRequest(
            model=deps.model_name, messages=self.messages, tools=deps.toolbox.specs()
        )
        response = await model.complete(request)
        turn.steps += 1
        turn.summary = response.text or turn.summary
        messages = [*self.messages, response.as_message()]
        for call in response.tool_calls:
            remaining = deps.brakes.remaining_seconds(elapsed(deps, state))
            started = deps.clock.now()
            record = await deps.toolbox.call(call, timeout=remaining)
            turn.tool_calls.append(record)
            emit(
                deps.listeners,
                ToolFinished(
                    run_id=deps.run_id,
                    turn=turn.number,
                    call_id=call.id,
                    record=record,
                    started_at=started,
                ),
            )
            state.usage.tool_calls += 1
            messages.append(Message(role="tool", content=record.result, tool_call_id=call.id))
        emit(
            deps.listeners,
            StepFinished(
                run_id=deps.run_id,
                turn=turn.number,
                step=turn.steps,
                tools=tuple(c.name for c in response.tool_calls),
                usage=state.usage.copy(),
            ),
        )
        if not response.tool_calls:
            return CheckStep()
        if turn.steps >= deps.brakes.max_steps_per_turn:
            turn.summary = turn.summary or f"(turn stopped after {turn.steps} steps)"
            log.info("turn_step_limit_reached", steps=turn.steps)
            return CheckStep()
        return MakerStep(messages=tuple(messages))


@dataclass(frozen=True)
class CheckStep:
    async def run(self, state: RunState, deps: EngineDeps, model: ModelPort) -> StartTurn | Done:
        turn = state.current
        assert turn is not None
        verdict = await deps.checker.check(await _check_context(state, deps, model, turn.summary))
        for result in verdict.results:
            emit(deps.listeners, CheckFinished(run_id=deps.run_id, turn=turn.number, result=result))
        done = _judge_verdict(state, deps, verdict)
        record = _turn_record(state, deps, turn, verdict)
        await record_turn(deps, record)
        state.current = None
        state.turns_done = turn.number
        log.info("turn_finished", passed=verdict.passed, passes=state.consecutive_passes)
        emit(deps.listeners, TurnFinished(record=record, usage=state.usage.copy()))
        return done or StartTurn()


async def _check_context(
    state: RunState, deps: EngineDeps, model: ModelPort, summary: str
) -> CheckContext:
    remaining = deps.brakes.remaining_seconds(elapsed(deps, state))
    return CheckContext(
        workspace=deps.workspace.root,
        summary=summary,
        load_diff=_once(deps.workspace.diff),
        model=model,
        env=dict(deps.check_env),
        timeout=CHECK_TIMEOUT_CAP if remaining is None else max(remaining, 0.001),
        turn=state.current.number if state.current else 0,
    )


def _once(load: Callable[[], Awaitable[str]]) -> Callable[[], Awaitable[str]]:
    """The diff is computed on first use (git costs a few ms a turn) and then shared."""
    cache: list[str] = []

    async def diff() -> str:
        if not cache:
            cache.append(await load())
        return cache[0]

    return diff


def _judge_verdict(state: RunState, deps: EngineDeps, verdict: Verdict) -> Done | None:
    """Update passes, findings and stuck detection; say whether the run is over."""
    needed = deps.workflow.exit.passes
    stuck = state.stuck.observe(verdict)
    if verdict.passed:
        state.consecutive_passes += 1
        if state.consecutive_passes >= needed:
            state.findings = ""
            return Done(status="passed", reason=f"exit condition held {needed} time(s) in a row")
        state.findings = (
            f"All checks passed ({state.consecutive_passes} of {needed} consecutive passes "
            "needed). Keep the workspace passing; change nothing that is not needed."
        )
        return None
    state.consecutive_passes = 0
    state.findings = verdict.findings
    if stuck:
        return Done(status="stuck", reason="the same failing findings three turns in a row")
    return None


def _turn_record(
    state: RunState, deps: EngineDeps, turn: TurnInProgress, verdict: Verdict
) -> TurnRecord:
    return TurnRecord(
        run_id=deps.run_id,
        number=turn.number,
        maker_summary=turn.summary,
        tool_calls=tuple(turn.tool_calls),
        verdict=verdict,
        usage=state.usage.minus(turn.usage_before),
        steps=turn.steps,
        started_at=turn.started_at,
        ended_at=deps.clock.now(),
        elapsed_s=elapsed(deps, state),
        consecutive_passes=state.consecutive_passes,
        findings=state.findings,
    )
