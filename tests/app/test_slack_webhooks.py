"""The Slack endpoints of the real service: every fixture signed for real and posted through
the app, signatures, the window, malformed bodies, allow-lists and the run commands."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from app.settings import SlackSettings
from loops.testing import FunctionModel
from tests.app.github_support import done
from tests.app.slack_support import (
    FIXTURES,
    SECRET,
    Slack,
    mention,
    serve_slack,
    signed_headers,
    slack_app,
    slash_form,
    until,
)
from tests.support.slack_server import TOKEN, FakeSlack


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    with FakeSlack() as server:
        yield server


def settings(server: FakeSlack, **overrides: Any) -> SlackSettings:
    values: dict[str, Any] = {
        "signing_secret": SECRET,
        "bot_token": TOKEN,
        "api_url": server.api_url,
    }
    values.update(overrides)
    return SlackSettings(**values)


@pytest.fixture
async def slack(tmp_path: Path, fake_slack: FakeSlack) -> AsyncIterator[Slack]:
    app = slack_app(tmp_path, FunctionModel(done), settings(fake_slack))
    async with serve_slack(app) as served:
        yield served


def fixture_body(name: str) -> bytes:
    raw = (FIXTURES / name).read_bytes()
    # The docs print the weather example one field per line; on the wire it is one line.
    return raw.replace(b"\n", b"").strip() if name.endswith(".txt") else raw


FIXTURE_ANSWERS: dict[str, tuple[str, str]] = {
    "slash_command__bolt-python-test_slash_command.form": ("commands", "is not a workflow name"),
    "slash_command__slack-docs-signing-example__python-slack-sdk-test_signature_verifier.form": (
        "commands",
        "needs a workflow name",
    ),
    "slash_command__slack-docs-weather-example.txt": ("commands", "is not a workflow name"),
    "url_verification__python-slack-events-api-url_challenge.json": ("events", "challenge"),
    "url_verification__slack-docs.json": ("events", "challenge"),
    "app_rate_limited__slack-docs.json": ("events", "ignored"),
    "event_callback__app_mention__bolt-python-test_flask.json": ("events", "run"),
    "event_callback__app_mention__slack-docs.json": ("events", "run"),
    "event_callback__message__messageIm__slack-web-golden.json": ("events", "run"),
    **{
        p.name: ("events", "ignored")
        for p in FIXTURES.glob("event_callback__*.json")
        if "app_mention" not in p.name and "messageIm" not in p.name
    },
}


def test_every_fixture_has_an_expected_answer() -> None:
    assert {p.name for p in FIXTURES.iterdir() if p.suffix != ".md"} == set(FIXTURE_ANSWERS)


@pytest.mark.parametrize("name", sorted(FIXTURE_ANSWERS))
async def test_each_fixture_signed_for_real_gets_its_answer(slack: Slack, name: str) -> None:
    endpoint, expected = FIXTURE_ANSWERS[name]
    body = fixture_body(name)
    post = slack.command if endpoint == "commands" else slack.event
    response = await post(body)
    assert response.status_code == 200, response.text
    answer = response.json()
    if endpoint == "commands":
        assert answer["response_type"] == "ephemeral"
        assert expected in answer["text"]
        assert slack.runs() == []
    elif expected == "challenge":
        assert answer == {"challenge": json.loads(body)["challenge"]}
    elif expected == "ignored":
        assert "ignored" in answer
        assert slack.runs() == []
    else:
        run = await slack.wait_for_run(answer["run_id"], "passed")
        job = slack.services.ledger.get_job(run.job_id)
        assert job is not None
        assert (job.source, job.workflow) == ("slack", "quick")


@pytest.mark.parametrize("endpoint", ["commands", "events"])
@pytest.mark.parametrize(
    ("headers", "tamper"),
    [
        ({"x-slack-signature": "v0=" + "0" * 64}, False),
        ({}, True),
        ({"x-slack-request-timestamp": str(int(time.time()) - 301)}, False),
        ({"x-slack-signature": ""}, False),
    ],
)
async def test_bad_or_stale_signatures_are_401(
    slack: Slack, endpoint: str, headers: dict[str, str], tamper: bool
) -> None:
    body = fixture_body("event_callback__app_mention__slack-docs.json")
    sent = {**signed_headers(body), **headers}
    sent_body = body + b" " if tamper else body
    response = await slack.client.post(
        f"/webhooks/slack/{endpoint}", content=sent_body, headers=sent
    )
    assert response.status_code == 401
    assert response.json() == {"error": "invalid request"}
    assert slack.runs() == []


async def test_a_signature_301_seconds_old_is_refused_and_300_is_taken(slack: Slack) -> None:
    body = fixture_body("url_verification__slack-docs.json")
    now = time.time()
    fresh = signed_headers(body, at=now - 299)
    stale = signed_headers(body, at=now - 302)
    assert (
        await slack.client.post("/webhooks/slack/events", content=body, headers=fresh)
    ).status_code == 200
    assert (
        await slack.client.post("/webhooks/slack/events", content=body, headers=stale)
    ).status_code == 401


async def test_a_body_signed_with_another_secret_is_401(slack: Slack) -> None:
    body = fixture_body("url_verification__slack-docs.json")
    headers = signed_headers(body, secret="another-secret")
    response = await slack.client.post("/webhooks/slack/events", content=body, headers=headers)
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("endpoint", "body", "reason"),
    [
        ("events", b"{not json", "not valid JSON"),
        ("events", b'{"type": "event_callback"}', "without an 'event'"),
        ("commands", b"team_id=T1&channel_id=C1", "lacks"),
        ("commands", b"%%%", "not a valid form"),
    ],
)
async def test_malformed_bodies_are_400(
    slack: Slack, endpoint: str, body: bytes, reason: str
) -> None:
    response = await slack.client.post(
        f"/webhooks/slack/{endpoint}", content=body, headers=signed_headers(body)
    )
    assert response.status_code == 400
    assert reason in response.json()["error"]


@pytest.mark.parametrize("endpoint", ["commands", "events"])
async def test_ssl_check_is_answered(slack: Slack, endpoint: str) -> None:
    response = await slack.client.post(
        f"/webhooks/slack/{endpoint}",
        content=b"ssl_check=1&token=abc",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200
    assert slack.runs() == []


async def test_the_endpoints_answer_503_when_the_trigger_is_off(tmp_path: Path) -> None:
    app = slack_app(tmp_path, FunctionModel(done), SlackSettings())
    async with serve_slack(app) as slack:
        response = await slack.event(fixture_body("url_verification__slack-docs.json"))
    assert response.status_code == 503
    assert "LOOPWRIGHT_SLACK__SIGNING_SECRET is not set" in response.json()["error"]
    assert slack.services.triggers["slack"][0] is False


async def test_users_and_channels_outside_the_allow_lists_are_refused(
    tmp_path: Path, fake_slack: FakeSlack
) -> None:
    lists = settings(fake_slack, allowed_users=["W111"], allowed_channels=["C999"])
    app = slack_app(tmp_path, FunctionModel(done), lists)
    async with serve_slack(app) as slack:
        command = await slack.command(
            slash_form("quick go", response_url=fake_slack.response_url("r"))
        )
        event = await slack.event(mention("go", event_id="Ev1", ts="1.000001"))
        assert "does not take commands from you" in command.json()["text"]
        assert event.json() == {"ignored": "not allowed"}
        await until(lambda: fake_slack.ephemeral)
        assert slack.runs() == []
    assert fake_slack.ephemeral[0]["user"] == "U061F7AUR"


async def test_slash_command_for_an_unknown_workflow_lists_the_known_ones(
    slack: Slack, fake_slack: FakeSlack
) -> None:
    response = await slack.command(slash_form("nope", response_url=fake_slack.response_url("r")))
    assert response.json()["text"].startswith("There is no workflow `nope`. Workflows: `failing`")
    assert slack.runs() == []


async def test_stop_status_and_resume_act_on_the_channel_runs(
    slack: Slack, fake_slack: FakeSlack
) -> None:
    url = fake_slack.response_url("r")
    started = await slack.command(slash_form("failing try", response_url=url, trigger_id="t1"))
    run_id = started.json()["text"].split("`")[1]
    await slack.wait_for_run(run_id, "braked")
    status = await slack.command(slash_form("status", response_url=url, trigger_id="t2"))
    assert f"`{run_id}` · `failing` · *braked*" in status.json()["text"]
    stop = await slack.command(slash_form("stop", response_url=url, trigger_id="t3"))
    assert stop.json()["text"] == "No run here is queued or running."
    resume = await slack.command(slash_form(f"resume {run_id}", response_url=url, trigger_id="t4"))
    assert resume.json()["text"] == f"Resumed run `{run_id}` with 1 more turn(s)."
    await slack.wait_for_run(run_id, "braked", "running", "queued")
    missing = await slack.command(slash_form("resume zzzzzz", response_url=url, trigger_id="t5"))
    assert missing.json()["text"] == "Nothing resumed: there is no run 'zzzzzz' here"
