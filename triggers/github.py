"""The GitHub trigger's pure parts: signature check, body decoding, comment events and their jobs.

A webhook handler uses them in this order: `verify_signature` on the raw body (a failure is a
401), `is_ping`, `read_comment_delivery` (`decode_body`, then `read_comment_event`, in one),
`delivery_key`, `is_from_bot`; later, `to_comment_event` on what was stored, then
`triggers.commands.parse_commands` on the comment's body and `to_loop_job` for each run command.
Nothing here does I/O or checks permissions; `author_association` is informational only.

Errors::

    PayloadError (ValueError)           the body or payload cannot be read: a 400
     └── UnsupportedContentType         neither JSON nor a form with `payload=`: a 415
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Literal, TypeVar
from urllib.parse import parse_qs

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from loops.jobs import LoopJob
from triggers.commands import MentionCommand, RunCommand, bare_login

SIGNATURE_HEADER = "X-Hub-Signature-256"
REASON_DISABLED = "the webhook secret is not set"
REASON_MISSING = f"missing {SIGNATURE_HEADER}"
REASON_SCHEME = "signature must start with sha256="
REASON_MISMATCH = "signature does not match"

COMMENT_EVENTS = frozenset({"issue_comment", "pull_request_review_comment"})
CommentKind = Literal["issue", "review"]

_SIGNATURE_PREFIX = "sha256="
_HEADER_TOKEN = re.compile(r"[\x21-\x7e]{1,100}")
_MAX_FORM_FIELDS = 20
_MAX_REPORTED_ERRORS = 3


class PayloadError(ValueError):
    """A webhook body or payload that cannot be read; `reason` says why, for the 4xx answer."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnsupportedContentType(PayloadError):
    """A body in a content type GitHub's webhooks do not send."""


@dataclass(frozen=True)
class Ignored:
    """A valid delivery that asks for nothing; `reason` goes into the log."""

    reason: str


@dataclass(frozen=True, kw_only=True)
class CommentEvent:
    """A new comment on an issue, a pull request, or a line of a pull request's diff.

    Attributes:
        repo: `owner/name`.
        number: the issue's or pull request's number.
        comment_kind: `issue` for a conversation comment, `review` for a diff comment; their
            reaction and reply endpoints differ.
        comment_url: the comment's API URL.
        author_type: `User`, `Bot`, or another GitHub account type.
        author_association: what GitHub says the author is to the repository (`OWNER`, `NONE`,
            …); informational only, never a permission.
        installation_id: the GitHub App installation that received it, if any.
        html_url: the comment's web URL.
    """

    repo: str
    owner: str
    name: str
    number: int
    is_pull_request: bool
    comment_id: int
    comment_kind: CommentKind
    comment_url: str
    author: str
    author_type: str
    author_association: str | None
    body: str
    installation_id: int | None
    html_url: str


# Payload models: only the fields used, extra keys ignored, no type coercion. Real deliveries
# (and old ones) lack many fields that GitHub's schema calls required, so nothing else is read.
_EDGE = ConfigDict(extra="ignore", strict=True, frozen=True)
# GitHub's ids are 64-bit signed; a larger number is no id (orjson reads one past 2**64 as a float).
_Id = Annotated[int, Field(ge=1, le=2**63 - 1)]


class _Account(BaseModel):
    model_config = _EDGE
    login: str
    type: str


class _Owner(BaseModel):
    model_config = _EDGE
    login: str


class _Repository(BaseModel):
    model_config = _EDGE
    full_name: str
    name: str
    owner: _Owner


class _Installation(BaseModel):
    model_config = _EDGE
    id: _Id


class _Comment(BaseModel):
    model_config = _EDGE
    id: _Id
    url: str
    html_url: str
    body: str | None = None
    user: _Account
    author_association: str | None = None


class _Issue(BaseModel):
    model_config = _EDGE
    number: _Id
    # Only its presence matters: an issue comment on a pull request carries it.
    pull_request: object = None


class _PullRequest(BaseModel):
    model_config = _EDGE
    number: _Id


class _Action(BaseModel):
    model_config = _EDGE
    action: str


