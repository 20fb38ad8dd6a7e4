"""The envelope of a GitHub delivery: signature, body, ping and delivery key."""

from __future__ import annotations

import json
import re

import pytest

from tests.triggers.github_files import EXPECTED, FIXTURES, NO_FIXTURES, URLENCODED_PING
from triggers.github import (
    REASON_DISABLED,
    REASON_MISMATCH,
    REASON_MISSING,
    REASON_SCHEME,
    Ignored,
    PayloadError,
    UnsupportedContentType,
    decode_body,
    delivery_key,
    is_ping,
    sign_body,
    to_comment_event,
    verify_signature,
)

# --- X-Hub-Signature-256: the vectors of VECTORS.md -------------------------------------------

GIDGET_BODY = b'{"action": "opened"}'
OCTOKIT_BODY = b'{\n  "foo": "bar"\n}\n'
OCTOKIT_SIGNATURE = "sha256=e3eccac34c43c7dc1cbb905488b1b81347fcc700a7b025697a9d07862256023f"


@pytest.mark.parametrize(
    ("secret", "body", "header"),
    [
        (
            "It's a Secret to Everybody",
            b"Hello, World!",
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        ),
        (
            "123456",
            b"gidget",
            "sha256=091319196718d5bcb1c20ad25fc890597423ecdbad1f947f560afd643b5000de",
        ),
        (
            "123456",
            GIDGET_BODY,
            "sha256=0340d06469a1b35662ebd7a67ea2c0c328239f319f1cfafb221451de629e0430",
        ),
        ("mysecret", OCTOKIT_BODY, OCTOKIT_SIGNATURE),
    ],
    ids=["github-docs", "gidgethub-validate", "gidgethub-event", "octokit"],
)
def test_published_signatures_verify(secret, body, header):
    assert verify_signature(body, header, secret) is None
    assert sign_body(body, secret) == header


@pytest.mark.parametrize(
    ("secret", "body", "header", "reason"),
    [
        (
            "123456",
            b"gidget!",
            "sha256=091319196718d5bcb1c20ad25fc890597423ecdbad1f947f560afd643b5000de",
            REASON_MISMATCH,
        ),
        (
            "123456",
            b"gidget",
            "091319196718d5bcb1c20ad25fc890597423ecdbad1f947f560afd643b5000de",
            REASON_SCHEME,
        ),
        ("123456", GIDGET_BODY, "sha1=c28e33b2e56e548956c446e890929a6cbec3ac89", REASON_SCHEME),
        (
            "mysecret",
            OCTOKIT_BODY,
            "sha256=xxxccac34c43c7dc1cbb905488b1b81347fcc700a7b025697a9d07862256023f",
            REASON_MISMATCH,
        ),
        ("mysecret", OCTOKIT_BODY, "foo", REASON_SCHEME),
        ("foo", OCTOKIT_BODY, OCTOKIT_SIGNATURE, REASON_MISMATCH),
        # Verified on the raw bytes: the same JSON serialised again no longer matches.
        (
            "mysecret",
            json.dumps(json.loads(OCTOKIT_BODY)).encode(),
            OCTOKIT_SIGNATURE,
            REASON_MISMATCH,
        ),
        # GitHub sends lowercase hex; an uppercase digest is another string.
        ("mysecret", OCTOKIT_BODY, "sha256=" + OCTOKIT_SIGNATURE[7:].upper(), REASON_MISMATCH),
        ("mysecret", OCTOKIT_BODY, "sha256=", REASON_MISMATCH),
        ("mysecret", OCTOKIT_BODY, "sha256=é", REASON_MISMATCH),
        ("mysecret", OCTOKIT_BODY, None, REASON_MISSING),
        ("mysecret", OCTOKIT_BODY, "", REASON_MISSING),
        ("", OCTOKIT_BODY, OCTOKIT_SIGNATURE, REASON_DISABLED),
    ],
    ids=[
        "gidgethub-altered-payload",
        "gidgethub-hex-only",
        "gidgethub-sha1",
        "octokit-wrong-signature",
        "octokit-foo",
        "octokit-wrong-secret",
        "reserialised-body",
        "uppercase-hex",
        "empty-digest",
        "non-ascii",
        "no-header",
        "empty-header",
        "no-secret",
    ],
)
def test_wrong_missing_or_legacy_signatures_fail_with_a_reason(secret, body, header, reason):
    assert verify_signature(body, header, secret) == reason


def test_the_reasons_read_as_stated():
    assert (REASON_MISSING, REASON_SCHEME, REASON_MISMATCH) == (
        "missing X-Hub-Signature-256",
        "signature must start with sha256=",
        "signature does not match",
    )


