"""The tracing port: a run's finished spans and its trace, handed to a sink.

`RunTracer` follows one run: it wraps the model port (`TracedModel`), so every model call,
failed and retried ones included, becomes an `llm` span by construction; and, as a listener of
the engine's events, it records a span per turn, a `tool` span per tool call, a span per check
and, when the run ends, the trace with its feedback scores. Spans are recorded finished (one
write each, never updated), under the turn that made them.

A `TraceSink` must never raise or block: it queues, and a slow or absent backend costs the run
nothing. Prompts, completions, tool arguments and results, findings and the instruction are
content: they are captured only when `capture_content` is on (redaction is the sink's job).
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import structlog

from loops.checking import CheckResult, Verdict
from loops.clock import Clock
from loops.events import (
    CheckFinished,
    Event,
    Outcome,
    RunFinished,
    ToolFinished,
    TurnFinished,
    TurnStarted,
)
from loops.model import CallUsage, ModelPort, ModelRequest, ModelResponse
from loops.usage import Price, Usage

log = structlog.get_logger("loops.tracing")

SpanKind = Literal["turn", "llm", "tool", "check"]
Json = dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class TraceError:
    type: str
    message: str


@dataclass(frozen=True, kw_only=True)
class SpanRecord:
    """One finished span. Times are unix seconds."""

    trace_id: str
    span_id: str
    parent_id: str | None
    kind: SpanKind
    name: str
    start: float
    end: float
    input: Json = field(default_factory=dict)
    output: Json = field(default_factory=dict)
    metadata: Json = field(default_factory=dict)
    model: str | None = None
    provider: str | None = None
    usage: CallUsage | None = None
    cost_usd: float | None = None
    error: TraceError | None = None


@dataclass(frozen=True, kw_only=True)
class Score:
    name: str
    value: float
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class TraceRecord:
    """A run's trace, recorded when a session of the run ends (again, with the same id, when a
    resumed session ends)."""

    trace_id: str
    name: str
    start: float
    end: float
    input: Json = field(default_factory=dict)
    output: Json = field(default_factory=dict)
    metadata: Json = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    thread_id: str | None = None
    error: TraceError | None = None
    scores: tuple[Score, ...] = ()


class TraceSink(Protocol):
    def record(self, item: SpanRecord | TraceRecord) -> None:
        """Queue `item` for sending; never raise, never block."""
        ...


def uuid7(at: float | None = None, seed: str | None = None) -> str:
    """A version 7 UUID for `at` (unix seconds); with `seed`, the same seed and time always give
    the same id (a run keeps its trace id across sessions)."""
    ms = int((time.time() if at is None else at) * 1000) & ((1 << 48) - 1)
    tail = hashlib.sha256(seed.encode()).digest()[:10] if seed is not None else os.urandom(10)
    rand = int.from_bytes(tail, "big") >> 6  # 74 random bits
    value = (
        (ms << 80) | (0x7 << 76) | ((rand >> 62) << 64) | (0b10 << 62) | (rand & ((1 << 62) - 1))
    )
    return str(uuid.UUID(int=value))


@dataclass(frozen=True, kw_only=True)
class TraceFacts:
    """What the trace says about the run beyond the engine's events (set by whoever starts it)."""

    trace_id: str
    name: str
    started_at: float
    input: Json = field(default_factory=dict)
    metadata: Json = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    thread_id: str | None = None


@dataclass(kw_only=True)
class _OpenTurn:
    span_id: str
    number: int
    start: float


