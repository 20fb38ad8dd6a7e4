"""The Slack trigger's pure parts: signature check, body decoding, commands, events and their jobs.

A slash command handler uses them in this order: `verify_request` on the raw body (a failure is
a 401), `is_ssl_check`, `to_slash_command`, then `parse_slash_text` on its text and
`slash_job` for a run. An events handler: `verify_request`, `decode_event`, `is_from_bot`,
`mention_text`, `event_job`. Nothing here does I/O.

Errors::

    PayloadError (ValueError)           the body or payload cannot be read: a 400
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qs

from slack_sdk.signature import Clock, SignatureVerifier

from loops.jobs import LoopJob
from triggers.commands import (
    Command,
    InvalidCommand,
    RunCommand,
    parse_commands,
)

TIMESTAMP_HEADER = "X-Slack-Request-Timestamp"
SIGNATURE_HEADER = "X-Slack-Signature"
RETRY_HEADER = "X-Slack-Retry-Num"
MAX_AGE_SECONDS = 300
"""Slack's window: a request signed more than this many seconds away from now is refused."""
REASON_MISSING = f"missing {SIGNATURE_HEADER} or {TIMESTAMP_HEADER}"
REASON_TIMESTAMP = f"{TIMESTAMP_HEADER} is not a number of seconds"
REASON_STALE = f"the request timestamp is more than {MAX_AGE_SECONDS} s away from now"
REASON_MISMATCH = "signature does not match"
SLASH_USAGE = (
    "usage: /loop <workflow> [repo=owner/name] [pr=N] [instruction] | /loop stop | "
    "/loop status | /loop resume [run]"
)

_MAX_FORM_FIELDS = 40
_MENTION = re.compile(r"<@[UW][A-Z0-9]+(?:\|[^>]*)?>")
_REPO = re.compile(r"[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}")
_PR = re.compile(r"[1-9][0-9]{0,9}")
_OPTION_PREFIXES = ("repo=", "pr=")


class PayloadError(ValueError):
    """A request body or payload that cannot be read; `reason` says why, for the 400 answer."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _FixedClock(Clock):
    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now

    def now(self) -> float:
        return self._now()


def signature_verifier(secret: str, *, now: Callable[[], float] | None = None) -> SignatureVerifier:
    """slack_sdk's v0 verifier for `secret`; `now` replaces the wall clock (tests).

    Raises:
        ValueError: the secret is empty.
    """
    return SignatureVerifier(secret, _FixedClock(now)) if now else SignatureVerifier(secret)


def verify_request(
    verifier: SignatureVerifier, body: bytes, headers: Mapping[str, str]
) -> str | None:
    """None if the headers carry a valid v0 signature of `body` signed within the window; else
    why not. Header names match in any case."""
    lowered = {name.lower(): value for name, value in headers.items()}
    timestamp = lowered.get(TIMESTAMP_HEADER.lower())
    signature = lowered.get(SIGNATURE_HEADER.lower())
    if not timestamp or not signature:
        return REASON_MISSING
    if not timestamp.isascii() or not timestamp.strip().isdigit():
        return REASON_TIMESTAMP
    if abs(verifier.clock.now() - int(timestamp)) > MAX_AGE_SECONDS:
        return REASON_STALE
    try:
        valid = verifier.is_valid(body=body, timestamp=timestamp.strip(), signature=signature)
    except UnicodeDecodeError:  # the verifier signs text; a body that is not UTF-8 is forged
        valid = False
    return None if valid else REASON_MISMATCH


def is_ssl_check(body: bytes) -> bool:
    """Whether the request is Slack's `ssl_check=1` probe of a slash command URL."""
    try:
        fields = _form(body)
    except PayloadError:
        return False
    return fields.get("ssl_check") == "1"


@dataclass(frozen=True, kw_only=True)
class SlashCommand:
    """A slash command as Slack posts it (only the fields used)."""

    team: str
    channel: str
    user: str
    command: str
    text: str
    response_url: str
    trigger_id: str