@NO_FIXTURES
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_payloads_signed_with_the_verifier_verify_and_fail_when_altered(name):
    body = (FIXTURES / name).read_bytes()
    header = sign_body(body, "hook secret")

    assert verify_signature(body, header, "hook secret") is None
    assert verify_signature(body[:-1] + b" ", header, "hook secret") == REASON_MISMATCH


# --- bodies, pings and delivery keys --------------------------------------------------------------


@NO_FIXTURES
def test_a_urlencoded_ping_is_recognised_and_decoded():
    headers = json.loads((FIXTURES / URLENCODED_PING / "headers.json").read_bytes())
    body = (FIXTURES / URLENCODED_PING / "body").read_bytes()

    payload = decode_body(headers["content-type"], body)

    assert is_ping(headers["x-github-event"])
    assert (payload["zen"], payload["hook_id"]) == ("Keep it logically awesome.", 13736792)
    assert to_comment_event(headers["x-github-event"], payload) == Ignored(
        "event 'ping' carries no commands"
    )
    assert delivery_key(headers) == ":44840d80-36a8-11e7-89d0-954e94e187c2"
    assert verify_signature(body, headers.get("x-hub-signature-256"), "s") == REASON_MISSING


def test_only_ping_is_a_ping():
    assert [is_ping(event) for event in ("ping", "Ping", "push", "")] == [True, False, False, False]


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json; charset=utf-8", "Application/JSON"],
)
def test_json_bodies_are_decoded(content_type):
    assert decode_body(content_type, GIDGET_BODY) == {"action": "opened"}


def test_form_bodies_carry_the_json_in_payload():
    body = b"payload=%7B%22action%22%3A+%22opened%22%7D"

    assert decode_body("application/x-www-form-urlencoded", body) == {"action": "opened"}


@pytest.mark.parametrize("content_type", [None, "", "text/plain", "application/xml", "multipart"])
def test_other_content_types_are_unsupported(content_type):
    with pytest.raises(UnsupportedContentType, match="unsupported content type"):
        decode_body(content_type, GIDGET_BODY)


@pytest.mark.parametrize(
    ("content_type", "body", "message"),
    [
        ("application/json", b"{", "body is not valid JSON"),
        ("application/json", b"", "body is not valid JSON"),
        ("application/json", b"\xff\xfe{", "body is not valid JSON"),
        ("application/json", b'{"n": NaN}', "'NaN' is not a JSON number"),
        ("application/json", b"[" * 100_000 + b"]" * 100_000, "body is not valid JSON"),
        ("application/json", b"[1]", "payload must be a JSON object, got 'list'"),
        ("application/json", b'"ping"', "payload must be a JSON object, got 'str'"),
        ("application/x-www-form-urlencoded", b"", "needs one 'payload' field, got 0"),
        ("application/x-www-form-urlencoded", b"zen=1", "needs one 'payload' field, got 0"),
        ("application/x-www-form-urlencoded", b"payload=1&payload=2", "got 2"),
        ("application/x-www-form-urlencoded", b"payload", "body is not a valid form"),
        ("application/x-www-form-urlencoded", b"payload=%ff", "body is not a valid form"),
        ("application/x-www-form-urlencoded", b"payload=\xc3\xa9", "body is not a valid form"),
        ("application/x-www-form-urlencoded", b"payload=%7B", "body is not valid JSON"),
    ],
)
def test_unreadable_bodies_raise_a_payload_error(content_type, body, message):
    with pytest.raises(PayloadError, match=re.escape(message)) as raised:
        decode_body(content_type, body)

    assert raised.value.reason == str(raised.value)
    assert not isinstance(raised.value, UnsupportedContentType)


@pytest.mark.parametrize(
    ("headers", "key"),
    [
        (
            {"X-GitHub-Hook-ID": "292430182", "X-GitHub-Delivery": "72d3162e-cc78-11e3"},
            "292430182:72d3162e-cc78-11e3",
        ),
        ({"x-github-hook-id": "1", "x-github-delivery": " abc "}, "1:abc"),
        ({"X-GITHUB-DELIVERY": "abc"}, ":abc"),
        ({"X-GitHub-Hook-ID": "1"}, None),
        ({"X-GitHub-Hook-ID": "1", "X-GitHub-Delivery": ""}, None),
        ({"X-GitHub-Delivery": "a b"}, None),
        ({"X-GitHub-Delivery": "d" * 101}, None),
        ({"X-GitHub-Hook-ID": "1 2", "X-GitHub-Delivery": "abc"}, None),
    ],
)
def test_the_delivery_key_names_one_delivery_of_one_hook(headers, key):
    assert delivery_key(headers) == key
