"""What a run has consumed, and what model calls cost."""

from __future__ import annotations

import math
from dataclasses import dataclass

from loops.model import CallUsage


@dataclass(frozen=True, kw_only=True)
class Price:
    """Dollars per token. A model with no known price gets the configured fallback price."""

    input_per_token: float
    output_per_token: float
    known: bool = True

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return input_tokens * self.input_per_token + output_tokens * self.output_per_token

    def affordable_output_tokens(self, dollars: float) -> int:
        if self.output_per_token <= 0:
            return 2**31
        return max(0, math.floor(dollars / self.output_per_token))


@dataclass(kw_only=True)
class Usage:
    """Totals for a run (or one turn). Only `add` changes the token and dollar figures."""

    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    model_calls: int = 0
    tool_calls: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def add(self, call: CallUsage, price: Price) -> float:
        """Add one model call; returns the dollars it cost (the provider's figure when known)."""
        cost = call.cost_usd
        if cost is None or (cost == 0 and not price.known):
            cost = price.cost(call.input_tokens, call.output_tokens)
        self.input_tokens += call.input_tokens
        self.output_tokens += call.output_tokens
        self.cost_usd += cost
        self.model_calls += 1
        return cost

    def merge(self, other: Usage) -> None:
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cost_usd += other.cost_usd
        self.model_calls += other.model_calls
        self.tool_calls += other.tool_calls

    def copy(self) -> Usage:
        return Usage(
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cost_usd=self.cost_usd,
            model_calls=self.model_calls,
            tool_calls=self.tool_calls,
        )

    def minus(self, earlier: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens - earlier.input_tokens,
            output_tokens=self.output_tokens - earlier.output_tokens,
            cost_usd=self.cost_usd - earlier.cost_usd,
            model_calls=self.model_calls - earlier.model_calls,
            tool_calls=self.tool_calls - earlier.tool_calls,
        )
