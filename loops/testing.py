"""Test doubles that are product code: scripted and function-backed models.

Real model calls are blocked while `ALLOW_MODEL_REQUESTS` in `loops.litellm_model` is False;
these doubles let tests, benchmarks and `regress run --replay` drive the engine offline.
"""

from __future__ import annotations

import dataclasses
import inspect
import itertools
import json
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from loops.model import CallUsage, ModelRequest, ModelResponse, ToolCall
from loops.records import TurnRecord

_ids = itertools.count(1)


def tool_call(name: str, **arguments: Any) -> ToolCall:
    return ToolCall(id=f"call_{next(_ids)}", name=name, arguments=json.dumps(arguments))


def reply(
    text: str = "",
    *calls: ToolCall,
    input_tokens: int = 100,
    output_tokens: int = 20,
    cost_usd: float | None = None,
) -> ModelResponse:
    """A scripted answer: text, tool calls, and the usage the provider would report."""
    return ModelResponse(
        text=text,
        tool_calls=calls,
        usage=CallUsage(input_tokens=input_tokens, output_tokens=output_tokens, cost_usd=cost_usd),
        model="scripted",
        provider="test",
        finish_reason="tool_calls" if calls else "stop",
    )


def _respect_max_tokens(request: ModelRequest, response: ModelResponse) -> ModelResponse:
    """Providers stop at `max_tokens`; so does a double, or budget tests would prove nothing."""
    limit = request.max_tokens
    if limit is None or response.usage.output_tokens <= limit:
        return response
    usage = dataclasses.replace(response.usage, output_tokens=limit)
    return dataclasses.replace(response, usage=usage, finish_reason="length")


class ScriptedModel:
    """Answers from a queue; an exception in the queue is raised instead of answered.

    Every request is kept in `requests` so tests can assert on what the model was shown.
    """

    def __init__(self, script: Iterable[ModelResponse | BaseException]) -> None:
        self._script = list(script)
        self.requests: list[ModelRequest] = []

    @property
    def remaining(self) -> int:
        return len(self._script)

    async def complete(self, request: ModelRequest) -> ModelResponse:
        self.requests.append(request)
        if not self._script:
            raise AssertionError("ScriptedModel ran out of scripted answers")
        item = self._script.pop(0)
        if isinstance(item, BaseException):
            raise item
        return _respect_max_tokens(request, item)


ModelFunction = Callable[[ModelRequest], ModelResponse | Awaitable[ModelResponse]]


class FunctionModel:
    """Answers by calling a function of the request (sync or async)."""

    def __init__(self, function: ModelFunction) -> None:
        self.function = function
        self.requests: list[ModelRequest] = []

    async def complete(self, request: ModelRequest) -> ModelResponse:
        self.requests.append(request)
        result = self.function(request)
        if inspect.isawaitable(result):
            result = await result
        assert isinstance(result, ModelResponse)
        return _respect_max_tokens(request, result)


class FakeClock:
    """A clock that only moves when told to, or when something sleeps on it."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.t = start
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.t

    def now(self) -> float:
        return 1_700_000_000.0 + self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds


class MemoryStore:
    """A `RunStore` that keeps turns in a list; refuses a turn number twice, like the ledger."""

    def __init__(self) -> None:
        self.turns: list[TurnRecord] = []

    async def turn_completed(self, record: TurnRecord) -> None:
        if any(t.run_id == record.run_id and t.number == record.number for t in self.turns):
            raise AssertionError(f"turn {record.number} of run {record.run_id!r} recorded twice")
        self.turns.append(record)