class RunTracer:
    """Turns one run's model calls and engine events into spans and its trace.

    Use `model(inner)` as the run's model port and the tracer itself as a listener.
    """

    def __init__(
        self,
        *,
        sink: TraceSink,
        facts: TraceFacts,
        clock: Clock,
        prices: Callable[[str], Price],
        capture_content: bool,
    ) -> None:
        self.sink = sink
        self.facts = facts
        self.clock = clock
        self.prices = prices
        self.capture_content = capture_content
        self.turn: _OpenTurn | None = None
        self.last_verdict: Verdict | None = None
        self.last_turn = 0
        self.finished = False

    def model(self, inner: ModelPort) -> TracedModel:
        return TracedModel(inner, self)

    def __call__(self, event: Event) -> None:
        match event:
            case TurnStarted(turn=number):
                self.turn = _OpenTurn(span_id=uuid7(), number=number, start=self.clock.now())
            case ToolFinished():
                self._tool(event)
            case CheckFinished(turn=number, result=result):
                self._check(number, result)
            case TurnFinished(record=record):
                self._close_turn(record.verdict, record.maker_summary, record.usage, None)
            case RunFinished(outcome=outcome):
                self.finish(outcome)

    def finish(self, outcome: Outcome) -> None:
        """Record the trace (once per session); a turn cut short is closed with the reason."""
        if self.finished:
            return
        self.finished = True
        if self.turn is not None:
            cut = TraceError(type="TurnInterrupted", message=outcome.reason)
            self._close_turn(None, "", None, cut)
        self._emit(self._trace(outcome))

    def span(self, kind: SpanKind, name: str, start: float, **values: Any) -> None:
        """Record a finished span under the open turn (or at the trace's root)."""
        parent = self.turn.span_id if self.turn is not None else None
        record = SpanRecord(
            trace_id=self.facts.trace_id,
            span_id=uuid7(start),
            parent_id=parent,
            kind=kind,
            name=name,
            start=start,
            end=values.pop("end", None) or self.clock.now(),
            **values,
        )
        self._emit(record)

    def content(self, value: Any) -> Any:
        return value if self.capture_content else None

    def _emit(self, item: SpanRecord | TraceRecord) -> None:
        try:
            self.sink.record(item)
        except Exception:  # a sink must not raise; if one does, the run still goes on
            log.exception("trace_sink_failed", item=type(item).__name__)

    def _tool(self, event: ToolFinished) -> None:
        record = event.record
        error = (
            TraceError(type="ToolError", message=record.result[:500]) if record.is_error else None
        )
        self.span(
            "tool",
            record.name,
            event.started_at,
            input=_kept({"arguments": self.content(record.arguments)}),
            output=_kept({"result": self.content(record.result)}),
            metadata={"call_id": event.call_id, "turn": event.turn, "is_error": record.is_error},
            error=error,
            end=event.started_at + record.duration_s,
        )

    def _check(self, number: int, result: CheckResult) -> None:
        end = self.clock.now()
        self.span(
            "check",
            result.name,
            end - result.duration_s,
            input={"check": result.name},
            output=_kept(
                {
                    "passed": result.passed,
                    "exit_code": result.exit_code,
                    "score": result.score,
                    "findings": self.content(result.findings) or None,
                }
            ),
            metadata={"turn": number, "verdict": "passed" if result.passed else "failed"},
            end=end,
        )

    def _close_turn(
        self,
        verdict: Verdict | None,
        summary: str,
        usage: Usage | None,
        error: TraceError | None,
    ) -> None:
        turn, self.turn = self.turn, None
        if turn is None:
            return
        self.last_turn = turn.number
        if verdict is not None:
            self.last_verdict = verdict
        output: Json = {"summary": self.content(summary) or None}
        if verdict is not None:
            output["passed"] = verdict.passed
            output["checks"] = {r.name: r.passed for r in verdict.results}
        record = SpanRecord(
            trace_id=self.facts.trace_id,
            span_id=turn.span_id,
            parent_id=None,
            kind="turn",
            name=f"turn {turn.number}",
            start=turn.start,
            end=self.clock.now(),
            input={"turn": turn.number},
            output=_kept(output),
            metadata=_usage_json(usage) if usage is not None else {},
            error=error,
        )
        self._emit(record)

    def _trace(self, outcome: Outcome) -> TraceRecord:
        facts = self.facts
        error = (
            TraceError(type="RunErrored", message=outcome.reason)
            if outcome.status == "errored"
            else None
        )
        return TraceRecord(
            trace_id=facts.trace_id,
            name=facts.name,
            start=facts.started_at,
            end=self.clock.now(),
            input=facts.input,
            output={
                "status": outcome.status,
                "reason": outcome.reason,
                "brake": outcome.brake,
                "turns": outcome.turns,
                "elapsed_s": outcome.elapsed_s,
                "usage": _usage_json(outcome.usage),
            },
            metadata=facts.metadata,
            tags=(*facts.tags, f"status:{outcome.status}"),
            thread_id=facts.thread_id,
            error=error,
            scores=self._scores(outcome),
        )

    def _scores(self, outcome: Outcome) -> tuple[Score, ...]:
        passed = Score(
            name="passed", value=1.0 if outcome.status == "passed" else 0.0, reason=outcome.reason
        )
        verdict = self.last_verdict
        if verdict is None or not verdict.results:
            return (passed,)
        ok = [r.name for r in verdict.results if r.passed]
        failed = [r.name for r in verdict.results if not r.passed]
        reason = f"{len(ok)} of {len(verdict.results)} checks passed on turn {self.last_turn}"
        if failed:
            reason += f"; failing: {', '.join(failed)}"
        checks = Score(name="checks", value=len(ok) / len(verdict.results), reason=reason)
        return (passed, checks)


