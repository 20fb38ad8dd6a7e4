"""GitHub comment events from real payloads, bots, and the jobs their commands become."""

from __future__ import annotations

import copy
import json
import re
from types import MappingProxyType
from typing import Any

import pytest

from tests.triggers.github_files import (
    EXPECTED,
    FIXTURES,
    NO_FIXTURES,
    PR_COMMENT,
    URLENCODED_PING,
    event_name,
    load,
)
from triggers.commands import MentionCommand, RunCommand, StopCommand, parse_commands
from triggers.github import (
    CommentEvent,
    Ignored,
    PayloadError,
    decode_body,
    delivery_key,
    is_from_bot,
    read_comment_event,
    sign_body,
    to_comment_event,
    to_loop_job,
    verify_signature,
)

# --- every payload file -------------------------------------------------------------------------


@NO_FIXTURES
def test_every_payload_file_is_covered():
    on_disk = {path.name for path in FIXTURES.iterdir() if path.suffix != ".md"}

    assert on_disk == {*EXPECTED, URLENCODED_PING}


@NO_FIXTURES
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_payload_becomes_the_expected_event(name):
    payload = load(name)

    result = to_comment_event(event_name(name), payload)

    if EXPECTED[name] == "ignored":
        assert isinstance(result, Ignored)
        assert result.reason
    else:
        assert isinstance(result, CommentEvent)
        assert_matches_payload(result, payload, EXPECTED[name])


@NO_FIXTURES
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_part_read_of_every_payload_reads_the_same(name):
    payload = load(name)

    found, part = read_comment_event(event_name(name), payload)

    assert found == to_comment_event(event_name(name), payload)
    assert to_comment_event(event_name(name), json.loads(json.dumps(part))) == found
    if EXPECTED[name] != "ignored":
        assert len(json.dumps(part)) < len(json.dumps(payload)) / 10


def _null_body_and_installation(payload: dict[str, Any]) -> None:
    put(payload, "comment.body", None)
    put(payload, "installation", None)


@NO_FIXTURES
@pytest.mark.parametrize(
    "change",
    [
        _null_body_and_installation,
        lambda p: drop(p, "comment.author_association"),
        lambda p: drop(p, "installation"),
        lambda p: put(p, "issue.pull_request", load(PR_COMMENT)["issue"]["pull_request"]),
    ],
    ids=["null body and installation", "no association", "no installation", "on a pull request"],
)
def test_the_part_read_keeps_absent_fields_absent_and_nulls_null(change):
    payload = copy.deepcopy(load("issue_comment__created.with-installation.payload.json"))
    change(payload)

    found, part = read_comment_event("issue_comment", payload)

    assert isinstance(found, CommentEvent)
    assert to_comment_event("issue_comment", json.loads(json.dumps(part))) == found


def assert_matches_payload(event: CommentEvent, payload: dict[str, Any], kind: str) -> None:
    comment, repository = payload["comment"], payload["repository"]
    target = payload["pull_request"] if kind == "review" else payload["issue"]
    assert event == CommentEvent(
        repo=repository["full_name"],
        owner=repository["owner"]["login"],
        name=repository["name"],
        number=target["number"],
        is_pull_request=kind in ("pr", "review"),
        comment_id=comment["id"],
        comment_kind="review" if kind == "review" else "issue",
        comment_url=comment["url"],
        author=comment["user"]["login"],
        author_type=comment["user"]["type"],
        author_association=comment.get("author_association"),
        body=comment["body"],
        installation_id=(payload.get("installation") or {}).get("id"),
        html_url=comment["html_url"],
    )


@NO_FIXTURES
def test_a_comment_on_a_pull_request_is_on_a_pull_request():
    event = to_comment_event("issue_comment", load(PR_COMMENT))

    assert isinstance(event, CommentEvent)
    assert (event.repo, event.number, event.is_pull_request) == (
        "runatlantis/atlantis-tests",
        1,
        True,
    )
    assert (event.comment_kind, event.author_association) == ("issue", "OWNER")


@NO_FIXTURES
def test_a_comment_on_a_plain_issue_is_not_on_a_pull_request():
    event = to_comment_event("issue_comment", load("issue_comment__created.payload.json"))

    assert isinstance(event, CommentEvent)
    assert (event.number, event.is_pull_request, event.installation_id) == (1, False, None)


