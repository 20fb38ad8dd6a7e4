"""`POST /webhooks/github` on the real service: every real payload signed and posted, the
published signature vectors, size and format refusals, dedupe across restarts, and the trigger
switched off without its secret or credentials."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from app.routes_github import MAX_WEBHOOK_BYTES
from loops.testing import FunctionModel, reply
from tests.app.github_support import (
    SECRET,
    Hook,
    github_app,
    github_settings,
    pr_comment,
    serve_hook,
)
from tests.support.github_server import FakeGitHub
from tests.triggers.github_files import EXPECTED, FIXTURES, NO_FIXTURES, URLENCODED_PING, event_name

pytestmark = NO_FIXTURES

DONE = FunctionModel(lambda _request: reply("nothing to change"))


@pytest.fixture
async def hook(tmp_path: Path, github: FakeGitHub) -> AsyncIterator[Hook]:
    async with serve_hook(github_app(tmp_path, DONE, github_settings(github))) as served:
        yield served


# --- every real payload, signed and posted ---------------------------------------------------

EXPECTED_ANSWERS = {
    name: (200, {"ping": "pong"})
    if event_name(name) == "ping"
    else (202, {"accepted": True})
    if kind != "ignored"
    else (202, "ignored")
    for name, kind in EXPECTED.items()
}


@pytest.mark.parametrize("name", sorted(EXPECTED_ANSWERS))
async def test_every_real_payload_gets_its_answer(hook: Hook, name: str) -> None:
    body = (FIXTURES / name).read_bytes()
    delivery = str(uuid.uuid4())

    response = await hook.deliver(event_name(name), body, delivery=delivery)

    status, answer = EXPECTED_ANSWERS[name]
    assert response.status_code == status, response.text
    if answer == "ignored":
        assert set(response.json()) == {"ignored"}
        outcome = await hook.processed(delivery, timeout=1)
        assert outcome.startswith("ignored: ")
    else:
        assert response.json() == answer
    if status == 202 and answer != "ignored":
        # Stored before the answer; none of these comments holds a command.
        assert await hook.processed(delivery) == "ignored: no commands"
    assert hook.count_jobs() == 0


async def test_the_urlencoded_ping_is_decoded_and_answered(hook: Hook) -> None:
    folder = FIXTURES / URLENCODED_PING
    headers = json.loads((folder / "headers.json").read_text())
    body = (folder / "body").read_bytes()

    response = await hook.deliver(
        headers["x-github-event"],
        body,
        delivery=headers["x-github-delivery"],
        content_type=headers["content-type"],
    )

    assert response.status_code == 200, response.text
    assert response.json() == {"ping": "pong"}


async def test_edited_and_deleted_comments_start_nothing_even_with_a_command(
    hook: Hook, github: FakeGitHub
) -> None:
    for action in ("edited", "deleted"):
        payload = pr_comment(github, "/loop quick do it")
        payload["action"] = action
        response = await hook.deliver("issue_comment", payload)
        assert response.status_code == 202
        assert response.json() == {"ignored": f"'issue_comment' action {action!r} is not 'created'"}
    assert hook.count_jobs() == 0
    assert github.requests == []


# --- signatures: the published vectors -------------------------------------------------------

VECTORS = [
    # secret, body, signature, event, expected status once verified
    (
        "It's a Secret to Everybody",
        b"Hello, World!",
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        "push",
        400,  # verified, but not JSON
    ),
    (
        "123456",
        b"gidget",
        "sha256=091319196718d5bcb1c20ad25fc890597423ecdbad1f947f560afd643b5000de",
        "push",
        400,
    ),
    (
        "123456",
        b'{"action": "opened"}',
        "sha256=0340d06469a1b35662ebd7a67ea2c0c328239f319f1cfafb221451de629e0430",
        "pull_request",
        202,
    ),
    (
        "mysecret",
        b'{\n  "foo": "bar"\n}\n',
        "sha256=e3eccac34c43c7dc1cbb905488b1b81347fcc700a7b025697a9d07862256023f",
        "push",
        202,
    ),
]


@pytest.mark.parametrize(
    ("secret", "body", "signature", "event", "status"),
    VECTORS,
    ids=["github-docs", "gidgethub-validate", "gidgethub-event", "octokit"],
)
async def test_published_signatures_pass_and_altered_ones_are_401(
    tmp_path: Path, github: FakeGitHub, secret, body, signature, event, status
) -> None:
    settings = github_settings(github, webhook_secret=secret)
    async with serve_hook(github_app(tmp_path, DONE, settings)) as hook:
        verified = await hook.deliver(event, body, signature=signature)
        assert verified.status_code == status, verified.text

        bare_hex = signature.removeprefix("sha256=")
        altered = [
            (body + b"!", signature, "signature does not match"),
            (body, bare_hex, "signature must start with sha256="),
            (body, "sha256=xxx" + signature[10:], "signature does not match"),
            (body, "foo", "signature must start with sha256="),
        ]
        with capture_logs() as logs:
            for sent, header, reason in altered:
                refused = await hook.deliver(event, sent, signature=header)
                assert refused.status_code == 401, refused.text
                assert refused.json() == {"detail": reason}
            other_secret = await hook.deliver(event, body, secret="foo")
            assert other_secret.status_code == 401

    rejected = [entry for entry in logs if entry["event"] == "webhook_rejected"]
    assert [entry["status"] for entry in rejected] == [401] * 5
    assert all(entry["log_level"] == "warning" for entry in rejected)
    # The log says why, and never carries the body, the signature or the secret.
    text = repr(logs)
    assert secret not in text
    assert bare_hex not in text
    if len(body) > 6:
        assert body.decode() not in text


async def test_a_missing_signature_and_the_legacy_sha1_one_are_401(hook: Hook) -> None:
    body = b'{"action": "opened"}'
    response = await hook.client.post(
        "/webhooks/github",
        content=body,
        headers={
            "content-type": "application/json",
            "x-github-event": "pull_request",
            "x-github-delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
            "x-hub-signature": "sha1=c28e33b2e56e548956c446e890929a6cbec3ac89",
        },
    )

    assert response.status_code == 401
    assert response.json() == {"detail": "missing X-Hub-Signature-256"}


# --- refusals: size, format, headers ---------------------------------------------------------


async def test_a_body_over_25_megabytes_is_413_declared_or_streamed(hook: Hook) -> None:
    declared = await hook.client.post(
        "/webhooks/github",
        content=b"{}",
        headers={"content-length": str(MAX_WEBHOOK_BYTES + 1), "x-github-event": "push"},
    )
    assert declared.status_code == 413
    assert "over 26214400 bytes" in declared.json()["detail"]

    chunk = b" " * (1 << 20)

    async def chunks():
        for _ in range(26):  # one megabyte at a time, no length declared
            yield chunk

    streamed = await hook.client.post(
        "/webhooks/github", content=chunks(), headers={"x-github-event": "push"}
    )
    assert streamed.status_code == 413
    assert streamed.json() == {"detail": "body is over 26214400 bytes"}
    assert hook.count_jobs() == 0


JSON = "application/json"


@pytest.mark.parametrize(
    ("event", "body", "content_type", "headers", "status", "reason"),
    [
        ("push", b'{"action": ', JSON, {}, 400, "body is not valid JSON"),
        ("push", b"[1, 2]", JSON, {}, 400, "payload must be a JSON object, got 'list'"),
        ("push", b'{"a": NaN}', JSON, {}, 400, "'NaN' is not a JSON number"),
        ("push", b"<xml/>", "text/xml", {}, 415, "unsupported content type 'text/xml'"),
        ("push", b"payload=%7B", "application/x-www-form-urlencoded", {}, 400, "not valid JSON"),
        ("", b"{}", JSON, {}, 400, "missing X-GitHub-Event"),
        ("push", b"{}", JSON, {"x-github-delivery": ""}, 400, "X-GitHub-Delivery"),
        ("push", b"{}", JSON, {"x-github-hook-id": "a b"}, 400, "X-GitHub-Hook-ID"),
        ("issue_comment", b"{}", JSON, {}, 400, "action: Field required"),
    ],
    ids=[
        "truncated",
        "array",
        "nan",
        "xml",
        "bad-form",
        "no-event",
        "no-delivery",
        "bad-hook-id",
        "comment-without-fields",
    ],
)
async def test_unreadable_deliveries_are_4xx_logged_and_store_nothing(
    hook: Hook, event, body, content_type, headers, status, reason
) -> None:
    with capture_logs() as logs:
        response = await hook.deliver(event, body, content_type=content_type, headers=headers)

    assert response.status_code == status, response.text
    assert reason in response.json()["detail"]
    [rejected] = [entry for entry in logs if entry["event"] == "webhook_rejected"]
    assert rejected["status"] == status
    assert reason in rejected["reason"]
    assert await _stored(hook) == 0


async def _stored(hook: Hook) -> int:
    import sqlalchemy as sa

    from app.ledger_schema import deliveries

    with hook.services.ledger.transaction(write=False) as conn:
        count = conn.execute(sa.select(sa.func.count()).select_from(deliveries)).scalar_one()
    return int(count)


# --- dedupe ----------------------------------------------------------------------------------


async def test_a_redelivery_is_a_duplicate_and_starts_no_second_run_even_after_a_restart(
    tmp_path: Path, github: FakeGitHub
) -> None:
    payload = pr_comment(github, "/loop quick make it so")
    settings = github_settings(github)
    delivery = str(uuid.uuid4())
    async with serve_hook(github_app(tmp_path, DONE, settings)) as hook:
        first = await hook.deliver("issue_comment", payload, delivery=delivery)
        again = await hook.deliver("issue_comment", payload, delivery=delivery)
        assert (first.status_code, first.json()) == (202, {"accepted": True})
        assert (again.status_code, again.json()) == (200, {"duplicate": True})
        assert (await hook.processed(delivery)).startswith("queued run ")
        assert hook.count_jobs() == 1

    async with serve_hook(github_app(tmp_path, DONE, settings)) as restarted:
        after = await restarted.deliver("issue_comment", payload, delivery=delivery)
        assert (after.status_code, after.json()) == (200, {"duplicate": True})
        assert restarted.count_jobs() == 1
    reactions = [r for r in github.reactions if r["comment_id"] == payload["comment"]["id"]]
    assert len(reactions) == 1


async def test_an_ignored_delivery_is_recorded_so_its_redelivery_is_a_duplicate(hook: Hook):
    delivery = str(uuid.uuid4())
    body = (FIXTURES / "push__payload.json").read_bytes()

    first = await hook.deliver("push", body, delivery=delivery)
    again = await hook.deliver("push", body, delivery=delivery)

    assert first.json() == {"ignored": "event 'push' carries no commands"}
    assert (again.status_code, again.json()) == (200, {"duplicate": True})
    assert await hook.processed(delivery) == "ignored: event 'push' carries no commands"
    assert hook.services.deliveries.pending("github") == []


# --- the trigger switched off ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"webhook_secret": None}, "LOOPWRIGHT_GITHUB__WEBHOOK_SECRET is not set"),
        ({"token": None}, "no GitHub credentials"),
        ({"token": None, "app_id": "12"}, "needs both LOOPWRIGHT_GITHUB__APP_ID and"),
        (
            {"token": None, "app_id": "12", "private_key": "not a key"},
            "the GitHub App private key is not a readable PEM private key",
        ),
    ],
    ids=["no-secret", "no-credentials", "app-without-key", "unreadable-key"],
)
async def test_without_secret_or_credentials_the_webhook_is_503_and_the_log_says_why(
    tmp_path: Path, overrides, reason
) -> None:
    settings = github_settings(None, **overrides)
    with capture_logs() as logs:
        async with serve_hook(github_app(tmp_path, DONE, settings)) as hook:
            response = await hook.deliver("ping", b"{}")
            states = hook.services.triggers

    assert response.status_code == 503
    assert reason in response.json()["detail"]
    assert states["github"][0] is False
    [disabled] = [e for e in logs if e["event"] == "trigger_disabled" and e["trigger"] == "github"]
    assert reason in disabled["reason"]
    assert "not a key" not in repr(logs).replace("not a readable", "")


async def test_the_start_up_log_says_the_trigger_is_on(tmp_path: Path, github: FakeGitHub) -> None:
    with capture_logs() as logs:
        async with serve_hook(github_app(tmp_path, DONE, github_settings(github))):
            pass

    [enabled] = [e for e in logs if e["event"] == "trigger_enabled" and e["trigger"] == "github"]
    assert enabled["reason"] == f"a token at {github.url}"
    assert SECRET not in repr(logs)


async def test_deliveries_and_refusals_are_counted_under_the_route(hook: Hook) -> None:
    body = (FIXTURES / "issue_comment__created.payload.json").read_bytes()

    accepted = await hook.deliver("issue_comment", body)
    refused = await hook.deliver("issue_comment", body, secret="not the secret")
    metrics = (await hook.client.get("/metrics")).text

    assert (accepted.status_code, refused.status_code) == (202, 401)
    route = 'loopwright_http_requests_total{method="POST",route="/webhooks/github"'
    assert f'{route},status="202"}} 1.0' in metrics
    assert f'{route},status="401"}} 1.0' in metrics


async def test_a_bug_in_the_webhook_path_is_a_logged_500(
    hook: Hook, monkeypatch: pytest.MonkeyPatch
) -> None:
    import app.api_intake

    async def broken(_request: object) -> object:
        raise RuntimeError("a bug")

    monkeypatch.setattr(app.api_intake, "github_webhook", broken)
    with capture_logs() as logs:
        response = await hook.deliver("ping", b"{}")
    metrics = (await hook.client.get("/metrics")).text

    assert (response.status_code, response.json()) == (500, {"detail": "Internal Server Error"})
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["webhook_failed"]
    route = 'loopwright_http_requests_total{method="POST",route="/webhooks/github"'
    assert f'{route},status="500"}} 1.0' in metrics