class TracedModel:
    """A `ModelPort` that records an `llm` span for every call through it, failures included."""

    def __init__(self, inner: ModelPort, tracer: RunTracer) -> None:
        self.inner = inner
        self.tracer = tracer
        # The price book looks this up on the port it is given.
        self.price = getattr(inner, "price", None)

    async def complete(self, request: ModelRequest) -> ModelResponse:
        start = self.tracer.clock.now()
        try:
            response = await self.inner.complete(request)
        except BaseException as exc:  # cancels and timeouts too: the call happened
            self._record(request, start, None, exc)
            raise
        self._record(request, start, response, None)
        return response

    def _record(
        self,
        request: ModelRequest,
        start: float,
        response: ModelResponse | None,
        exc: BaseException | None,
    ) -> None:
        tracer = self.tracer
        metadata: Json = {"purpose": request.purpose, "tools": len(request.tools)}
        if request.max_tokens is not None:
            metadata["max_tokens"] = request.max_tokens
        values: dict[str, Any] = {
            "input": _kept({"messages": tracer.content(_messages(request))}),
            "metadata": metadata,
            "model": request.model,
            "provider": _provider(request.model),
        }
        if response is not None:
            metadata["finish_reason"] = response.finish_reason
            values["model"] = response.model or request.model
            values["provider"] = response.provider or values["provider"]
            values["usage"] = response.usage
            values["cost_usd"] = Usage().add(response.usage, tracer.prices(request.model))
            values["output"] = _kept(
                {
                    "text": tracer.content(response.text) or None,
                    "tool_calls": [c.name for c in response.tool_calls] or None,
                    "arguments": tracer.content([c.arguments for c in response.tool_calls]) or None,
                }
            )
        if exc is not None:
            message = str(exc) or type(exc).__name__
            values["error"] = TraceError(type=type(exc).__name__, message=message[:2000])
        tracer.span("llm", f"{request.purpose}: {request.model}", start, **values)


def _messages(request: ModelRequest) -> list[Json]:
    return [m.to_openai() for m in request.messages]


def _provider(model: str) -> str | None:
    prefix, sep, _ = model.partition("/")
    return prefix if sep else None


def _usage_json(usage: Usage) -> Json:
    return {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cost_usd": round(usage.cost_usd, 6),
        "model_calls": usage.model_calls,
        "tool_calls": usage.tool_calls,
    }


def _kept(values: Mapping[str, Any]) -> Json:
    return {k: v for k, v in values.items() if v is not None}
