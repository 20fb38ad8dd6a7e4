"""Brakes: one frozen value of limits, checked before and after every model call.

Before a call the brakes work out how many output tokens the remaining token and dollar budgets
can pay for, given a conservative estimate of the call's input; the call's `max_tokens` is set to
that, so a budget is never overshot. If not even `MIN_OUTPUT_TOKENS` fit, the brake trips without
calling.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from loops.errors import BrakeTripped
from loops.usage import Price, Usage

MIN_OUTPUT_TOKENS = 16
"""A call that may not produce even this many tokens is not worth making."""


@dataclass(frozen=True, kw_only=True)
class CallAllowance:
    max_tokens: int | None
    timeout: float


@dataclass(frozen=True, kw_only=True)
class Brakes:
    max_turns: int = 6
    max_steps_per_turn: int = 30
    max_input_tokens: int | None = None
    max_output_tokens: int | None = None
    max_total_tokens: int | None = 400_000
    max_cost_usd: float | None = 2.0
    max_wall_seconds: float | None = 1800.0
    per_call_timeout_seconds: float = 120.0

    def extended(
        self, *, turns: int = 0, cost_usd: float = 0.0, tokens: int = 0, seconds: float = 0.0
    ) -> Brakes:
        """The same brakes with more budget, for resuming a braked run."""

        def more(limit: float | None, extra: float) -> float | None:
            return None if limit is None else limit + extra

        return dataclasses.replace(
            self,
            max_turns=self.max_turns + turns,
            max_cost_usd=more(self.max_cost_usd, cost_usd),
            max_total_tokens=_int_or_none(more(self.max_total_tokens, tokens)),
            max_wall_seconds=more(self.max_wall_seconds, seconds),
        )

    def check_turn(self, turns_done: int) -> None:
        if turns_done >= self.max_turns:
            raise BrakeTripped("max_turns", self.max_turns, turns_done)

    def check_wall(self, elapsed: float) -> None:
        if self.max_wall_seconds is not None and elapsed >= self.max_wall_seconds:
            raise BrakeTripped("max_wall_seconds", self.max_wall_seconds, round(elapsed, 3))

    def remaining_seconds(self, elapsed: float) -> float | None:
        if self.max_wall_seconds is None:
            return None
        return max(0.0, self.max_wall_seconds - elapsed)

    def check_before_call(
        self, usage: Usage, *, estimated_input_tokens: int, price: Price, elapsed: float
    ) -> CallAllowance:
        """Raise `BrakeTripped` if the call cannot fit; else say how large it may be."""
        self.check_wall(elapsed)
        est = estimated_input_tokens
        caps: list[int] = []
        if self.max_input_tokens is not None and usage.input_tokens + est > self.max_input_tokens:
            raise BrakeTripped(
                "max_input_tokens",
                self.max_input_tokens,
                usage.input_tokens,
                f"the next call needs about {est} more",
            )
        if self.max_output_tokens is not None:
            caps.append(self._fit("max_output_tokens", self.max_output_tokens, usage.output_tokens))
        if self.max_total_tokens is not None:
            caps.append(
                self._fit("max_total_tokens", self.max_total_tokens, usage.total_tokens + est)
            )
        if self.max_cost_usd is not None:
            caps.append(self._fit_cost(usage.cost_usd, price.cost(est, 0), price))
        timeout = self.per_call_timeout_seconds
        remaining = self.remaining_seconds(elapsed)
        if remaining is not None:
            timeout = min(timeout, remaining)
        return CallAllowance(max_tokens=min(caps) if caps else None, timeout=timeout)

    def check_after_call(self, usage: Usage, *, elapsed: float) -> None:
        """Trip once a budget is used up, so the run stops at its limit, not one call later."""
        for brake, limit, observed in (
            ("max_input_tokens", self.max_input_tokens, usage.input_tokens),
            ("max_output_tokens", self.max_output_tokens, usage.output_tokens),
            ("max_total_tokens", self.max_total_tokens, usage.total_tokens),
        ):
            if limit is not None and observed >= limit:
                raise BrakeTripped(brake, limit, observed)
        if self.max_cost_usd is not None and usage.cost_usd >= self.max_cost_usd - 1e-12:
            raise BrakeTripped("max_cost_usd", self.max_cost_usd, round(usage.cost_usd, 6))
        self.check_wall(elapsed)

    @staticmethod
    def _fit(brake: str, limit: int, committed: int) -> int:
        room = limit - committed
        if room < MIN_OUTPUT_TOKENS:
            raise BrakeTripped(
                brake, limit, committed, f"room for {max(room, 0)} output tokens is too little"
            )
        return room

    def _fit_cost(self, spent: float, input_cost: float, price: Price) -> int:
        assert self.max_cost_usd is not None
        room = price.affordable_output_tokens(self.max_cost_usd - spent - input_cost)
        if room < MIN_OUTPUT_TOKENS:
            raise BrakeTripped(
                "max_cost_usd",
                self.max_cost_usd,
                round(spent, 6),
                f"the next call's input alone would cost about {input_cost:.4f}",
            )
        return room


def _int_or_none(value: float | None) -> int | None:
    return None if value is None else int(value)