@NO_FIXTURES
def test_a_diff_comment_is_a_review_comment_on_its_pull_request():
    event = to_comment_event(
        "pull_request_review_comment", load("pull_request_review_comment__created.payload.json")
    )

    assert isinstance(event, CommentEvent)
    assert (event.number, event.is_pull_request, event.comment_kind) == (2, True, "review")
    assert (event.comment_id, event.installation_id) == (284312630, 1)


@NO_FIXTURES
def test_an_old_payload_without_optional_fields_is_read():
    name = "issue_comment__created__atlantis-githubIssueCommentEvent_notAllowlisted.json"

    event = to_comment_event("issue_comment", load(name))

    assert isinstance(event, CommentEvent)
    assert (event.body, event.author_association) == ("atlantis plan", None)


@NO_FIXTURES
@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("issue_comment__edited.payload.json", "'issue_comment' action 'edited' is not 'created'"),
        (
            "issue_comment__deleted.payload.json",
            "'issue_comment' action 'deleted' is not 'created'",
        ),
        ("push__payload.json", "event 'push' carries no commands"),
        ("ping__payload.json", "event 'ping' carries no commands"),
    ],
)
def test_ignored_deliveries_say_why(name, reason):
    assert to_comment_event(event_name(name), load(name)) == Ignored(reason)


# --- malformed payloads -------------------------------------------------------------------------


def drop(payload: dict[str, Any], dotted: str) -> None:
    *path, last = dotted.split(".")
    for key in path:
        payload = payload[key]
    del payload[last]


def put(payload: dict[str, Any], dotted: str, value: object) -> None:
    *path, last = dotted.split(".")
    for key in path:
        payload = payload[key]
    payload[last] = value


@NO_FIXTURES
@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: drop(p, "comment.user.login"), "'issue_comment' payload: comment.user.login"),
        (lambda p: drop(p, "action"), "action: Field required"),
        (lambda p: drop(p, "issue"), "issue: Field required"),
        (lambda p: drop(p, "repository.full_name"), "repository.full_name: Field required"),
        (
            lambda p: put(p, "comment.id", "492700400"),
            "comment.id: Input should be a valid integer",
        ),
        (lambda p: put(p, "comment.id", True), "comment.id: Input should be a valid integer"),
        (lambda p: put(p, "issue.number", 0), "issue.number: Input should be greater than"),
        (lambda p: put(p, "comment.body", 7), "comment.body"),
        (lambda p: put(p, "comment", []), "comment: Input should be a valid dictionary"),
        (lambda p: put(p, "installation", {"id": "1"}), "installation.id"),
    ],
)
def test_malformed_comment_payloads_raise_a_payload_error(change, message):
    payload = copy.deepcopy(load("issue_comment__created.with-installation.payload.json"))
    change(payload)

    with pytest.raises(PayloadError, match=re.escape(message)):
        to_comment_event("issue_comment", payload)


@NO_FIXTURES
def test_a_review_comment_needs_its_pull_request():
    payload = copy.deepcopy(load("pull_request_review_comment__created.payload.json"))
    del payload["pull_request"]

    with pytest.raises(PayloadError, match=re.escape("pull_request: Field required")):
        to_comment_event("pull_request_review_comment", payload)


@NO_FIXTURES
def test_a_null_body_and_a_null_installation_are_read_as_absent():
    payload = copy.deepcopy(load("issue_comment__created.with-installation.payload.json"))
    put(payload, "comment.body", None)
    put(payload, "installation", None)

    event = to_comment_event("issue_comment", payload)

    assert isinstance(event, CommentEvent)
    assert (event.body, event.installation_id) == ("", None)


@NO_FIXTURES
def test_any_mapping_is_read_like_a_dict():
    payload = load("issue_comment__created.payload.json")

    assert to_comment_event("issue_comment", MappingProxyType(payload)) == to_comment_event(
        "issue_comment", payload
    )


def test_a_payload_that_is_no_object_raises_a_payload_error():
    with pytest.raises(
        PayloadError, match=r"^'issue_comment' payload: Input should be a valid dict"
    ):
        to_comment_event("issue_comment", [])  # type: ignore[arg-type]


# --- bots -----------------------------------------------------------------------------------------


def comment_event(**fields: Any) -> CommentEvent:
    values: dict[str, Any] = {
        "repo": "octo/calc",
        "owner": "octo",
        "name": "calc",
        "number": 7,
        "is_pull_request": True,
        "comment_id": 99,
        "comment_kind": "issue",
        "comment_url": "https://api.github.com/repos/octo/calc/issues/comments/99",
        "author": "octocat",
        "author_type": "User",
        "author_association": "MEMBER",
        "body": "/loop fix-tests",
        "installation_id": None,
        "html_url": "https://github.com/octo/calc/pull/7#issuecomment-99",
    }
    return CommentEvent(**(values | fields))


