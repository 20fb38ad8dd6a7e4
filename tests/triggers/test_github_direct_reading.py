"""`read_comment_delivery` reads a JSON comment delivery straight from its bytes. Whatever the
body, its answer (or refusal) must be exactly that of decoding the body whole and reading the
comment from the payload: the real payloads, bodies with JSON that only some parsers take
spliced into the real pull-request comment, and random JSON values in the same places."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import triggers.github
from tests.triggers.github_files import EXPECTED, NO_FIXTURES, PR_COMMENT, event_name, load
from triggers.github import CommentEvent, PayloadError, read_comment_delivery, read_comment_event

pytestmark = NO_FIXTURES

JSON = "application/json"
SPLICE = "__splice__"


def whole(event: str, content_type: str, body: bytes) -> object:
    """The answer of decoding the body whole, or the refusal's kind and reason."""
    try:
        return read_comment_event(event, triggers.github.decode_body(content_type, body))
    except PayloadError as exc:
        return type(exc), exc.reason


def direct(event: str, content_type: str, body: bytes) -> object:
    try:
        return read_comment_delivery(event, content_type, body)
    except PayloadError as exc:
        return type(exc), exc.reason


def spliced(fragment: str, where: str, *, comment: str | None = None) -> bytes:
    """The real pull-request comment's body with the raw JSON `fragment` as the value at the
    dotted path `where` (a new key where there was none), and the comment's text `comment`."""
    payload = copy.deepcopy(load(PR_COMMENT))
    if comment is not None:
        payload["comment"]["body"] = comment
    *path, last = where.split(".")
    target = payload
    for key in path:
        target = target[key]
    target[last] = SPLICE
    return json.dumps(payload).replace(f'"{SPLICE}"', fragment, 1).encode()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_real_payload_is_read_as_when_decoded_whole(name):
    body = json.dumps(load(name)).encode()
    event = event_name(name)

    assert direct(event, JSON, body) == whole(event, JSON, body)
    for content_type in ("application/json; charset=utf-8", "text/plain", None):
        assert direct(event, content_type, body) == whole(event, content_type, body)


def test_a_json_comment_is_read_without_decoding_the_whole_body(monkeypatch):
    body = json.dumps(load(PR_COMMENT)).encode()
    expected = whole("issue_comment", JSON, body)

    def not_called(*_args: object) -> object:
        raise AssertionError("decoded whole")

    monkeypatch.setattr(triggers.github, "decode_body", not_called)
    found, part = read_comment_delivery("issue_comment", JSON, body)

    assert isinstance(found, CommentEvent)
    assert (found, part) == expected


PLACES = [
    "extra",  # a key nobody reads
    "repository.extra",
    "issue.pull_request",  # read for its presence only
    "comment.id",
    "issue.number",
    "comment.body",
    "comment.user.login",
    "installation",
    "action",
]
FRAGMENTS = [
    "NaN",
    "-Infinity",
    "Infinity",
    "[1, NaN]",
    '"NaN and Infinity in a string"',
    "1e999",
    "-1e999",
    str(2**63 - 1),
    str(2**63),
    str(2**64),
    str(2**70),
    "1.0",
    "1e2",
    "-0",
    "0",
    '"\\ud800"',
    '"\\udc00 alone"',
    '"\\ud83d\\ude00"',
    '"\\u0000"',
    '"raw \x01 control"',
    "[" * 300 + "]" * 300,
    "[" * 3000 + "]" * 3000,
    "null",
    "true",
    "{}",
    '{"id": 5, "id": 6}',
    "[]",
    '"created"',
    "01",
    "1.",
    "+1",
    "'single'",
]


@pytest.mark.parametrize("where", PLACES)
@pytest.mark.parametrize("fragment", FRAGMENTS)
def test_json_some_parsers_take_is_read_as_when_decoded_whole(fragment, where):
    body = spliced(fragment, where)

    assert direct("issue_comment", JSON, body) == whole("issue_comment", JSON, body)


@pytest.mark.parametrize("fragment", ["NaN", "Infinity", "-Infinity", "1", '"Infinite NaNs"'])
@pytest.mark.parametrize("letters", [0, 63, 64, 65, 1000])
def test_a_comment_full_of_ns_and_is_hides_no_nan(fragment, letters):
    # "I" and "N" start the words JSON does not have; a comment may hold any number of them.
    body = spliced(fragment, "extra", comment="NI " * letters + "Not Infinite")

    assert direct("issue_comment", JSON, body) == whole("issue_comment", JSON, body)


@pytest.mark.parametrize(
    "body",
    [
        b"\xef\xbb\xbf" + json.dumps(load(PR_COMMENT)).encode(),  # a byte-order mark
        json.dumps(load(PR_COMMENT)).encode("utf-16"),
        json.dumps(load(PR_COMMENT)).encode("utf-32-be"),
        json.dumps(load(PR_COMMENT)).encode() + b" trailing",
        json.dumps(load(PR_COMMENT)).encode() + b"\n\t\r ",
        spliced('"MARK"', "comment.body").replace(b"MARK", b"\xed\xa0\x80"),
        spliced('"MARK"', "extra").replace(b"MARK", b"\xff"),
        json.dumps(load(PR_COMMENT)).encode()[:-1],
        b"[" + json.dumps(load(PR_COMMENT)).encode() + b"]",
        b"",
        b"null",
    ],
    ids=[
        "bom",
        "utf-16",
        "utf-32",
        "trailing text",
        "trailing space",
        "encoded surrogate",
        "invalid utf-8",
        "truncated",
        "an array",
        "empty",
        "null",
    ],
)
def test_whole_bodies_some_parsers_take_are_read_as_when_decoded_whole(body):
    for event in ("issue_comment", "pull_request_review_comment"):
        assert direct(event, JSON, body) == whole(event, JSON, body)


def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4)


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(),
    _containers,
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(value=JSON_VALUES, where=st.sampled_from(PLACES))
def test_any_json_value_anywhere_is_read_as_when_decoded_whole(value: Any, where: str):
    body = spliced(json.dumps(value), where)

    assert direct("issue_comment", JSON, body) == whole("issue_comment", JSON, body)
