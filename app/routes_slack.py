"""`POST /webhooks/slack/commands` and `POST /webhooks/slack/events`: verify, store, answer.

The raw body is read once (at most `MAX_BODY_BYTES`) and its v0 signature checked with
slack_sdk's verifier before anything else reads it; Slack's `ssl_check` probe is answered
first, since it asks for nothing. A slash command that starts a run stores its job (and queued
run) before the answer, which names the run; Web API calls (progress messages, replies in a
thread) happen afterwards. An event's job has an idempotency key made of the message's channel
and `ts`, so Slack's retries (`X-Slack-Retry-Num`), repeated `event_id`s, and the `message`
event that accompanies an `app_mention` never start a second run.

Answers: 200 for everything Slack should not retry (commands answer with an ephemeral
message); 400 unreadable body; 401 bad or stale signature; 413 too large; 503 trigger disabled
or ledger down. Each refusal is logged as `slack_request_rejected` with its reason.
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app import slack_messages as say
from app.ledger import StorageError
from app.service import Services
from app.slack_trigger import SlackTrigger
from app.webhook_bodies import Refused, read_limited
from triggers.slack import (
    RETRY_HEADER,
    Ignored,
    MessageEvent,
    PayloadError,
    UrlVerification,
    decode_event,
    is_from_bot,
    is_ssl_check,
    mention_text,
    to_slash_command,
    verify_request,
)

log = structlog.get_logger("app.slack")

MAX_BODY_BYTES = 1024 * 1024
"""Slack's requests are a few kilobytes; anything past this is not Slack."""


def slack_router() -> APIRouter:
    router = APIRouter(tags=["webhooks"])

    @router.post("/webhooks/slack/commands", summary="Receive a Slack slash command")
    async def receive_slack_command(request: Request) -> JSONResponse:
        try:
            trigger, body = await _verified(request)
            if body is None:
                return JSONResponse({}, status_code=200)
            return await _command(trigger, body)
        except Refused as refused:
            return _refusal(request, refused)

    @router.post("/webhooks/slack/events", summary="Receive a Slack Events API request")
    async def receive_slack_event(request: Request) -> JSONResponse:
        try:
            trigger, body = await _verified(request)
            if body is None:
                return JSONResponse({}, status_code=200)
            return await _event(trigger, body, request.headers.get(RETRY_HEADER))
        except Refused as refused:
            return _refusal(request, refused)

    return router


async def _verified(request: Request) -> tuple[SlackTrigger, bytes | None]:
    """The trigger and the verified body; None for the body of an `ssl_check` probe."""
    services: Services = request.app.state.services
    trigger = services.slack
    if trigger is None:
        _, why = services.triggers.get("slack", (False, "it is off"))
        raise Refused(503, f"the Slack trigger is disabled: {why}")
    body = await read_limited(request, MAX_BODY_BYTES)
    if is_ssl_check(body):
        log.info("slack_ssl_check_answered")
        return trigger, None
    reason = verify_request(trigger.verifier, body, request.headers)
    if reason is not None:
        raise Refused(401, reason)
    return trigger, body


async def _command(trigger: SlackTrigger, body: bytes) -> JSONResponse:
    try:
        command = to_slash_command(body)
    except PayloadError as exc:
        raise Refused(400, exc.reason) from exc
    try:
        answer = await trigger.handlers.slash(command)
    except StorageError as exc:
        log.error("slack_storage_failed", error=str(exc)[:300])
        raise Refused(503, "the ledger is unavailable; try again shortly") from exc
    log.info(
        "slack_command_answered", user=command.user, channel=command.channel, run_id=answer.run_id
    )
    return JSONResponse({"response_type": "ephemeral", "text": answer.text})


async def _event(trigger: SlackTrigger, body: bytes, retry: str | None) -> JSONResponse:
    try:
        decoded = decode_event(body)
    except PayloadError as exc:
        raise Refused(400, exc.reason) from exc
    match decoded:
        case UrlVerification(challenge=challenge):
            log.info("slack_url_verified")
            return JSONResponse({"challenge": challenge})
        case Ignored(reason=reason):
            log.info("slack_event_ignored", reason=reason)
            return JSONResponse({"ignored": reason})
        case MessageEvent() as event:
            return await _message(trigger, event, retry)


async def _message(trigger: SlackTrigger, event: MessageEvent, retry: str | None) -> JSONResponse:
    if is_from_bot(event, own_users=trigger.own_users):
        log.info("slack_event_ignored", event_id=event.event_id, reason="message by a bot")
        return JSONResponse({"ignored": "message by a bot"})
    handlers, client = trigger.handlers, trigger.client
    if not handlers.allowed(event.user, event.channel):
        log.info("slack_command_refused", user=event.user, channel=event.channel)
        if client.has_token:
            refusal = say.refused(event.user, event.channel)
            work = client.post_ephemeral(
                event.channel, event.user, refusal, thread_ts=event.thread_ts
            )
            trigger.spawn(work, "slack-refusal")
        return JSONResponse({"ignored": "not allowed"})
    instruction = mention_text(event.text)
    if not instruction:
        _reply(trigger, event, "Say what to do after mentioning me: `@Loopwright <instruction>`.")
        return JSONResponse({"ignored": "no instruction"})
    try:
        answer = await handlers.mention(event, instruction)
    except StorageError as exc:
        log.error("slack_storage_failed", event_id=event.event_id, error=str(exc)[:300])
        raise Refused(503, "the ledger is unavailable; Slack retries later") from exc
    log.info("slack_event_accepted", event_id=event.event_id, retry=retry, run_id=answer.run_id)
    if answer.run_id is None:  # nothing was queued: the answer says why, in the thread
        _reply(trigger, event, answer.text)
    return JSONResponse({"accepted": True, "run_id": answer.run_id})


def _reply(trigger: SlackTrigger, event: MessageEvent, text: str) -> None:
    if trigger.client.has_token:
        blocks: list[dict[str, Any]] = [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}}
        ]
        work = trigger.client.post_message(
            event.channel, text, blocks=blocks, thread_ts=event.thread_ts
        )
        trigger.spawn(_discard(work), "slack-reply")


async def _discard(work: Any) -> None:
    await work


def _refusal(request: Request, refused: Refused) -> JSONResponse:
    log.warning(
        "slack_request_rejected",
        status=refused.status,
        reason=refused.reason,
        path=request.url.path,
        retry=request.headers.get(RETRY_HEADER),
    )
    error = "invalid request" if refused.status == 401 else refused.reason
    return JSONResponse({"error": error}, status_code=refused.status)
