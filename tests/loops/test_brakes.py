"""Brakes trip exactly at their limits, and token and dollar budgets are never overshot."""

from __future__ import annotations

import re

import pytest

from loops.brakes import MIN_OUTPUT_TOKENS, Brakes
from loops.budget import BudgetedModel, RetryPolicy, estimate_tokens
from loops.errors import (
    BrakeTripped,
    ModelRateLimited,
    ModelRequestError,
    ModelTimeout,
    ModelUnavailable,
)
from loops.model import CallUsage, Message, ModelRequest, ModelResponse
from loops.testing import FakeClock, FunctionModel, ScriptedModel, reply
from loops.usage import Price, Usage

PRICE = Price(input_per_token=1e-6, output_per_token=4e-6)
REQUEST = ModelRequest(model="m", messages=(Message(role="user", content="x" * 300),))
NO_LIMITS = Brakes(max_total_tokens=None, max_cost_usd=None, max_wall_seconds=None)


def honest_model(output_tokens: int = 200) -> FunctionModel:
    """Reports exactly the input the engine estimated and as much output as it may produce."""

    def answer(request: ModelRequest) -> ModelResponse:
        usage = CallUsage(input_tokens=estimate_tokens(request), output_tokens=output_tokens)
        return ModelResponse(text="ok", usage=usage)

    return FunctionModel(answer)


def metered(inner: object, brakes: Brakes, clock: FakeClock | None = None) -> BudgetedModel:
    clock = clock or FakeClock()
    start = clock.monotonic()
    return BudgetedModel(
        inner,  # type: ignore[arg-type]
        brakes=brakes,
        usage=Usage(),
        elapsed=lambda: clock.monotonic() - start,
        clock=clock,
        prices=lambda _model: PRICE,
        retry=RetryPolicy(max_attempts=4, base_delay=1.0, jitter=0.0),
    )


async def drive(model: BudgetedModel, calls: int = 1000) -> BrakeTripped:
    for _ in range(calls):
        try:
            await model.complete(REQUEST)
        except BrakeTripped as exc:
            return exc
    raise AssertionError("no brake tripped")


@pytest.mark.parametrize(
    ("brake", "limit", "figure"),
    [
        ("max_total_tokens", 2_000, lambda u: u.total_tokens),
        ("max_output_tokens", 900, lambda u: u.output_tokens),
        ("max_input_tokens", 1_000, lambda u: u.input_tokens),
    ],
)
async def test_token_brakes_trip_at_the_limit_and_are_never_overshot(brake, limit, figure):
    fields = {"max_total_tokens": None, "max_cost_usd": None, "max_wall_seconds": None}
    model = metered(honest_model(), Brakes(**{**fields, brake: limit}))
    exc = await drive(model)
    assert exc.brake == brake
    assert exc.limit == limit
    assert figure(model.usage) <= limit
    assert f"{brake} of {limit} reached" in str(exc)
    assert f"observed={exc.observed:g}" in str(exc)
    # Stopped at the limit, not well short of it: less than one more call was left.
    assert limit - figure(model.usage) < estimate_tokens(REQUEST) + 200


async def test_output_is_capped_so_the_last_call_lands_exactly_on_the_limit():
    model = metered(
        honest_model(output_tokens=10_000), Brakes(**{**_none(), "max_output_tokens": 500})
    )
    exc = await drive(model)
    assert model.usage.output_tokens == 500
    assert exc.observed == 500
    assert model.inner.requests[0].max_tokens == 500  # type: ignore[attr-defined]


async def test_cost_brake_is_never_overshot_and_names_the_figures():
    model = metered(honest_model(), Brakes(**{**_none(), "max_cost_usd": 0.01}))
    exc = await drive(model)
    assert exc.brake == "max_cost_usd"
    assert model.usage.cost_usd <= 0.01 + 1e-12
    assert re.search(r"max_cost_usd of 0\.01 reached \(observed=0\.\d+\)", str(exc))


