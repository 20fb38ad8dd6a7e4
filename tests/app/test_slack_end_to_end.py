"""End to end through the real service and a local stand-in for the Slack Web API and
`response_url`: a slash command is answered at once naming its run, then one progress message
is posted and updated until the final one; a mention in a thread is answered in that thread;
retried events start one run; a 429 is waited out."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.settings import SlackSettings
from loops.testing import FunctionModel
from tests.app.github_support import done
from tests.app.slack_support import SECRET, mention, serve_slack, slack_app, slash_form, until
from tests.support.slack_server import TOKEN, FakeSlack


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    with FakeSlack() as server:
        yield server


def settings(server: FakeSlack, *, bot_token: str | None = TOKEN) -> SlackSettings:
    values: dict[str, Any] = {"signing_secret": SECRET, "api_url": server.api_url}
    if bot_token:
        values["bot_token"] = bot_token
    return SlackSettings(**values)


async def test_slash_command_acks_at_once_then_one_message_is_updated_to_the_outcome(
    tmp_path: Path, fake_slack: FakeSlack
) -> None:
    app = slack_app(tmp_path, FunctionModel(done), settings(fake_slack))
    async with serve_slack(app) as slack:
        body = slash_form("quick make it pass", response_url=fake_slack.response_url("cmd1"))
        started = time.monotonic()
        response = await slack.command(body)
        took = time.monotonic() - started
        assert response.status_code == 200
        assert took < 3.0
        answer = response.json()
        assert answer["response_type"] == "ephemeral"
        run_id = answer["text"].split("`")[1]
        stored = slack.services.ledger.get_run(run_id)
        assert stored is not None  # stored before the answer
        await slack.wait_for_run(run_id, "passed")
        message = await until(
            lambda: next(
                (
                    m
                    for m in fake_slack.messages.values()
                    if "*passed*" in m.blocks[0]["text"]["text"]
                ),
                None,
            )
        )
    assert len(fake_slack.messages) == 1
    assert message.channel == "C111"
    assert message.thread_ts == ""
    assert message.updates, "the progress message was updated in place"
    assert "queued" in message.updates[0]
    text = " ".join(block_text(b) for b in message.blocks)
    assert f"Loopwright run `{run_id}`" in text
    assert "Turn 1 of 3" in text
    assert "✓ `true`" in text
    assert "$" in text
    assert "*The run passed*" in text
    assert "checks 1/1 passed" in message.text
    run = app.state.services.ledger.get_run(run_id)
    assert run.extra["slack_message_ts"] == message.ts
    assert fake_slack.responses == {}


def block_text(block: dict[str, Any]) -> str:
    if block["type"] == "section":
        return str(block["text"]["text"])
    return " ".join(str(e["text"]) for e in block["elements"])


async def test_without_a_bot_token_progress_goes_through_response_url_at_most_five_times(
    tmp_path: Path, fake_slack: FakeSlack
) -> None:
    app = slack_app(tmp_path, FunctionModel(done), settings(fake_slack, bot_token=None))
    async with serve_slack(app) as slack:
        body = slash_form("quick go", response_url=fake_slack.response_url("cmd2"))
        response = await slack.command(body)
        run_id = response.json()["text"].split("`")[1]
        await slack.wait_for_run(run_id, "passed")
        posts = await until(
            lambda: (p := fake_slack.responses.get("cmd2")) and "passed" in p[-1]["text"] and p
        )
    assert 1 <= len(posts) <= 5
    assert posts[0]["replace_original"] is False
    assert all(p["replace_original"] for p in posts[1:])
    assert posts[-1]["response_type"] == "in_channel"
    assert "*The run passed*" in " ".join(block_text(b) for b in posts[-1]["blocks"])
    assert fake_slack.messages == {}


async def test_a_mention_in_a_thread_is_answered_in_that_thread(
    tmp_path: Path, fake_slack: FakeSlack
) -> None:
    app = slack_app(tmp_path, FunctionModel(done), settings(fake_slack))
    async with serve_slack(app) as slack:
        body = mention(
            "fix the flaky test", event_id="EvT1", ts="1700.000200", thread_ts="1700.000100"
        )
        response = await slack.event(body)
        run_id = response.json()["run_id"]
        await slack.wait_for_run(run_id, "passed")
        replies = await until(
            lambda: [
                m for m in fake_slack.in_thread("C123ABC456", "1700.000100") if "passed" in m.text
            ]
        )
        job = slack.services.ledger.get_job(slack.services.ledger.get_run(run_id).job_id)
    assert len(replies) == 1
    assert len(fake_slack.messages) == 1
    assert job.instruction == "fix the flaky test"
    assert job.concurrency_key == "slack:T123ABC456:C123ABC456:1700.000100"


async def test_retried_and_repeated_events_start_one_run(
    tmp_path: Path, fake_slack: FakeSlack
) -> None:
    app = slack_app(tmp_path, FunctionModel(done), settings(fake_slack))
    async with serve_slack(app) as slack:
        body = mention("once only", event_id="EvR1", ts="1700.000300")
        first = await slack.event(body)
        retries = [
            await slack.event(
                body, **{"x-slack-retry-num": str(n), "x-slack-retry-reason": "http_timeout"}
            )
            for n in (1, 2, 3)
        ]
        same_message = mention("once only", event_id="EvR2", ts="1700.000300")
        again = await slack.event(same_message)
        run_ids = {r.json()["run_id"] for r in [first, *retries, again]}
        assert len(run_ids) == 1
        await slack.wait_for_run(run_ids.pop(), "passed")
        await until(lambda: [m for m in fake_slack.messages.values() if "passed" in m.text])
        assert len(slack.runs()) == 1
    assert len(fake_slack.messages) == 1


async def test_a_message_from_our_own_bot_user_is_ignored(
    tmp_path: Path, fake_slack: FakeSlack
) -> None:
    app = slack_app(tmp_path, FunctionModel(done), settings(fake_slack))
    async with serve_slack(app) as slack:
        await until(lambda: slack.services.slack.own_users)
        body = mention("loop me", event_id="EvS1", ts="1700.000400").replace(
            b'"user": "U061F7AUR"', b'"user": "U0LOOPBOT"'
        )
        response = await slack.event(body)
    assert response.json() == {"ignored": "message by a bot"}
    assert fake_slack.calls("/api/chat.postMessage") == []


async def test_a_rate_limited_post_is_retried_after_retry_after(
    tmp_path: Path, fake_slack: FakeSlack
) -> None:
    fake_slack.rate_limit("/api/chat.postMessage", times=1, retry_after=1)
    app = slack_app(tmp_path, FunctionModel(done), settings(fake_slack))
    async with serve_slack(app) as slack:
        response = await slack.command(
            slash_form("quick go", response_url=fake_slack.response_url("c"))
        )
        run_id = response.json()["text"].split("`")[1]
        await slack.wait_for_run(run_id, "passed")
        await until(lambda: [m for m in fake_slack.messages.values() if "passed" in m.text])
    posts = fake_slack.calls("/api/chat.postMessage")
    assert len(posts) == 2
    assert len(fake_slack.messages) == 1