def to_slash_command(body: bytes) -> SlashCommand:
    """The slash command a form body carries.

    Raises:
        PayloadError: the form cannot be read, or a field this needs is missing.
    """
    fields = _form(body)
    missing = [
        name for name in ("team_id", "channel_id", "user_id", "command") if not fields.get(name)
    ]
    if missing:
        raise PayloadError(f"slash command form lacks {', '.join(repr(m) for m in missing)}")
    return SlashCommand(
        team=fields["team_id"],
        channel=fields["channel_id"],
        user=fields["user_id"],
        command=fields["command"],
        text=fields.get("text", ""),
        response_url=fields.get("response_url", ""),
        trigger_id=fields.get("trigger_id", ""),
    )


@dataclass(frozen=True, kw_only=True)
class Target:
    """`repo=` and `pr=` of a slash command: what the run works on."""

    repo: str | None = None
    pr: int | None = None


def parse_slash_text(text: str) -> tuple[Command, Target]:
    """The command of `/loop <text>`, and the `repo=`/`pr=` options that follow the workflow.

    Line breaks in the text count as spaces: a slash command is one command.
    """
    words = " ".join(text.split())
    head, _, rest = words.partition(" ")
    commands = parse_commands(f"/loop {head}", bot_name=None)
    command = commands[0] if commands else InvalidCommand(SLASH_USAGE)
    if not isinstance(command, RunCommand):
        if rest:  # stop, status and resume: the grammar judges their arguments
            return parse_commands(f"/loop {words}", bot_name=None)[0], Target()
        return command, Target()
    target, instruction, problem = _options(rest)
    if problem:
        return InvalidCommand(f"{problem}; {SLASH_USAGE}"), Target()
    parsed = parse_commands(f"/loop {head} {instruction}".rstrip(), bot_name=None)[0]
    return parsed, target


def _options(rest: str) -> tuple[Target, str, str | None]:
    repo: str | None = None
    pr: int | None = None
    words = rest.split(" ") if rest else []
    while words and words[0].lower().startswith(_OPTION_PREFIXES):
        name, _, value = words.pop(0).partition("=")
        if name.lower() == "repo":
            if not _REPO.fullmatch(value):
                return Target(), "", f"repo={value!r} is not owner/name"
            repo = value
        elif not _PR.fullmatch(value):
            return Target(), "", f"pr={value!r} is not a pull request number"
        else:
            pr = int(value)
    if pr is not None and repo is None:
        return Target(), "", "pr= needs repo=owner/name"
    return Target(repo=repo, pr=pr), " ".join(words), None


def slash_job(command: SlashCommand, run: RunCommand, target: Target) -> LoopJob:
    """The job of a `/loop <workflow>` slash command; its runs share the channel's key."""
    return LoopJob(
        workflow=run.workflow,
        source="slack",
        instruction=run.instruction,
        idempotency_key=f"slack:{command.team}:command:{command.trigger_id}"
        if command.trigger_id
        else None,
        concurrency_key=channel_key(command.team, command.channel),
        repo=target.repo,
        pr=target.pr,
        requested_by=command.user,
        reply={
            "channel": command.channel,
            "thread_ts": "",
            "response_url": command.response_url,
            "user": command.user,
            "team": command.team,
        },
    )


def channel_key(team: str, channel: str, thread_ts: str = "") -> str:
    """The concurrency key of a channel's runs (slash commands) or of one thread's."""
    return f"slack:{team}:{channel}" + (f":{thread_ts}" if thread_ts else "")


# -- events ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class UrlVerification:
    challenge: str


@dataclass(frozen=True)
class Ignored:
    """A valid request that asks for nothing; `reason` goes into the log."""

    reason: str


EventKind = Literal["app_mention", "im"]


@dataclass(frozen=True, kw_only=True)
class MessageEvent:
    """A mention of the app, or a direct message to it.

    Attributes:
        thread_ts: the thread to reply in: the message's own thread, or the message itself.
        bot_users: the user ids the envelope says are this app's bot (`authorizations`).
    """

    kind: EventKind
    event_id: str
    team: str
    channel: str
    user: str
    text: str
    ts: str
    thread_ts: str
    bot_id: str
    subtype: str
    bot_users: frozenset[str]


