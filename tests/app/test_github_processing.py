"""Processing stored GitHub deliveries: after a restart, retries, giving up, App credentials."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from structlog.testing import capture_logs

from app.github_client import GitHubClient
from app.github_commands import CommandConfig
from loops.testing import FunctionModel
from tests.app.github_support import (
    AUTHOR,
    FAST,
    HOOK_ID,
    REPO,
    REVIEW_REPO,
    TOKEN,
    Hook,
    comment,
    done,
    github_app,
    github_settings,
    jobs_of,
    pr_comment,
    reactions_on,
    replies_on,
    review_comment,
    serve_hook,
    stand_in,
)
from tests.support.github_server import FakeGitHub, pem
from tests.triggers.github_files import NO_FIXTURES
from triggers.github import read_comment_event

pytestmark = NO_FIXTURES

PERMISSION = f"/repos/{REPO}/collaborators/{AUTHOR}/permission"


# --- durability and retries ------------------------------------------------------------------


async def test_a_delivery_stored_but_not_processed_before_a_shutdown_runs_after_a_restart(
    tmp_path: Path, github: FakeGitHub
):
    settings = github_settings(github)
    payload = pr_comment(github, "/loop quick after the restart")
    delivery = str(uuid.uuid4())
    async with serve_hook(github_app(tmp_path, FunctionModel(done), settings)) as hook:
        # The process dies right after answering: its processor never gets to the delivery.
        assert hook.services.github is not None
        await hook.services.github.processor.stop()
        response = await hook.deliver("issue_comment", payload, delivery=delivery)
        assert response.status_code == 202
        [pending] = hook.services.deliveries.pending("github")
        assert pending.key == f"{HOOK_ID}:{delivery}"
        # Stored is the part of the payload that processing reads, not all ~15 KB of it.
        assert pending.payload == read_comment_event("issue_comment", payload)[1]
        assert len(json.dumps(pending.payload)) < len(json.dumps(payload)) / 10
        assert jobs_of(hook) == []

    async with serve_hook(github_app(tmp_path, FunctionModel(done), settings)) as restarted:
        outcome = await restarted.processed(delivery)
        assert outcome.startswith("queued run ")
        [(run, job)] = jobs_of(restarted)
        assert job.instruction == "after the restart"
        await restarted.wait_for_run(run.id, "passed")
    assert reactions_on(github, payload["comment"]["id"]) == [("issue", "eyes")]


async def test_a_github_failure_is_retried_and_the_delivery_is_not_lost(
    hook: Hook, github: FakeGitHub
):
    github.fail(PERMISSION, 403, message="scripted outage")
    payload = pr_comment(github, "/loop quick despite the outage")

    with capture_logs() as logs:
        outcome = await comment(hook, payload)

    assert outcome.startswith("queued run ")
    assert len(github.requests_to(PERMISSION)) == 2
    [retry] = [e for e in logs if e["event"] == "github_delivery_retry_scheduled"]
    assert retry["attempt"] == 1
    assert "scripted outage" in retry["error"]
    assert len(jobs_of(hook)) == 1


async def test_a_retry_does_not_repeat_the_steps_already_done(hook: Hook, github: FakeGitHub):
    reactions = f"/repos/{REPO}/issues/comments/{{}}/reactions"
    payload = pr_comment(github, "/loop quik\n/loop quick go")
    github.fail(reactions.format(payload["comment"]["id"]), 502, times=1)

    outcome = await comment(hook, payload)

    assert outcome.startswith("unknown workflow 'quik'; queued run ")
    assert len(replies_on(github)) == 1  # the unknown-workflow reply was not sent twice
    assert len(jobs_of(hook)) == 1
    assert reactions_on(github, payload["comment"]["id"]) == [("issue", "eyes")]


async def test_a_delivery_that_keeps_failing_is_given_up_with_its_error(
    tmp_path: Path, github: FakeGitHub
):
    config = CommandConfig(poll_seconds=0.05, retry_seconds=0.01, max_attempts=3)
    github.fail(PERMISSION, 403, times=10, message="no access")
    app = github_app(tmp_path, FunctionModel(done), github_settings(github), config=config)
    async with serve_hook(app) as hook:
        with capture_logs() as logs:
            outcome = await comment(hook, pr_comment(github, "/loop quick never"))

    assert outcome.startswith("failed: GitHubForbidden: GitHub GET ")
    assert "no access" in outcome
    assert len(github.requests_to(PERMISSION)) == 3
    [failed] = [e for e in logs if e["event"] == "github_delivery_failed"]
    assert failed["attempts"] == 3
    assert jobs_of(hook) == []


# --- App authentication ----------------------------------------------------------------------


async def test_with_a_github_app_the_payloads_installation_is_used(tmp_path: Path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with FakeGitHub(app_id="77", public_key=key.public_key()) as github:
        stand_in(github)
        github.add_installation(1, [REVIEW_REPO])
        settings = github_settings(github, token=None, app_id="77", private_key=pem(key))
        async with serve_hook(github_app(tmp_path, FunctionModel(done), settings)) as hook:
            payload = review_comment(github, "/loop quick with the app")

            outcome = await comment(hook, payload, event="pull_request_review_comment")

            assert outcome.startswith("queued run ")
        # The installation came from the payload: no look-up by repository was needed.
        assert github.requests_to(f"/repos/{REVIEW_REPO}/installation") == []
        assert github.requests_to("/app/installations/1/access_tokens", "POST")
        assert reactions_on(github, payload["comment"]["id"]) == [("review", "eyes")]


async def test_an_injected_client_is_used_and_left_open(tmp_path: Path, github: FakeGitHub):
    from pydantic import SecretStr

    from app.github_auth import TokenAuth

    async with httpx.AsyncClient(base_url=github.url) as http:
        client = GitHubClient(http, TokenAuth(SecretStr(TOKEN)))
        app = github_app(
            tmp_path, FunctionModel(done), github_settings(None), client=client, config=FAST
        )
        async with serve_hook(app) as hook:
            await comment(hook, pr_comment(github, "/loop quick injected"))
            assert len(jobs_of(hook)) == 1
        assert not http.is_closed


async def test_a_delivery_that_crashes_the_processor_is_given_up_too(
    tmp_path: Path, github: FakeGitHub, monkeypatch: pytest.MonkeyPatch
):
    config = CommandConfig(poll_seconds=0.05, retry_seconds=0.01, max_attempts=2)
    app = github_app(tmp_path, FunctionModel(done), github_settings(github), config=config)
    async with serve_hook(app) as hook:
        assert hook.services.github is not None
        handlers = hook.services.github.processor.handlers

        async def broken(*_args: Any) -> str:
            raise RuntimeError("a bug")

        monkeypatch.setattr(handlers, "handle", broken)
        with capture_logs() as logs:
            outcome = await comment(hook, pr_comment(github, "/loop quick go"))
            works = await comment(hook, pr_comment(github, "no command here"))

    assert outcome == "failed: RuntimeError: a bug"
    assert works == "ignored: no commands"  # the processor went on
    assert [e["event"] for e in logs].count("github_delivery_crashed") == 2
