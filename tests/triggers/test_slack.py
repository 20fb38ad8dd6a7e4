"""The Slack trigger's pure parts: the v0 vectors, the slash grammar, events and their jobs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from triggers.commands import InvalidCommand, ResumeCommand, RunCommand, StopCommand
from triggers.slack import (
    REASON_MISMATCH,
    REASON_MISSING,
    REASON_STALE,
    REASON_TIMESTAMP,
    Ignored,
    MessageEvent,
    PayloadError,
    Target,
    UrlVerification,
    decode_event,
    event_job,
    is_from_bot,
    is_ssl_check,
    mention_text,
    parse_slash_text,
    signature_verifier,
    slash_job,
    to_slash_command,
    verify_request,
)

FIXTURES = Path("/work/shared/fixtures/slack")
DOCS_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
DOCS_TS = 1531420618
DOCS_SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
DOCS_BODY = (
    FIXTURES
    / "slash_command__slack-docs-signing-example__python-slack-sdk-test_signature_verifier.form"
).read_bytes()


def _docs_headers(signature: str = DOCS_SIGNATURE) -> dict[str, str]:
    return {"X-Slack-Request-Timestamp": str(DOCS_TS), "X-Slack-Signature": signature}


def test_docs_vector_is_valid_and_its_signature_is_the_published_one() -> None:
    verifier = signature_verifier(DOCS_SECRET, now=lambda: DOCS_TS)
    assert len(DOCS_BODY) == 362
    assert verifier.generate_signature(timestamp=str(DOCS_TS), body=DOCS_BODY) == DOCS_SIGNATURE
    assert verify_request(verifier, DOCS_BODY, _docs_headers()) is None


@pytest.mark.parametrize(
    ("offset", "expected"), [(300, None), (-300, None), (301, REASON_STALE), (-301, REASON_STALE)]
)
def test_the_five_minute_window_ends_after_300_seconds(offset: int, expected: str | None) -> None:
    verifier = signature_verifier(DOCS_SECRET, now=lambda: DOCS_TS + offset)
    assert verify_request(verifier, DOCS_BODY, _docs_headers()) == expected


def test_docs_vector_checked_with_the_real_clock_is_expired() -> None:
    assert (
        verify_request(signature_verifier(DOCS_SECRET), DOCS_BODY, _docs_headers()) == REASON_STALE
    )


@pytest.mark.parametrize(
    ("body", "headers", "expected"),
    [
        (DOCS_BODY + b"------", _docs_headers(), REASON_MISMATCH),
        (b"", _docs_headers(), REASON_MISMATCH),
        (DOCS_BODY, {}, REASON_MISSING),
        (DOCS_BODY, {"X-Slack-Signature": DOCS_SIGNATURE}, REASON_MISSING),
        (DOCS_BODY, {"X-Slack-Request-Timestamp": str(DOCS_TS)}, REASON_MISSING),
        (DOCS_BODY, _docs_headers("v0=" + "0" * 64), REASON_MISMATCH),
        (
            DOCS_BODY,
            {**_docs_headers(), "X-Slack-Request-Timestamp": "15314x0618"},
            REASON_TIMESTAMP,
        ),
        (b"\xff\xfe" + DOCS_BODY, _docs_headers(), REASON_MISMATCH),
    ],
)
def test_negative_vectors_are_rejected(body: bytes, headers: dict[str, str], expected: str) -> None:
    verifier = signature_verifier(DOCS_SECRET, now=lambda: DOCS_TS)
    assert verify_request(verifier, body, headers) == expected


@pytest.mark.parametrize("secret", ["", "   "])
def test_an_empty_secret_cannot_make_a_verifier(secret: str) -> None:
    with pytest.raises(ValueError, match="signing_secret"):
        signature_verifier(secret)


def test_header_names_match_in_any_case() -> None:
    verifier = signature_verifier(DOCS_SECRET, now=lambda: DOCS_TS)
    lowered = {k.lower(): v for k, v in _docs_headers().items()}
    assert verify_request(verifier, DOCS_BODY, lowered) is None


def test_slash_command_fields_from_the_docs_form() -> None:
    command = to_slash_command(DOCS_BODY)
    assert (command.team, command.channel, command.user) == ("T1DC2JH3J", "G8PSS9T3V", "U2CERLKJA")
    assert command.command == "/webhook-collect"
    assert command.text == ""
    assert command.response_url.startswith("https://hooks.slack.com/commands/T1DC2JH3J/")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not a form", "not a valid form"),
        (b"team_id=T1&channel_id=C1&command=%2Floop", "'user_id'"),
        (b"team_id=T1&team_id=T2&channel_id=C&user_id=U&command=x", "repeated"),
    ],
)
def test_unreadable_slash_forms_are_payload_errors(body: bytes, reason: str) -> None:
    with pytest.raises(PayloadError, match=reason):
        to_slash_command(body)


def test_ssl_check_is_recognised() -> None:
    assert is_ssl_check(b"ssl_check=1&token=abc")
    assert not is_ssl_check(DOCS_BODY)
    assert not is_ssl_check(b'{"ssl_check": 1}')


@pytest.mark.parametrize(
    ("text", "command", "target"),
    [
        ("fix-tests", RunCommand("fix-tests"), Target()),
        ("fix-tests make it green", RunCommand("fix-tests", "make it green"), Target()),
        (
            "fix-tests repo=acme/api pr=12 only the parser",
            RunCommand("fix-tests", "only the parser"),
            Target(repo="acme/api", pr=12),
        ),
        ("fix-tests repo=acme/api", RunCommand("fix-tests"), Target(repo="acme/api")),
        ("stop", StopCommand(), Target()),
        ("resume abcd1234", ResumeCommand("abcd1234"), Target()),
        ("resume", ResumeCommand(), Target()),
        ("fix-tests line one\nline two", RunCommand("fix-tests", "line one line two"), Target()),
    ],
)
def test_slash_text_grammar(text: str, command: object, target: Target) -> None:
    assert parse_slash_text(text) == (command, target)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "needs a workflow name"),
        ("Fix!", "is not a workflow name"),
        ("status now", "takes no arguments"),
        ("fix-tests pr=12", "pr= needs repo=owner/name"),
        ("fix-tests repo=nope", "is not owner/name"),
        ("fix-tests repo=a/b pr=x1", "is not a pull request number"),
    ],
)
def test_bad_slash_text_is_an_invalid_command(text: str, reason: str) -> None:
    command, _ = parse_slash_text(text)
    assert isinstance(command, InvalidCommand)
    assert reason in command.reason


def test_slash_job_names_the_channel_and_the_response_url() -> None:
    command = to_slash_command(DOCS_BODY)
    job = slash_job(command, RunCommand("quick", "go"), Target(repo="acme/api", pr=3))
    assert job.source == "slack"
    assert job.idempotency_key == f"slack:T1DC2JH3J:command:{command.trigger_id}"
    assert job.concurrency_key == "slack:T1DC2JH3J:G8PSS9T3V"
    assert (job.repo, job.pr, job.requested_by) == ("acme/api", 3, "U2CERLKJA")
    assert job.reply == {
        "channel": "G8PSS9T3V",
        "thread_ts": "",
        "response_url": command.response_url,
        "user": "U2CERLKJA",
        "team": "T1DC2JH3J",
    }


def _fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def test_url_verification_fixtures_carry_their_challenge() -> None:
    assert decode_event(_fixture("url_verification__slack-docs.json")) == UrlVerification(
        "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    )
    found = decode_event(_fixture("url_verification__python-slack-events-api-url_challenge.json"))
    assert found == UrlVerification("valid_challenge_token")


_E = "event_callback__"
EVENT_VERDICTS = {
    "app_rate_limited__slack-docs.json": "ignored",
    _E + "app_mention__bolt-python-test_flask.json": "run",
    _E + "app_mention__slack-docs.json": "run",
    _E + "message__botMessage__slack-web-golden.json": "ignored",
    _E + "message__bot_id__bolt-python-test_message_bot.json": "ignored",
    _E + "message__bot_message_other_app__bolt-python-test_events_ignore_self.json": "ignored",
    _E + "message__bot_message_self__bolt-python-test_events_ignore_self.json": "ignored",
    _E + "message__messageExample__slack-web-golden.json": "ignored",
    _E + "message__messageIm__slack-web-golden.json": "run",
    _E + "message__message_subtype_bot_message__slack-web-golden.json": "ignored",
    _E + "message__subtype_bot_message__bolt-python-test_message_bot.json": "ignored",
    _E + "message__user__bolt-python-test_message_bot.json": "ignored",
    _E + "reaction_added__python-slack-events-api.json": "ignored",
    _E + "reaction_added__self_bot_user__bolt-python-test_events_ignore_self.json": "ignored",
}
"""What each event fixture comes to: a run, or nothing (other events, channel messages that do
not mention the app, and anything a bot wrote)."""


def test_every_event_fixture_has_a_verdict() -> None:
    names = {p.name for p in FIXTURES.glob("*.json") if not p.name.startswith("url_verification")}
    assert names == set(EVENT_VERDICTS)


@pytest.mark.parametrize("name", sorted(EVENT_VERDICTS))
def test_event_fixture_verdicts(name: str) -> None:
    decoded = decode_event(_fixture(name))
    runs = isinstance(decoded, MessageEvent) and not is_from_bot(decoded)
    assert ("run" if runs else "ignored") == EVENT_VERDICTS[name]


def test_messages_by_bots_are_recognised_whatever_shape_they_take() -> None:
    for name, verdict in EVENT_VERDICTS.items():
        payload = json.loads(_fixture(name))
        event = payload.get("event", {})
        if verdict == "run" or event.get("type") != "message":
            continue
        event["channel_type"] = "im"  # a DM from a bot is still a bot's message
        decoded = decode_event(json.dumps(payload).encode())
        if "bot_id" in event or event.get("subtype") == "bot_message":
            assert isinstance(decoded, MessageEvent), name
            assert is_from_bot(decoded), name


def test_our_own_user_is_a_bot() -> None:
    decoded = decode_event(_fixture("event_callback__app_mention__slack-docs.json"))
    assert isinstance(decoded, MessageEvent)
    assert is_from_bot(decoded, own_users={"U061F7AUR"})
    assert not is_from_bot(decoded, own_users={"U0OTHER"})


def test_a_mention_becomes_a_job_for_its_thread() -> None:
    decoded = decode_event(_fixture("event_callback__app_mention__slack-docs.json"))
    assert isinstance(decoded, MessageEvent)
    instruction = mention_text(decoded.text)
    assert instruction == "is it everything a river should be?"
    job = event_job(decoded, workflow="fix-tests", instruction=instruction)
    assert job.idempotency_key == "slack:T123ABC456:message:C123ABC456:1515449522.000016"
    assert job.concurrency_key == "slack:T123ABC456:C123ABC456:1515449522.000016"
    assert job.reply["thread_ts"] == "1515449522.000016"
    assert job.reply["response_url"] == ""


def test_a_mention_inside_a_thread_replies_in_that_thread() -> None:
    payload = json.loads(_fixture("event_callback__app_mention__slack-docs.json"))
    payload["event"]["thread_ts"] = "1515449000.000001"
    decoded = decode_event(json.dumps(payload).encode())
    assert isinstance(decoded, MessageEvent)
    assert decoded.thread_ts == "1515449000.000001"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{", "not valid JSON"),
        (b"[]", "must be a JSON object"),
        (b'{"type": "url_verification"}', "without a 'challenge'"),
        (b'{"type": "event_callback", "event": 3}', "without an 'event'"),
        (b'{"type": "event_callback", "event": {"type": "app_mention"}}', "lacks 'event_id'"),
    ],
)
def test_unreadable_events_are_payload_errors(body: bytes, reason: str) -> None:
    with pytest.raises(PayloadError, match=reason):
        decode_event(body)


def test_other_request_types_are_ignored() -> None:
    assert isinstance(decode_event(b'{"type": "app_uninstalled"}'), Ignored)