class _CommentPayload(BaseModel):
    model_config = _EDGE
    repository: _Repository
    comment: _Comment
    installation: _Installation | None = None


class _IssueCommentPayload(_CommentPayload):
    issue: _Issue


class _ReviewCommentPayload(_CommentPayload):
    pull_request: _PullRequest


class _IssueCommentDelivery(_IssueCommentPayload):
    action: str


class _ReviewCommentDelivery(_ReviewCommentPayload):
    action: str


# Read straight from a JSON body by `read_comment_delivery`.
_DELIVERIES: dict[str, type[_IssueCommentDelivery] | type[_ReviewCommentDelivery]] = {
    "issue_comment": _IssueCommentDelivery,
    "pull_request_review_comment": _ReviewCommentDelivery,
}


_Model = TypeVar("_Model", bound=BaseModel)

_MANY_LETTERS = 64


def sign_body(body: bytes, secret: str) -> str:
    """The `X-Hub-Signature-256` value GitHub sends for `body` under `secret`."""
    return _SIGNATURE_PREFIX + hmac.digest(_octets(secret), body, "sha256").hex()


def verify_signature(body: bytes, header: str | None, secret: str) -> str | None:
    """None if `header` is the `X-Hub-Signature-256` of the raw `body` under `secret`; else why not.

    Only sha256 is accepted (never the legacy sha1 `X-Hub-Signature`), and the comparison takes
    the same time wherever the signatures differ.
    """
    if not secret:
        return REASON_DISABLED
    if not header:
        return REASON_MISSING
    if not header.startswith(_SIGNATURE_PREFIX):
        return REASON_SCHEME
    if not hmac.compare_digest(_octets(header), _octets(sign_body(body, secret))):
        return REASON_MISMATCH
    return None


def decode_body(content_type: str | None, body: bytes) -> Mapping[str, object]:
    """The JSON object a webhook body carries, as `application/json` or as a form's `payload=`.

    Raises:
        UnsupportedContentType: for any other content type.
        PayloadError: when the JSON or the form cannot be read, or the JSON is not an object.
    """
    media_type = _media_type(content_type)
    if media_type == "application/json":
        return _json_object(body)
    if media_type == "application/x-www-form-urlencoded":
        return _json_object(_form_payload(body))
    raise UnsupportedContentType(
        f"unsupported content type {media_type!r}; "
        "expected 'application/json' or 'application/x-www-form-urlencoded'"
    )


def _media_type(content_type: str | None) -> str:
    return (content_type or "").partition(";")[0].strip().lower()


def is_ping(event: str) -> bool:
    """Whether `event` (the `X-GitHub-Event` header) is the ping GitHub sends a new webhook."""
    return event == "ping"


def delivery_key(headers: Mapping[str, str]) -> str | None:
    """`<X-GitHub-Hook-ID>:<X-GitHub-Delivery>`, which names one delivery of one webhook.

    Header names match in any case. A missing hook ID is left empty (older deliveries lack it);
    the result is None when the delivery ID is missing or either value is not one short,
    printable word.
    """
    lowered = {name.lower(): value.strip() for name, value in headers.items()}
    hook_id = lowered.get("x-github-hook-id", "")
    delivery = lowered.get("x-github-delivery", "")
    if not _HEADER_TOKEN.fullmatch(delivery):
        return None
    if hook_id and not _HEADER_TOKEN.fullmatch(hook_id):
        return None
    return f"{hook_id}:{delivery}"


def to_comment_event(event: str, payload: Mapping[str, object]) -> CommentEvent | Ignored:
    """The new comment `payload` of an `event` delivery carries, or why there is none.

    Only `created` comments count: an edited comment would run its commands a second time.

    Raises:
        PayloadError: when a field this needs is missing or has the wrong type.
    """
    return read_comment_event(event, payload)[0]


