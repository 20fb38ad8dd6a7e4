"""The gate in front of every `/api` endpoint: a body size limit, the bearer token, and one log
line for every refused request.

It is a route class rather than a dependency because FastAPI reads and parses the body before
it solves dependencies: only here can an unauthenticated or oversized request be refused before
its body is read or parsed.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import structlog
from fastapi import HTTPException
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message

from app.ledger import StorageError
from app.settings import Settings
from app.webhook_bodies import Refused, read_limited
from triggers.api import verify_bearer

log = structlog.get_logger("app.api")

MAX_BODY_BYTES = 1 << 20
BEARER = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="The value of LOOPWRIGHT_API_TOKEN.",
)
"""Declares the scheme in the OpenAPI document; `GuardedRoute` does the checking."""

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class GuardedRoute(APIRoute):
    """An API route that refuses oversized and unauthenticated requests before its handler runs,
    and logs every refusal (its own, the handler's, and FastAPI's validation errors)."""

    def get_route_handler(self) -> Handler:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                _check_declared_size(request)
                _check_bearer(request.app.state.services.settings, request)
                return await handler(await _with_counted_body(request))
            except StarletteHTTPException as exc:
                _rejected(request, exc.status_code, str(exc.detail))
                raise
            except RequestValidationError as exc:
                _rejected(request, 422, describe_errors(exc.errors()))
                raise
            except StorageError as exc:
                raise storage_unavailable(request.url.path, exc) from exc

        return guarded


def storage_unavailable(path: str, exc: StorageError) -> HTTPException:
    """The 503 for a request the ledger failed, logged."""
    log.error("api_storage_failed", path=path, error=str(exc)[:300])
    return HTTPException(503, "the ledger is unavailable; try again later")


def _check_declared_size(request: Request) -> None:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise HTTPException(
            413,
            f"request body of {int(declared)} bytes is over the limit of {MAX_BODY_BYTES} bytes",
        )


def _check_bearer(settings: Settings, request: Request) -> None:
    token = settings.api_token.get_secret_value() if settings.api_token else None
    reason = verify_bearer(request.headers.get("authorization"), token)
    if reason is None:
        return
    if not token:
        raise HTTPException(503, reason)
    raise HTTPException(401, reason, headers={"WWW-Authenticate": "Bearer"})


async def _with_counted_body(request: Request) -> Request:
    """The request with its body read up front, refused past the limit whatever it declared
    (a chunked body declares nothing)."""
    try:
        body = await read_limited(request, MAX_BODY_BYTES)
    except Refused as exc:
        raise HTTPException(
            exc.status, f"request body is over the limit of {MAX_BODY_BYTES} bytes"
        ) from exc
    replayed = False

    async def receive() -> Message:
        nonlocal replayed
        if replayed:
            return await request.receive()  # disconnect detection still reaches the server
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(request.scope, receive)


def describe_errors(errors: Sequence[Any]) -> str:
    """One line for the log: where each error is and what is wrong, never the input itself."""
    parts = []
    for error in errors[:5]:
        loc = ".".join(str(p) for p in error.get("loc", ()))
        parts.append(f"{loc}: {error.get('msg', 'invalid')}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts)[:500] + more


def _rejected(request: Request, status: int, reason: str) -> None:
    log.warning(
        "api_request_rejected",
        method=request.method,
        path=request.url.path,
        status=status,
        reason=reason,
    )
