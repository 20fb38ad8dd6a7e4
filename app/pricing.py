"""Prices per model: litellm's packaged cost map, else the configured fallback (never free)."""

from __future__ import annotations

from collections.abc import Callable

import structlog

from loops.usage import Price

log = structlog.get_logger("app.pricing")


class PriceBook:
    def __init__(self, lookup: Callable[[str], Price | None] | None, fallback: Price) -> None:
        self._lookup = lookup
        self._fallback = fallback
        self._cache: dict[str, Price] = {}

    def __call__(self, model: str) -> Price:
        price = self._cache.get(model)
        if price is None:
            price = self._resolve(model)
            self._cache[model] = price
        return price

    def _resolve(self, model: str) -> Price:
        found = self._lookup(model) if self._lookup is not None else None
        if found is not None:
            return found
        log.info(
            "model_price_unknown",
            model=model,
            fallback_input_per_token=self._fallback.input_per_token,
            fallback_output_per_token=self._fallback.output_per_token,
        )
        return self._fallback


def fallback_price(input_usd_per_mtok: float, output_usd_per_mtok: float) -> Price:
    return Price(
        input_per_token=input_usd_per_mtok / 1_000_000,
        output_per_token=output_usd_per_mtok / 1_000_000,
        known=False,
    )
