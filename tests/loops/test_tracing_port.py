"""The tracing port without Opik: spans a run's tracer records, through a list-backed sink."""

from __future__ import annotations

import uuid

import pytest

from loops.checking import CheckResult, Verdict
from loops.errors import ModelRequestError
from loops.events import CheckFinished, Outcome, RunFinished, TurnStarted
from loops.model import Message, ModelRequest
from loops.testing import FakeClock, ScriptedModel, reply
from loops.tracing import RunTracer, SpanRecord, TraceFacts, TraceRecord, uuid7
from loops.usage import Price, Usage

PRICE = Price(input_per_token=1e-6, output_per_token=2e-6, known=False)


class ListSink:
    def __init__(self) -> None:
        self.items: list[SpanRecord | TraceRecord] = []

    def record(self, item: SpanRecord | TraceRecord) -> None:
        self.items.append(item)


class BrokenSink:
    def record(self, item: SpanRecord | TraceRecord) -> None:
        raise RuntimeError("sink bug")


def tracer(sink: ListSink | BrokenSink, *, content: bool = True) -> RunTracer:
    facts = TraceFacts(trace_id=uuid7(), name="demo", started_at=1.0, tags=("workflow:demo",))
    return RunTracer(
        sink=sink, facts=facts, clock=FakeClock(), prices=lambda _m: PRICE, capture_content=content
    )


def request(text: str = "hello") -> ModelRequest:
    return ModelRequest(model="openai/gpt-x", messages=(Message(role="user", content=text),))


async def test_every_call_through_the_port_is_an_llm_span_failed_ones_too() -> None:
    sink = ListSink()
    run = tracer(sink)
    model = run.model(
        ScriptedModel([reply("hi", input_tokens=10, output_tokens=5), ModelRequestError("bad key")])
    )
    run(TurnStarted(run_id="r", turn=1, max_turns=3))

    await model.complete(request())
    with pytest.raises(ModelRequestError):
        await model.complete(request())

    ok, failed = sink.items
    assert isinstance(ok, SpanRecord)
    assert isinstance(failed, SpanRecord)
    assert ok.kind == failed.kind == "llm"
    assert ok.parent_id == failed.parent_id == run.turn.span_id  # type: ignore[union-attr]
    assert ok.usage is not None
    assert ok.usage.total_tokens == 15
    assert ok.cost_usd == pytest.approx(10e-6 + 10e-6)  # no provider cost: the price book's
    assert ok.input["messages"] == [{"role": "user", "content": "hello"}]
    assert ok.error is None
    assert failed.error is not None
    assert failed.error.type == "ModelRequestError"
    assert failed.error.message == "bad key"
    assert failed.provider == "openai"


async def test_content_off_records_no_prompt_or_completion() -> None:
    sink = ListSink()
    model = tracer(sink, content=False).model(ScriptedModel([reply("secret plan")]))

    await model.complete(request("private prompt"))

    [span] = sink.items
    assert isinstance(span, SpanRecord)
    assert "messages" not in span.input
    assert "text" not in span.output


def test_trace_scores_the_last_turns_checks_and_closes_a_cut_turn() -> None:
    sink = ListSink()
    run = tracer(sink)
    run(TurnStarted(run_id="r", turn=1, max_turns=3))
    for name, passed in (("tests", True), ("lint", False)):
        run(CheckFinished(run_id="r", turn=1, result=CheckResult(name=name, passed=passed)))
    run.last_verdict = Verdict(
        passed=False,
        results=(CheckResult(name="tests", passed=True), CheckResult(name="lint", passed=False)),
    )
    run.last_turn = 1
    outcome = Outcome(
        run_id="r",
        status="braked",
        reason="max_turns of 1 reached",
        turns=1,
        usage=Usage(),
        elapsed_s=1.0,
        brake="max_turns",
    )
    run(RunFinished(outcome=outcome))
    run(RunFinished(outcome=outcome))  # a session's trace is recorded once

    checks = [i for i in sink.items if isinstance(i, SpanRecord) and i.kind == "check"]
    turn = next(i for i in sink.items if isinstance(i, SpanRecord) and i.kind == "turn")
    [trace] = [i for i in sink.items if isinstance(i, TraceRecord)]
    assert [c.metadata["verdict"] for c in checks] == ["passed", "failed"]
    assert {c.parent_id for c in checks} == {turn.span_id}
    assert turn.error is not None
    assert turn.error.type == "TurnInterrupted"
    assert trace.tags == ("workflow:demo", "status:braked")
    scores = {s.name: s for s in trace.scores}
    assert scores["passed"].value == 0.0
    assert scores["passed"].reason == "max_turns of 1 reached"
    assert scores["checks"].value == 0.5
    assert scores["checks"].reason == "1 of 2 checks passed on turn 1; failing: lint"


async def test_a_failing_sink_never_reaches_the_run() -> None:
    model = tracer(BrokenSink()).model(ScriptedModel([reply("fine")]))

    response = await model.complete(request())

    assert response.text == "fine"


def test_uuid7_is_version_7_and_seeded_ids_are_stable() -> None:
    first = uuid.UUID(uuid7(1_700_000_000.5, seed="run-1"))
    assert first.version == 7
    assert first.variant == uuid.RFC_4122
    assert uuid7(1_700_000_000.5, seed="run-1") == str(first)
    assert uuid7(1_700_000_000.5, seed="run-2") != str(first)
    assert int(first.hex[:12], 16) == 1_700_000_000_500
