"""The metered model: every model call of a run (maker and judge) goes through here.

`BudgetedModel` wraps a `ModelPort`. Before each call it asks the brakes how large the call may
be, after it adds the usage (the one place usage is added up) and checks the brakes again.
Retryable model errors (429, 5xx, timeouts) are retried with exponential backoff and jitter,
honouring `Retry-After`, and never past the wall-time brake.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from loops.brakes import Brakes
from loops.clock import Clock
from loops.errors import BrakeTripped, ModelRetryableError, ModelTimeout
from loops.model import ModelPort, ModelRequest, ModelResponse
from loops.usage import Price, Usage

log = structlog.get_logger("loops.budget")

TokenEstimator = Callable[[ModelRequest], int]
PriceBook = Callable[[str], Price]


def estimate_tokens(request: ModelRequest) -> int:
    """A deliberately generous estimate of a request's input tokens.

    BPE tokenizers average about four bytes a token on English and code; counting one token per
    three bytes plus a per-message overhead overestimates, which is the safe side for budgets.
    """
    size = 0
    for message in request.messages:
        size += len(message.content.encode()) + 12
        for call in message.tool_calls:
            size += len(call.name) + len(call.arguments.encode()) + 12
    for tool in request.tools:
        size += len(json.dumps(tool.to_openai()).encode())
    return size // 3 + 8


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    max_attempts: int = 6
    base_delay: float = 1.0
    max_delay: float = 60.0
    jitter: float = 0.25  # fraction of the delay, added at random

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before attempt `attempt + 1` (attempt counts from 1)."""
        backoff = min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))
        backoff += backoff * self.jitter * random.random()
        if retry_after is not None and retry_after > 0:
            return max(retry_after, backoff)
        return backoff


class BudgetedModel:
    """A `ModelPort` that meters, caps and retries calls against a run's brakes.

    Args:
        inner: the real model (litellm adapter, or a test double).
        brakes: the run's frozen brakes.
        usage: the run's running totals; mutated here and nowhere else.
        elapsed: seconds of wall time the run has used, including earlier sessions.
    """

    def __init__(
        self,
        inner: ModelPort,
        *,
        brakes: Brakes,
        usage: Usage,
        elapsed: Callable[[], float],
        clock: Clock,
        prices: PriceBook,
        estimator: TokenEstimator = estimate_tokens,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.inner = inner
        self.brakes = brakes
        self.usage = usage
        self.elapsed = elapsed
        self.clock = clock
        self.prices = prices
        self.estimator = estimator
        self.retry = retry or RetryPolicy()

    async def complete(self, request: ModelRequest) -> ModelResponse:
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._attempt(request)
            except ModelRetryableError as exc:
                await self._backoff(attempt, exc)

    async def _attempt(self, request: ModelRequest) -> ModelResponse:
        price = self.prices(request.model)
        allowance = self.brakes.check_before_call(
            self.usage,
            estimated_input_tokens=self.estimator(request),
            price=price,
            elapsed=self.elapsed(),
        )
        capped = dataclasses.replace(
            request,
            max_tokens=_smaller(request.max_tokens, allowance.max_tokens),
            timeout=allowance.timeout,
        )
        try:
            async with asyncio.timeout(allowance.timeout):
                response = await self.inner.complete(capped)
        except TimeoutError as exc:
            raise ModelTimeout(f"no answer within {allowance.timeout:g}s") from exc
        self.usage.add(response.usage, price)
        self.brakes.check_after_call(self.usage, elapsed=self.elapsed())
        return response

    async def _backoff(self, attempt: int, exc: ModelRetryableError) -> None:
        if attempt >= self.retry.max_attempts:
            raise exc
        delay = self.retry.delay(attempt, exc.retry_after)
        remaining = self.brakes.remaining_seconds(self.elapsed())
        if remaining is not None and delay >= remaining:
            assert self.brakes.max_wall_seconds is not None
            raise BrakeTripped(
                "max_wall_seconds",
                self.brakes.max_wall_seconds,
                round(self.elapsed(), 3),
                f"retrying {type(exc).__name__} would take {delay:.1f}s more",
            ) from exc
        log.warning(
            "model_call_retrying",
            attempt=attempt,
            delay_s=round(delay, 3),
            error=type(exc).__name__,
            reason=str(exc)[:200],
        )
        await self.clock.sleep(delay)


def _smaller(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)
