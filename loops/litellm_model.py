"""The model port's litellm adapter: the only module that imports litellm.

litellm costs seconds and hundreds of MB to import, so it is imported on the first call, never
at start-up, and in a worker thread: the event loop that calls it (the service's, answering
webhooks and the API meanwhile) is not held up. It is called with `num_retries=0`: retrying
is the engine's job, inside the brakes. Its exceptions are mapped onto `loops.errors` here, at
the boundary.
"""

from __future__ import annotations

import asyncio
import email.utils
import gc
import os
import time
from functools import cache
from typing import Any

from loops.errors import (
    ModelError,
    ModelRateLimited,
    ModelRequestError,
    ModelTimeout,
    ModelUnavailable,
)
from loops.model import CallUsage, ModelRequest, ModelResponse, ToolCall
from loops.usage import Price

ALLOW_MODEL_REQUESTS = True
"""Tests set this to False so that nothing reaches a real provider by accident."""


@cache
def _litellm() -> Any:
    # The packaged cost map, not a download at import time (there may be no network at all).
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.suppress_debug_info = True
    litellm.telemetry = False
    # The import leaves ~360k objects that live as long as the process; left to the cyclic
    # collector, every full collection walks them all (~0.2 s with the event loop stopped).
    gc.freeze()
    _LOADED.append(litellm)
    return litellm


_LOADED: list[Any] = []
"""litellm once `_litellm` has imported it."""


class LiteLLMModel:
    """Calls any litellm model string (`openai/gpt-4.1-mini`, `anthropic/...`, `ollama/...`)."""

    async def load(self) -> None:
        """Import litellm in a worker thread (a no-op once it is loaded)."""
        if not _LOADED:
            await asyncio.to_thread(_litellm)

    async def complete(self, request: ModelRequest) -> ModelResponse:
        if not ALLOW_MODEL_REQUESTS:
            raise ModelRequestError(
                f"model requests are blocked in this process (model={request.model!r})"
            )
        litellm = _LOADED[0] if _LOADED else await asyncio.to_thread(_litellm)
        try:
            raw = await litellm.acompletion(**_arguments(request))
        except Exception as exc:
            raise map_error(litellm, exc) from exc
        return _response(litellm, request.model, raw)

    def price(self, model: str) -> Price | None:
        """Per-token prices from litellm's packaged cost map, or None when unknown."""
        try:
            info = _litellm().get_model_info(model)
        except Exception:
            return None
        inp, out = info.get("input_cost_per_token"), info.get("output_cost_per_token")
        if not inp and not out:
            return None
        return Price(input_per_token=float(inp or 0.0), output_per_token=float(out or 0.0))


def _arguments(request: ModelRequest) -> dict[str, Any]:
    args: dict[str, Any] = {
        "model": request.model,
        "messages": [m.to_openai() for m in request.messages],
        "num_retries": 0,
        "drop_params": True,
    }
    if request.tools:
        args["tools"] = [t.to_openai() for t in request.tools]
    if request.max_tokens is not None:
        args["max_tokens"] = request.max_tokens
    if request.timeout is not None:
        args["timeout"] = request.timeout
    if request.response_format == "json":
        args["response_format"] = {"type": "json_object"}
    return args


def _response(litellm: Any, model: str, raw: Any) -> ModelResponse:
    choice = raw.choices[0]
    message = choice.message
    calls = tuple(
        ToolCall(
            id=c.id or f"call_{i}",
            name=c.function.name or "",
            arguments=c.function.arguments or "{}",
        )
        for i, c in enumerate(message.tool_calls or ())
    )
    usage = getattr(raw, "usage", None)
    hidden = getattr(raw, "_hidden_params", None) or {}
    return ModelResponse(
        text=message.content or "",
        tool_calls=calls,
        usage=CallUsage(
            input_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            output_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            cost_usd=_cost(litellm, raw),
        ),
        model=str(getattr(raw, "model", None) or model),
        provider=str(hidden.get("custom_llm_provider") or model.partition("/")[0]),
        finish_reason=str(choice.finish_reason or "stop"),
    )


def _cost(litellm: Any, raw: Any) -> float | None:
    """The provider's cost when litellm knows the price; None (never 0) when it does not."""
    try:
        cost = litellm.completion_cost(completion_response=raw)
    except Exception:
        return None
    return float(cost) if cost else None


def map_error(litellm: Any, exc: Exception) -> ModelError:
    name = type(exc).__name__
    message = f"{name}: {str(exc)[:500]}"
    if isinstance(exc, litellm.RateLimitError):
        return ModelRateLimited(message, retry_after=retry_after(exc))
    if isinstance(exc, litellm.Timeout | TimeoutError):
        return ModelTimeout(message)
    if isinstance(exc, litellm.ContextWindowExceededError | litellm.BadRequestError):
        return ModelRequestError(message)
    retryable = (
        litellm.APIConnectionError,
        litellm.InternalServerError,
        litellm.ServiceUnavailableError,
        litellm.BadGatewayError,
    )
    status = getattr(exc, "status_code", None)
    if isinstance(exc, retryable) or (isinstance(status, int) and status >= 500):
        return ModelUnavailable(message, retry_after=retry_after(exc))
    return ModelRequestError(message)


def retry_after(exc: Exception) -> float | None:
    """Seconds from a `Retry-After` header (delta seconds or an HTTP date), if there is one."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    value = headers.get("retry-after") if headers is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_tz(value)
        if parsed is None:
            return None
        return max(0.0, email.utils.mktime_tz(parsed) - time.time())
