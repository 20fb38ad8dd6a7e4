"""The short paths for `POST /api/jobs` and `POST /webhooks/github`: the requests that will be
accepted skip FastAPI's per-request machinery.

Job intake is the one endpoint that sees bursts (a script queueing a thousand jobs, a webhook
storm), and a request through FastAPI's routing, dependency solving, body parsing and response
validation costs several times what storing the job does. `IntakeShortPaths` answers the
requests it can answer exactly as the route would: the right bearer token, a declared JSON body
within the limit, a body that validates, and a job `prepare_job` accepts. It stores them through
the same `accept_job` as the route. Everything else, every refusal included, it hands to the
FastAPI route with the body replayed, so the route stays the endpoint's one definition: its
OpenAPI document, its error messages and its refusal logs.

A GitHub webhook delivery needs nothing of FastAPI's to begin with: its endpoint reads the raw
body and headers and answers every request itself, refusals included, so the short path calls
the route's own function (`github_webhook`) for all of them.

`ServiceApp` puts the middleware outside FastAPI's own middleware stack (error handling, body
limit, the metrics middleware): what the short paths answer passes through none of them, so
they count their requests in the metrics themselves and answer their own failures.
"""

from __future__ import annotations

import json
import time
from typing import Any

import structlog
from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api_guard import MAX_BODY_BYTES, storage_unavailable
from app.api_schemas import JobAccepted
from app.ledger import StorageError
from app.routes_api import accept_job, prepare_job
from app.routes_github import PATH as GITHUB_PATH
from app.routes_github import github_webhook
from app.service import Services
from loops.jobs import LoopJob
from loops.workflows import Workflow
from triggers.api import JobRequest, verify_bearer

log = structlog.get_logger("app.api_intake")

PATH = "/api/jobs"
_JSON_TYPES = (b"application/json", b"application/json; charset=utf-8")


class IntakeShortPaths:
    """ASGI middleware in front of the whole app (`ServiceApp`): the short paths for job intake
    and GitHub deliveries; see the module docstring."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
        elif scope["path"] == PATH:
            await self._job(scope, receive, send)
        elif scope["path"] == GITHUB_PATH:
            await _github_webhook(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _job(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        services: Services = scope["app"].state.services
        if not _authorized_json(scope, services):
            await self.app(scope, receive, send)  # the route refuses it, and says why
            return
        chunks, ended = await _read_body(receive)
        body = b"".join(chunks)
        if not ended:
            return  # the client went away before sending its body
        replay = _replaying(body, receive)
        try:
            request = JobRequest.model_validate_json(body)
            job, workflow = await prepare_job(services, request)
        except (ValidationError, HTTPException):
            await self.app(scope, replay, send)
            return
        status = await _accept(services, job, workflow, send)
        services.metrics.observe(PATH, "POST", status, time.perf_counter() - started)


async def _accept(services: Services, job: LoopJob, workflow: Workflow, send: Send) -> int:
    """Store the job and answer as the route would; the status sent. Outside the app's error
    middleware, so a failure is answered here: 503 for the ledger, 500 for anything else."""
    try:
        accepted = await accept_job(services, job, workflow)
    except StorageError as exc:
        refusal = storage_unavailable(PATH, exc)
        await _send_json(send, refusal.status_code, {"detail": refusal.detail})
        return refusal.status_code
    except Exception:
        log.exception("api_intake_failed", path=PATH, workflow=workflow.name)
        await _send_json(send, 500, {"detail": "Internal Server Error"})
        return 500
    status = 202 if accepted.created else 200
    await _send_json(send, status, accepted)
    return status


async def _github_webhook(scope: Scope, receive: Receive, send: Send) -> None:
    """`POST /webhooks/github`, answered by the route's own function (every refusal too: it
    needs nothing of FastAPI's), outside the app's middleware."""
    started = time.perf_counter()
    services: Services = scope["app"].state.services
    try:
        response = await github_webhook(Request(scope, receive))
    except Exception:
        log.exception("webhook_failed", path=GITHUB_PATH)
        response = JSONResponse({"detail": "Internal Server Error"}, status_code=500)
    await response(scope, receive, send)
    services.metrics.observe(
        GITHUB_PATH, "POST", response.status_code, time.perf_counter() - started
    )


class ServiceApp(FastAPI):
    """The service's FastAPI app, with `IntakeShortPaths` outside its middleware stack: what
    the short paths answer (accepted jobs, GitHub deliveries) skips the error, body-limit and
    metrics layers too, and everything else goes through all of them."""

    def build_middleware_stack(self) -> ASGIApp:
        return IntakeShortPaths(super().build_middleware_stack())


def _authorized_json(scope: Scope, services: Services) -> bool:
    """Whether the headers are those of a request the route would take: the bearer token, a
    JSON content type, and a declared length within the limit."""
    authorization = content_type = length = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            authorization = value
        elif name == b"content-type":
            content_type = value
        elif name == b"content-length":
            length = value
        elif name == b"transfer-encoding":
            return False
    if authorization is None or content_type is None or length is None:
        return False
    if content_type.lower() not in _JSON_TYPES:
        return False
    if not length.isdigit() or int(length) > MAX_BODY_BYTES:
        return False
    token = services.settings.api_token
    secret = token.get_secret_value() if token else None
    return verify_bearer(authorization.decode("latin-1"), secret) is None


async def _read_body(receive: Receive) -> tuple[list[bytes], bool]:
    """The body's chunks, and False if the client disconnected first. The server holds the
    body to its declared length, which `_authorized_json` has bounded."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return chunks, False
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks, True


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the route the body already read, then the client's own."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


async def _send_json(send: Send, status: int, payload: JobAccepted | dict[str, Any]) -> None:
    if isinstance(payload, JobAccepted):
        content = payload.model_dump_json().encode()
    else:
        content = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(content)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": content})