@pytest.mark.parametrize(
    ("author", "author_type", "bot_name", "is_bot"),
    [
        ("octocat", "User", "loopwright", False),
        ("loopwright-fan", "User", "loopwright", False),
        ("github-actions", "Bot", "loopwright", True),
        ("dependabot[bot]", "User", "loopwright", True),
        ("Loopwright", "User", "loopwright", True),
        ("loopwright[bot]", "Bot", "LoopWright", True),
        ("LOOPWRIGHT", "User", "loopwright[bot]", True),
    ],
)
def test_bots_and_the_service_itself_are_recognised(author, author_type, bot_name, is_bot):
    event = comment_event(author=author, author_type=author_type)

    assert is_from_bot(event, bot_name=bot_name) is is_bot


# --- jobs -----------------------------------------------------------------------------------------


def test_a_run_command_on_an_issue_becomes_a_job_without_a_pr():
    event = comment_event(is_pull_request=False, number=12)

    job = to_loop_job(
        event, RunCommand("triage", "label it"), workflow="triage", delivery_key="5:d", index=0
    )

    assert (job.workflow, job.source, job.instruction) == ("triage", "github", "label it")
    assert (job.repo, job.pr, job.requested_by) == ("octo/calc", None, "octocat")
    assert (job.idempotency_key, job.concurrency_key) == ("github:5:d:0", "github:octo/calc#12")
    assert job.reply == {
        "repo": "octo/calc",
        "number": "12",
        "comment_id": "99",
        "comment_kind": "issue",
    }


@NO_FIXTURES
def test_a_pr_comment_with_commands_becomes_jobs():
    payload = load(PR_COMMENT)
    payload["comment"]["body"] = (
        "Thanks!\r\n"
        "/loop fix-tests fix the failing tests\r\n"
        "> /loop stop\r\n"
        "@LoopWright[bot] then update the changelog\r\n"
        "/loop stop\r\n"
    )
    body = json.dumps(payload).encode()
    headers = {"X-GitHub-Hook-ID": "42", "X-GitHub-Delivery": "72d3162e-cc78-11e3"}
    assert verify_signature(body, sign_body(body, "hook secret"), "hook secret") is None

    event = to_comment_event("issue_comment", decode_body("application/json", body))
    assert isinstance(event, CommentEvent)
    assert not is_from_bot(event, bot_name="loopwright")
    commands = parse_commands(event.body, bot_name="loopwright")
    key = delivery_key(headers)
    assert key is not None
    jobs = [
        to_loop_job(
            event,
            command,
            workflow=command.workflow if isinstance(command, RunCommand) else "default",
            delivery_key=key,
            index=index,
        )
        for index, command in enumerate(commands)
        if isinstance(command, RunCommand | MentionCommand)
    ]

    assert commands[2] == StopCommand()
    assert [(job.workflow, job.instruction) for job in jobs] == [
        ("fix-tests", "fix the failing tests"),
        ("default", "then update the changelog"),
    ]
    assert [job.idempotency_key for job in jobs] == [
        "github:42:72d3162e-cc78-11e3:0",
        "github:42:72d3162e-cc78-11e3:1",
    ]
    assert {(job.repo, job.pr, job.requested_by) for job in jobs} == {
        ("runatlantis/atlantis-tests", 1, "runatlantis")
    }
    assert {job.concurrency_key for job in jobs} == {"github:runatlantis/atlantis-tests#1"}
    assert jobs[0].reply == {
        "repo": "runatlantis/atlantis-tests",
        "number": "1",
        "comment_id": "396926483",
        "comment_kind": "issue",
    }


@NO_FIXTURES
def test_a_review_comment_command_replies_to_the_review_comment():
    payload = load("pull_request_review_comment__created.payload.json")
    payload["comment"]["body"] = "/loop fix-tests use more emoji"
    event = to_comment_event("pull_request_review_comment", payload)
    assert isinstance(event, CommentEvent)
    [command] = parse_commands(event.body, bot_name=None)
    assert isinstance(command, RunCommand)

    job = to_loop_job(event, command, workflow=command.workflow, delivery_key="1:d", index=0)

    assert (job.pr, job.instruction) == (2, "use more emoji")
    assert job.reply == {
        "repo": "Codertocat/Hello-World",
        "number": "2",
        "comment_id": "284312630",
        "comment_kind": "review",
        "installation_id": "1",  # the App installation the fixture was delivered to
    }