async def test_a_call_that_cannot_fit_is_not_made():
    inner = honest_model()
    big = Brakes(
        **{**_none(), "max_total_tokens": estimate_tokens(REQUEST) + MIN_OUTPUT_TOKENS - 1}
    )
    model = metered(inner, big)
    with pytest.raises(BrakeTripped, match="max_total_tokens"):
        await model.complete(REQUEST)
    assert inner.requests == []


async def test_unknown_price_counts_through_the_fallback():
    fallback = Price(input_per_token=1e-5, output_per_token=3e-5, known=False)
    usage = Usage()
    usage.add(CallUsage(input_tokens=1000, output_tokens=100, cost_usd=None), fallback)
    assert usage.cost_usd == pytest.approx(0.013)


async def test_wall_time_brake():
    clock = FakeClock()
    model = metered(honest_model(), Brakes(**{**_none(), "max_wall_seconds": 60}), clock)
    await model.complete(REQUEST)
    clock.advance(60)
    with pytest.raises(BrakeTripped, match=r"max_wall_seconds of 60 reached \(observed=60\)"):
        await model.complete(REQUEST)


async def test_retries_honour_retry_after_then_succeed():
    clock = FakeClock()
    inner = ScriptedModel(
        [ModelRateLimited("429", retry_after=7), ModelUnavailable("502"), reply("ok")]
    )
    model = metered(inner, NO_LIMITS, clock)
    response = await model.complete(REQUEST)
    assert response.text == "ok"
    assert clock.sleeps == [7, 2.0]
    assert model.usage.model_calls == 1


async def test_retries_give_up_after_max_attempts():
    inner = ScriptedModel([ModelUnavailable("503")] * 4)
    with pytest.raises(ModelUnavailable):
        await metered(inner, NO_LIMITS).complete(REQUEST)
    assert inner.remaining == 0


async def test_request_errors_are_not_retried():
    inner = ScriptedModel([ModelRequestError("401 bad key"), reply("never")])
    with pytest.raises(ModelRequestError):
        await metered(inner, NO_LIMITS).complete(REQUEST)
    assert inner.remaining == 1


async def test_a_retry_that_would_outlast_the_wall_brake_trips_it():
    clock = FakeClock()
    inner = ScriptedModel([ModelRateLimited("429", retry_after=120)])
    model = metered(inner, Brakes(**{**_none(), "max_wall_seconds": 60}), clock)
    with pytest.raises(BrakeTripped, match="max_wall_seconds"):
        await model.complete(REQUEST)
    assert clock.sleeps == []


async def test_per_call_timeout_is_retried_as_a_timeout():
    import asyncio

    async def slow(request: ModelRequest) -> ModelResponse:
        await asyncio.sleep(5)
        return reply("late")

    calls = [slow, slow, slow, slow]
    inner = FunctionModel(lambda r: calls.pop(0)(r))
    brakes = Brakes(**{**_none(), "per_call_timeout_seconds": 0.05})
    with pytest.raises(ModelTimeout, match=r"no answer within 0\.05s"):
        await metered(inner, brakes).complete(REQUEST)
    assert len(inner.requests) == 4


def test_brakes_extended_for_resume():
    brakes = Brakes(max_turns=3, max_cost_usd=1.0, max_total_tokens=1000)
    more = brakes.extended(turns=2, cost_usd=0.5, tokens=500)
    assert (more.max_turns, more.max_cost_usd, more.max_total_tokens) == (5, 1.5, 1500)


def test_turn_brake():
    with pytest.raises(BrakeTripped, match=r"max_turns of 3 reached \(observed=3\)"):
        Brakes(max_turns=3).check_turn(3)
    Brakes(max_turns=3).check_turn(2)


def _none() -> dict[str, None]:
    return {"max_total_tokens": None, "max_cost_usd": None, "max_wall_seconds": None}