def read_comment_event(
    event: str, payload: Mapping[str, object]
) -> tuple[CommentEvent | Ignored, dict[str, object]]:
    """`to_comment_event`'s answer, and the part of `payload` that it reads.

    `to_comment_event` gives the same answer for that part alone, so a delivery stored to be
    processed later need keep no more: a comment's payload carries the whole repository, issue
    or pull request and their users (~15 KB); the part holds the fields read here (~0.5 KB),
    and of the pull request that an issue comment is on only that it is one.

    Raises:
        PayloadError: as `to_comment_event`.
    """
    if event not in COMMENT_EVENTS:
        return Ignored(f"event {event!r} carries no commands"), {}
    action = _validate(_Action, event, payload).action
    if action != "created":
        return _not_created(event, action)
    if event == "issue_comment":
        return _read(action, _validate(_IssueCommentPayload, event, payload))
    return _read(action, _validate(_ReviewCommentPayload, event, payload))


def read_comment_delivery(
    event: str, content_type: str | None, body: bytes
) -> tuple[CommentEvent | Ignored, dict[str, object]]:
    """`read_comment_event` of `decode_body(content_type, body)`: the same answer and part.

    A JSON comment delivery (the kind stored for processing, and most of a busy repository's
    deliveries) is read from its bytes straight into the fields read, without building the rest
    of the payload: ~10 instead of ~23 µs for a 15 KB comment. A body that reading refuses is
    decoded whole, so every refusal is `decode_body`'s or `read_comment_event`'s own.

    Raises:
        UnsupportedContentType: as `decode_body`.
        PayloadError: as `decode_body` and `read_comment_event`.
    """
    model = _DELIVERIES.get(event)
    if model is not None and _media_type(content_type) == "application/json":
        parsed = _read_directly(model, body)
        if parsed is not None and parsed.action != "created":
            return _not_created(event, parsed.action)
        if parsed is not None:
            return _read(parsed.action, parsed)
    return read_comment_event(event, decode_body(content_type, body))


def _read_directly(
    model: type[_IssueCommentDelivery] | type[_ReviewCommentDelivery], body: bytes
) -> _IssueCommentDelivery | _ReviewCommentDelivery | None:
    """The delivery read from a JSON body into `model`, or None to decode it whole."""
    # JSON has no NaN or Infinity, but the direct reading takes them where it ignores the value;
    # such a body (or one merely mentioning them) is decoded whole, which refuses it.
    if _mentions_nan_or_infinity(body):
        return None
    try:
        return model.model_validate_json(body)
    except ValidationError:
        return None


def _not_created(event: str, action: str) -> tuple[Ignored, dict[str, object]]:
    return Ignored(f"{event!r} action {action!r} is not 'created'"), {"action": action}


def _read(action: str, payload: _CommentPayload) -> tuple[CommentEvent, dict[str, object]]:
    if isinstance(payload, _IssueCommentPayload):
        number = payload.issue.number
        on_pull_request = "pull_request" in payload.issue.model_fields_set
        found = _comment_event(payload, number, is_pull_request=on_pull_request, kind="issue")
    else:
        assert isinstance(payload, _ReviewCommentPayload)
        number = payload.pull_request.number
        found = _comment_event(payload, number, is_pull_request=True, kind="review")
    return found, _part(action, found)


def _part(action: str, event: CommentEvent) -> dict[str, object]:
    """The smallest payload that `to_comment_event` reads `event` from."""
    part: dict[str, object] = {
        "action": action,
        "repository": {
            "full_name": event.repo,
            "name": event.name,
            "owner": {"login": event.owner},
        },
        "comment": {
            "id": event.comment_id,
            "url": event.comment_url,
            "html_url": event.html_url,
            "body": event.body,
            "user": {"login": event.author, "type": event.author_type},
            "author_association": event.author_association,
        },
    }
    if event.installation_id is not None:
        part["installation"] = {"id": event.installation_id}
    if event.comment_kind == "review":
        part["pull_request"] = {"number": event.number}
    elif event.is_pull_request:
        part["issue"] = {"number": event.number, "pull_request": {}}  # read for its presence
    else:
        part["issue"] = {"number": event.number}
    return part


def _mentions_nan_or_infinity(body: bytes) -> bool:
    # Looking at each of the words' first letters (memchr) beats searching for the words on a
    # 15 KB body with a few of them; past _MANY_LETTERS, the words are searched for instead.
    for letter, word in ((b"N", b"NaN"), (b"I", b"Infinity")):
        at = body.find(letter)
        for _ in range(_MANY_LETTERS):
            if at == -1 or body.startswith(word, at):
                break
            at = body.find(letter, at + 1)
        else:
            at = body.find(word, at)
        if at != -1:
            return True
    return False


