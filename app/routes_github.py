"""`POST /webhooks/github`: verify, store, answer. The GitHub API work happens afterwards.

The raw body is read once, at most `MAX_WEBHOOK_BYTES` of it (GitHub's own cap on payloads),
and its `X-Hub-Signature-256` checked before anything else reads it. A `ping` is answered at
once. Every other delivery is stored in the ledger under `(X-GitHub-Hook-ID, X-GitHub-Delivery)`
before the answer (concurrent deliveries share a transaction: `app.intake`), so a
redelivery (also after a restart) is recognised and starts nothing, and a stored delivery is
processed even if the service stops right after answering. A comment is stored as the part of
its payload that its processing reads (`read_comment_delivery`; ~0.5 of ~15 KB), so what each
delivery adds to the answer's commit stays small. Deliveries that ask for nothing (other events
and actions) are stored as processed, without their payload.

Answers: 200 ping or duplicate; 202 accepted or ignored; 400 unreadable body, payload or
headers; 401 signature; 413 too large; 415 content type; 503 trigger disabled or ledger down.
Each refusal is logged as `webhook_rejected` with its reason, never with the body or secret; an
ignored or duplicate delivery is logged as such, and an accepted one once it has been processed
(`github_delivery_processed`, with its outcome).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from app.deliveries import NewDelivery
from app.github_commands import SOURCE, GitHubCommandProcessor
from app.ledger import StorageError
from app.service import Services
from app.webhook_bodies import Refused, read_limited
from triggers.github import (
    SIGNATURE_HEADER,
    CommentEvent,
    Ignored,
    PayloadError,
    UnsupportedContentType,
    decode_body,
    delivery_key,
    is_from_bot,
    is_ping,
    read_comment_delivery,
    verify_signature,
)

log = structlog.get_logger("app.github")

_SIGNATURE = SIGNATURE_HEADER.lower()

_ACCEPTED = JSONResponse({"accepted": True}).body
"""The answer to most deliveries, rendered once."""

MAX_WEBHOOK_BYTES = 25 * 1024 * 1024
"""GitHub caps webhook payloads at 25 MB and does not deliver larger ones."""


@dataclass(frozen=True, kw_only=True)
class _Verified:
    event: str
    body: bytes
    headers: dict[str, str]
    """The request's headers by lower-case name (the first of any repeated one)."""


@dataclass(frozen=True, kw_only=True)
class _Read:
    """What a verified delivery asks for: `ignored` says why nothing, else `part` is the part of
    its payload to store for processing."""

    ignored: str | None
    part: Mapping[str, object]


PATH = "/webhooks/github"


def github_router() -> APIRouter:
    router = APIRouter(tags=["webhooks"])

    @router.post(
        PATH,
        status_code=202,
        summary="Receive a GitHub webhook delivery",
        response_class=JSONResponse,
    )
    async def receive_github_webhook(request: Request) -> Response:
        return await github_webhook(request)

    return router


async def github_webhook(request: Request) -> Response:
    """The endpoint itself: the route above, and `app.api_intake`'s short path in front of the
    app's middleware, both answer with it."""
    services: Services = request.app.state.services
    try:
        processor = _processor(services)
        verified = await _verify(request, services)
        if is_ping(verified.event):
            payload = _decode(verified)
            log.info("webhook_ping_answered", hook_id=payload.get("hook_id"))
            return JSONResponse({"ping": "pong"}, status_code=200)
        read = _read(verified, services.settings.github.bot_name)
        key = _delivery_key(verified)
        return await _store(services, processor, key, verified.event, read)
    except Refused as refused:
        log.warning(
            "webhook_rejected",
            status=refused.status,
            reason=refused.reason,
            github_event=request.headers.get("x-github-event"),
            delivery=request.headers.get("x-github-delivery"),
        )
        return JSONResponse({"detail": refused.reason}, status_code=refused.status)


def _processor(services: Services) -> GitHubCommandProcessor:
    if services.github is None:
        _, why = services.triggers.get("github", (False, "it is off"))
        raise Refused(503, f"the GitHub trigger is disabled: {why}")
    return services.github.processor


async def _verify(request: Request, services: Services) -> _Verified:
    body = await read_limited(request, MAX_WEBHOOK_BYTES)
    headers = {name: value for name, value in reversed(request.headers.items())}
    secret = services.settings.github.webhook_secret
    reason = verify_signature(
        body, headers.get(_SIGNATURE), secret.get_secret_value() if secret else ""
    )
    if reason is not None:
        raise Refused(401, reason)
    event = headers.get("x-github-event", "").strip()
    if not event:
        raise Refused(400, "missing X-GitHub-Event")
    return _Verified(event=event, body=body, headers=headers)


def _decode(verified: _Verified) -> Mapping[str, object]:
    try:
        return decode_body(verified.headers.get("content-type"), verified.body)
    except PayloadError as exc:
        raise _refusal(exc) from exc


def _read(verified: _Verified, bot_name: str) -> _Read:
    """Whether the delivery asks for something (decided without I/O)."""
    content_type = verified.headers.get("content-type")
    try:
        event, part = read_comment_delivery(verified.event, content_type, verified.body)
    except PayloadError as exc:
        raise _refusal(exc) from exc
    if isinstance(event, Ignored):
        return _Read(ignored=event.reason, part={})
    return _Read(ignored=_from_bot(event, bot_name), part=part)


def _refusal(exc: PayloadError) -> Refused:
    return Refused(415 if isinstance(exc, UnsupportedContentType) else 400, exc.reason)


def _delivery_key(verified: _Verified) -> str:
    key = delivery_key(verified.headers)
    if key is None:
        raise Refused(400, "missing or malformed X-GitHub-Delivery (or X-GitHub-Hook-ID)")
    return key


def _from_bot(event: CommentEvent, bot_name: str) -> str | None:
    if is_from_bot(event, bot_name=bot_name):
        return f"comment by a bot ({event.author!r})"
    return None


async def _store(
    services: Services,
    processor: GitHubCommandProcessor,
    key: str,
    event: str,
    read: _Read,
) -> Response:
    ignored = read.ignored
    # An ignored delivery is kept for its key alone: its payload (a push can be megabytes) is not.
    payload = {} if ignored is not None else read.part
    outcome = None if ignored is None else f"ignored: {ignored}"
    delivery = NewDelivery(source=SOURCE, key=key, event=event, payload=payload, outcome=outcome)
    try:
        stored = await services.delivery_intake.store(delivery)
    except StorageError as exc:
        log.error("webhook_storage_failed", delivery=key, error=str(exc)[:300])
        raise Refused(503, "the ledger is unavailable; GitHub can redeliver later") from exc
    if not stored:
        log.info("webhook_duplicate_ignored", delivery=key, github_event=event)
        return JSONResponse({"duplicate": True}, status_code=200)
    if ignored is not None:
        log.info("webhook_ignored", delivery=key, github_event=event, reason=ignored)
        return JSONResponse({"ignored": ignored}, status_code=202)
    # Its outcome is logged once it is processed (`github_delivery_processed`).
    log.debug("webhook_accepted", delivery=key, github_event=event)
    processor.wake()
    return Response(_ACCEPTED, status_code=202, media_type="application/json")