def decode_event(body: bytes) -> UrlVerification | MessageEvent | Ignored:
    """What an Events API request asks for.

    Raises:
        PayloadError: the body is not a JSON object, or a field this needs is missing.
    """
    payload = _json_object(body)
    kind = payload.get("type")
    if kind == "url_verification":
        challenge = payload.get("challenge")
        if not isinstance(challenge, str) or not challenge:
            raise PayloadError("url_verification without a 'challenge'")
        return UrlVerification(challenge)
    if kind != "event_callback":
        return Ignored(f"request type {kind!r} asks for nothing")
    event = payload.get("event")
    if not isinstance(event, dict):
        raise PayloadError("event_callback without an 'event' object")
    return _message_event(payload, event)


def _message_event(
    payload: Mapping[str, object], event: Mapping[str, object]
) -> MessageEvent | Ignored:
    event_type = _text(event, "type")
    if event_type == "app_mention":
        kind: EventKind = "app_mention"
    elif event_type == "message" and _text(event, "channel_type") == "im":
        kind = "im"
    else:
        return Ignored(f"event {event_type!r} asks for nothing")
    event_id = _text(payload, "event_id")
    channel, ts = _text(event, "channel"), _text(event, "ts")
    if not event_id or not channel or not ts:
        raise PayloadError(f"{event_type!r} event lacks 'event_id', 'channel' or 'ts'")
    return MessageEvent(
        kind=kind,
        event_id=event_id,
        team=_text(payload, "team_id") or _text(event, "team"),
        channel=channel,
        user=_text(event, "user"),
        text=_text(event, "text"),
        ts=ts,
        thread_ts=_text(event, "thread_ts") or ts,
        bot_id=_text(event, "bot_id"),
        subtype=_text(event, "subtype"),
        bot_users=_bot_users(payload),
    )


def is_from_bot(event: MessageEvent, *, own_users: Collection[str] = ()) -> bool:
    """Whether a bot wrote the message: any app's bot, or this app's own user."""
    return (
        bool(event.bot_id)
        or event.subtype == "bot_message"
        or not event.user
        or event.user in event.bot_users
        or event.user in own_users
    )


def mention_text(text: str) -> str:
    """The message without the mentions in it (`<@U123>`), whitespace collapsed."""
    return " ".join(_MENTION.sub(" ", text).split())


def event_job(event: MessageEvent, *, workflow: str, instruction: str) -> LoopJob:
    """The job a mention or direct message starts; one per message, however often Slack sends
    it (retries, or both an `app_mention` and a `message` event)."""
    return LoopJob(
        workflow=workflow,
        source="slack",
        instruction=instruction,
        idempotency_key=f"slack:{event.team}:message:{event.channel}:{event.ts}",
        concurrency_key=channel_key(event.team, event.channel, event.thread_ts),
        requested_by=event.user,
        reply={
            "channel": event.channel,
            "thread_ts": event.thread_ts,
            "response_url": "",
            "user": event.user,
            "team": event.team,
        },
    )


def _bot_users(payload: Mapping[str, object]) -> frozenset[str]:
    found = payload.get("authorizations")
    if not isinstance(found, list):
        return frozenset()
    return frozenset(
        str(entry["user_id"])
        for entry in found
        if isinstance(entry, dict) and entry.get("is_bot") is True and entry.get("user_id")
    )


def _text(data: Mapping[str, object], name: str) -> str:
    value = data.get(name)
    return value if isinstance(value, str) else ""


def _json_object(body: bytes) -> Mapping[str, object]:
    try:
        value = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise PayloadError(f"body is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise PayloadError(f"payload must be a JSON object, got {type(value).__name__!r}")
    return value


def _form(body: bytes) -> dict[str, str]:
    try:
        fields = parse_qs(
            body.decode("utf-8"),
            strict_parsing=True,
            keep_blank_values=True,
            errors="strict",
            max_num_fields=_MAX_FORM_FIELDS,
        )
    except ValueError as exc:
        raise PayloadError(f"body is not a valid form: {exc}") from exc
    repeated = [name for name, values in fields.items() if len(values) > 1]
    if repeated:
        raise PayloadError(f"form field {repeated[0]!r} is repeated")
    return {name: values[0] for name, values in fields.items()}