def is_from_bot(event: CommentEvent, *, bot_name: str) -> bool:
    """Whether the comment comes from a bot: any app, or this service's own account."""
    login = event.author.lower()
    own = bare_login(bot_name)
    return event.author_type == "Bot" or login.endswith("[bot]") or login in {own, f"{own}[bot]"}


def to_loop_job(
    event: CommentEvent,
    command: RunCommand | MentionCommand,
    *,
    workflow: str,
    delivery_key: str,
    index: int,
) -> LoopJob:
    """The job for the `index`-th command of the comment in one delivery.

    Args:
        workflow: what to run: the command's own workflow, or the default one for a mention.
        delivery_key: from `delivery_key`, so a redelivery yields the same idempotency keys.
        index: the command's position among the comment's commands.

    Runs of one pull request or issue share a concurrency key, so they never edit one branch
    at once. The reply names the comment to react to and answer.
    """
    return LoopJob(
        workflow=workflow,
        source="github",
        instruction=command.instruction,
        idempotency_key=f"github:{delivery_key}:{index}",
        concurrency_key=f"github:{event.repo}#{event.number}",
        repo=event.repo,
        pr=event.number if event.is_pull_request else None,
        requested_by=event.author,
        reply={
            "repo": event.repo,
            "number": str(event.number),
            "comment_id": str(event.comment_id),
            "comment_kind": event.comment_kind,
            **(
                {"installation_id": str(event.installation_id)}
                if event.installation_id is not None
                else {}
            ),
        },
    )


def _comment_event(
    payload: _CommentPayload, number: int, *, is_pull_request: bool, kind: CommentKind
) -> CommentEvent:
    comment, repository = payload.comment, payload.repository
    return CommentEvent(
        repo=repository.full_name,
        owner=repository.owner.login,
        name=repository.name,
        number=number,
        is_pull_request=is_pull_request,
        comment_id=comment.id,
        comment_kind=kind,
        comment_url=comment.url,
        author=comment.user.login,
        author_type=comment.user.type,
        author_association=comment.author_association,
        body=comment.body or "",
        installation_id=payload.installation.id if payload.installation else None,
        html_url=comment.html_url,
    )


def _validate(model: type[_Model], event: str, payload: Mapping[str, object]) -> _Model:
    # Strict models take only a dict at the top; any other mapping is copied into one.
    data = dict(payload) if isinstance(payload, Mapping) else payload
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [
            _problem(error["loc"], error["msg"]) for error in exc.errors()[:_MAX_REPORTED_ERRORS]
        ]
        raise PayloadError(f"{event!r} payload: {'; '.join(problems)}") from exc


def _problem(loc: tuple[int | str, ...], message: str) -> str:
    return f"{'.'.join(str(part) for part in loc)}: {message}" if loc else message


def _json_object(body: bytes) -> Mapping[str, object]:
    try:
        value = orjson.loads(body)  # twice as fast on a webhook's ~15 KB
    except orjson.JSONDecodeError:
        # orjson reads only UTF-8 JSON within its own limits; whatever it refuses gets the
        # standard library's reading, which takes and refuses exactly what it always did.
        try:
            value = json.loads(body, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as exc:
            raise PayloadError(f"body is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise PayloadError(f"payload must be a JSON object, got {type(value).__name__!r}")
    return value


def _form_payload(body: bytes) -> bytes:
    try:
        fields = parse_qs(
            body.decode("ascii"),
            strict_parsing=True,
            errors="strict",
            max_num_fields=_MAX_FORM_FIELDS,
        )
    except ValueError as exc:
        raise PayloadError(f"body is not a valid form: {exc}") from exc
    payloads = fields.get("payload", [])
    if len(payloads) != 1:
        raise PayloadError(f"a form body needs one 'payload' field, got {len(payloads)}")
    return payloads[0].encode("utf-8")


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name!r} is not a JSON number")


def _octets(text: str) -> bytes:
    # An environment variable may hold undecodable bytes, which Python keeps as surrogates.
    return text.encode("utf-8", "surrogateescape")
