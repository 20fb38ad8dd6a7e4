"""PR comment commands end to end: a real delivery posted to the service, processed against the
GitHub stand-in, run by the executor, and answered with reactions and replies."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from structlog.testing import capture_logs

from app.github_client import GitHubClient
from app.github_commands import CommandConfig
from app.github_replies import MARKER
from app.run_queue import RESUMABLE
from loops.testing import FunctionModel, ScriptedModel, reply
from tests.app.github_support import (
    AUTHOR,
    BOT,
    FAST,
    HOOK_ID,
    REPO,
    REVIEW_REPO,
    TOKEN,
    Hook,
    github_app,
    github_settings,
    pr_comment,
    reactions_on,
    replies_on,
    review_comment,
    serve_hook,
    stand_in,
)
from tests.support.github_server import FakeGitHub, pem
from tests.triggers.github_files import NO_FIXTURES
from triggers.commands import USAGE

pytestmark = NO_FIXTURES

PERMISSION = f"/repos/{REPO}/collaborators/{AUTHOR}/permission"
REPO_WORKFLOW = """\
---
name: tidy-docs
workspace: none
tools: [run]
brakes: {max_turns: 2, max_steps_per_turn: 3, max_wall_seconds: 60}
exit:
  checks: ["true"]
---
Tidy the docs. {{ instruction }}
"""


RESUMABLE_NAMES = ", ".join(sorted(RESUMABLE))


def done(_request: Any) -> Any:
    return reply("nothing to change")


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub() as server:
        stand_in(server)
        yield server


@pytest.fixture
async def hook(tmp_path: Path, github: FakeGitHub) -> AsyncIterator[Hook]:
    app = github_app(tmp_path, FunctionModel(done), github_settings(github))
    async with serve_hook(app) as served:
        yield served


async def comment(hook: Hook, payload: dict[str, Any], event: str = "issue_comment") -> str:
    """Deliver a comment and wait until it is processed; returns the outcome."""
    delivery = str(uuid.uuid4())
    response = await hook.deliver(event, payload, delivery=delivery)
    assert response.status_code == 202, response.text
    return await hook.processed(delivery)


def jobs_of(hook: Hook) -> list[Any]:
    runs, _ = hook.services.ledger.list_runs(limit=50)
    return [(run, hook.services.ledger.get_job(run.job_id)) for run in runs]


# --- starting runs ---------------------------------------------------------------------------


async def test_a_loop_command_queues_one_job_reacts_and_runs(hook: Hook, github: FakeGitHub):
    payload = pr_comment(github, "Thanks!\n/loop quick do X\n")

    outcome = await comment(hook, payload)

    [(run, job)] = jobs_of(hook)
    assert outcome == f"queued run {run.id} of 'quick'"
    assert (job.workflow, job.source, job.instruction) == ("quick", "github", "do X")
    assert (job.repo, job.pr, job.requested_by) == (REPO, 1, AUTHOR)
    assert job.concurrency_key == f"github:{REPO}#1"
    assert job.reply == {
        "repo": REPO,
        "number": "1",
        "comment_id": str(payload["comment"]["id"]),
        "comment_kind": "issue",
    }
    comment_id = payload["comment"]["id"]
    assert reactions_on(github, comment_id) == [("issue", "eyes")]
    assert github.requests_to(f"/repos/{REPO}/issues/comments/{comment_id}/reactions", "POST")
    assert replies_on(github) == []
    finished = await hook.wait_for_run(run.id, "passed", "errored", "braked")
    assert finished["status"] == "passed", finished["run"].reason


async def test_a_review_comment_gets_its_reaction_on_the_review_comment_endpoint(
    hook: Hook, github: FakeGitHub
):
    payload = review_comment(github, "/loop quick tighten this line")

    await comment(hook, payload, event="pull_request_review_comment")

    [(_run, job)] = jobs_of(hook)
    assert (job.repo, job.pr, job.requested_by) == (REVIEW_REPO, 2, "Codertocat")
    assert job.reply["comment_kind"] == "review"
    comment_id = payload["comment"]["id"]
    assert github.requests_to(f"/repos/{REVIEW_REPO}/pulls/comments/{comment_id}/reactions")
    assert reactions_on(github, comment_id) == [("review", "eyes")]


async def test_a_mention_runs_the_default_workflow(hook: Hook, github: FakeGitHub):
    await comment(hook, pr_comment(github, "@loopwright please fix the flaky test"))

    [(_run, job)] = jobs_of(hook)
    assert (job.workflow, job.instruction) == ("quick", "please fix the flaky test")


async def test_several_commands_in_one_comment_queue_in_order(hook: Hook, github: FakeGitHub):
    payload = pr_comment(github, "/loop quick first\n/loop failing second")

    outcome = await comment(hook, payload)

    assert outcome.count("queued run") == 2
    instructions = sorted(job.instruction for _run, job in jobs_of(hook))
    assert instructions == ["first", "second"]
    assert reactions_on(github, payload["comment"]["id"]) == [("issue", "eyes")]


async def test_a_workflow_from_the_repositorys_default_branch_runs(hook: Hook, github: FakeGitHub):
    github.add_files(REPO, "main", {".loopwright/workflows/tidy-docs.md": REPO_WORKFLOW})

    await comment(hook, pr_comment(github, "/loop tidy-docs in the README"))

    [(run, job)] = jobs_of(hook)
    assert job.workflow == "tidy-docs"
    assert job.workflow_source == REPO_WORKFLOW
    assert run.brakes.max_turns == 2
    assert (await hook.wait_for_run(run.id, "passed", "errored"))["status"] == "passed"
    contents = github.requests_to(f"/repos/{REPO}/contents/.loopwright/workflows/tidy-docs.md")
    assert [r.query for r in contents] == [{"ref": "main"}]


async def test_a_workflow_only_on_the_pull_requests_head_is_unknown(hook: Hook, github: FakeGitHub):
    github.add_files(REPO, "feature", {".loopwright/workflows/tidy-docs.md": REPO_WORKFLOW})

    outcome = await comment(hook, pr_comment(github, "/loop tidy-docs"))

    assert outcome == "unknown workflow 'tidy-docs'"
    assert jobs_of(hook) == []


async def test_an_unknown_workflow_gets_one_reply_listing_the_available_ones(
    hook: Hook, github: FakeGitHub
):
    github.add_files(REPO, "main", {".loopwright/workflows/tidy-docs.md": REPO_WORKFLOW})

    payload = pr_comment(github, "/loop quik now")
    await comment(hook, payload)

    [answer] = replies_on(github)
    assert answer.startswith(MARKER + "\n")
    assert "there is no workflow `quik` (did you mean 'quick'?)" in answer
    assert "Available workflows: `failing`, `in-repo`, `quick`, `tidy-docs`." in answer
    assert jobs_of(hook) == []
    assert reactions_on(github, payload["comment"]["id"]) == []


async def test_a_broken_repository_workflow_is_answered_with_its_problem(
    hook: Hook, github: FakeGitHub
):
    github.add_files(REPO, "main", {".loopwright/workflows/tidy-docs.md": "---\nname: [\n---\n"})

    await comment(hook, pr_comment(github, "/loop tidy-docs"))

    [answer] = replies_on(github)
    assert "workflow `tidy-docs` cannot run: .loopwright/workflows/tidy-docs.md on 'main'" in answer
    assert jobs_of(hook) == []


async def test_an_invalid_command_gets_one_reply_with_the_reason_and_usage(
    hook: Hook, github: FakeGitHub
):
    outcome = await comment(hook, pr_comment(github, "/loop Fix-Tests"))

    [answer] = replies_on(github)
    assert "'Fix-Tests' is not a workflow name" in answer
    assert USAGE in answer
    assert outcome.startswith("invalid command: ")
    assert jobs_of(hook) == []


# --- who may trigger -------------------------------------------------------------------------


async def test_without_write_permission_nothing_runs_and_one_reply_says_why(
    hook: Hook, github: FakeGitHub
):
    github.set_role(REPO, AUTHOR, "read")
    payload = pr_comment(github, "/loop quick a\n/loop status\n@loopwright b")
    assert payload["comment"]["author_association"] == "OWNER"  # never trusted

    with capture_logs() as logs:
        outcome = await comment(hook, payload)

    assert outcome == f"denied: {AUTHOR!r} lacks write permission on {REPO!r}"
    [answer] = replies_on(github)
    assert f"@{AUTHOR} Loopwright commands need write, maintain or admin permission" in answer
    assert jobs_of(hook) == []
    assert reactions_on(github, payload["comment"]["id"]) == []
    [denied] = [e for e in logs if e["event"] == "github_command_denied"]
    assert denied["reason"] == "the author lacks write, maintain or admin permission"


@pytest.mark.parametrize("role", ["maintain", "admin"])
async def test_maintain_and_admin_may_trigger(hook: Hook, github: FakeGitHub, role: str):
    github.set_role(REPO, AUTHOR, role)

    await comment(hook, pr_comment(github, "/loop quick go"))

    assert len(jobs_of(hook)) == 1


@pytest.mark.parametrize(
    ("author", "user"),
    [
        ("dependabot[bot]", {"type": "Bot"}),
        ("some-app", {"type": "Bot"}),
        (BOT, {}),
        ("Loopwright", {}),
        ("loopwright[bot]", {}),
    ],
    ids=["app-bot", "bot-type", "own-login", "own-login-case", "own-app"],
)
async def test_bots_and_loopwright_itself_never_trigger(
    tmp_path: Path, github: FakeGitHub, author: str, user: dict[str, Any]
):
    github.set_role(REPO, author, "admin")
    app = github_app(tmp_path, FunctionModel(done), github_settings(github))
    async with serve_hook(app) as hook:
        payload = pr_comment(github, "/loop quick go", author=author, **user)
        delivery = str(uuid.uuid4())
        response = await hook.deliver("issue_comment", payload, delivery=delivery)

        assert response.status_code == 202
        assert response.json()["ignored"].startswith("comment by a bot")
        assert jobs_of(hook) == []
    assert github.requests == []


async def test_a_comment_carrying_the_marker_is_never_a_command(hook: Hook, github: FakeGitHub):
    # A token may belong to a person's login, so the service also knows its comments by content.
    github.set_role(REPO, "ci-user", "admin")
    body = f"{MARKER}\n@runatlantis usage:\n/loop quick run again"

    outcome = await comment(hook, pr_comment(github, body, author="ci-user"))

    assert outcome.startswith("ignored: comment by a bot or by Loopwright")
    assert jobs_of(hook) == []
    assert github.requests == []


# --- stop, status, resume --------------------------------------------------------------------


async def test_stop_cancels_the_pull_requests_active_run(tmp_path: Path, github: FakeGitHub):
    started = asyncio.Event()

    async def forever(_request: Any) -> Any:
        started.set()
        await asyncio.sleep(60)
        return reply("never")

    app = github_app(tmp_path, FunctionModel(forever), github_settings(github))
    async with serve_hook(app) as hook:
        await comment(hook, pr_comment(github, "/loop quick long job"))
        [(run, _job)] = jobs_of(hook)
        async with asyncio.timeout(5):
            await started.wait()

        outcome = await comment(hook, pr_comment(github, "/loop stop"))

        assert outcome == f"stopped run(s) {run.id}"
        ended = await hook.wait_for_run(run.id, "cancelled", timeout=3)
        assert ended["run"].reason == "cancelled"
        [answer] = replies_on(github)
        assert f"- run `{run.id}` (quick): stopping now" in answer

        again = await comment(hook, pr_comment(github, "/loop stop"))
        assert again == "nothing to stop"
        assert "no run of this pull request is queued or running" in replies_on(github)[-1]


async def test_status_answers_with_the_runs_state(hook: Hook, github: FakeGitHub):
    await comment(hook, pr_comment(github, "/loop quick a"))
    [(run, _job)] = jobs_of(hook)
    await hook.wait_for_run(run.id, "passed")

    await comment(hook, pr_comment(github, "/loop status"))

    [answer] = replies_on(github)
    assert answer.startswith(f"{MARKER}\n@{AUTHOR} the latest runs on this pull request")
    assert f"- run `{run.id}` quick: **passed**, turn 1/3, $" in answer


async def test_status_of_a_pull_request_without_runs(hook: Hook, github: FakeGitHub):
    await comment(hook, pr_comment(github, "/loop status"))

    assert replies_on(github) == [
        f"{MARKER}\n@{AUTHOR} Loopwright has no runs on this pull request yet."
    ]


async def test_resume_continues_the_last_braked_run_with_another_budget(
    tmp_path: Path, github: FakeGitHub
):
    model = ScriptedModel([reply("tried"), reply("tried again")])
    app = github_app(tmp_path, model, github_settings(github))
    async with serve_hook(app) as hook:
        await comment(hook, pr_comment(github, "/loop failing please"))
        [(run, _job)] = jobs_of(hook)
        braked = await hook.wait_for_run(run.id, "braked")
        assert braked["run"].brake == "max_turns"

        payload = pr_comment(github, "/loop resume")
        outcome = await comment(hook, payload)

        assert outcome == f"resumed run {run.id}"
        again = await hook.wait_for_run(run.id, "braked", "passed", "errored")
        assert again["run"].turns_done == 2
        assert again["run"].brakes.max_turns == 2
        assert "resuming run" in replies_on(github)[-1]
        assert "after turn 1, with 1 more turn;" in replies_on(github)[-1]
        assert reactions_on(github, payload["comment"]["id"]) == [("issue", "eyes")]
        assert len(jobs_of(hook)) == 1
    assert model.remaining == 0


async def test_resume_by_run_id_only_finds_runs_of_this_pull_request(
    hook: Hook, github: FakeGitHub
):
    await comment(hook, pr_comment(github, "/loop quick a"))
    [(run, _job)] = jobs_of(hook)
    await hook.wait_for_run(run.id, "passed")

    passed = await comment(hook, pr_comment(github, f"/loop resume {run.id[:6]}"))
    elsewhere = await comment(hook, pr_comment(github, "/loop resume 0000beef"))
    nothing = await comment(hook, pr_comment(github, "/loop resume"))

    assert passed == f"not resumed: run {run.id} is passed; only {RESUMABLE_NAMES} resume"
    assert elsewhere == "not resumed: this pull request has no run '0000beef'"
    assert (
        nothing == "not resumed: no run of this pull request is braked, stuck, cancelled or errored"
    )
    assert len(replies_on(github)) == 3


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
        assert [d.key for d in hook.services.deliveries.pending("github")] == [
            f"{HOOK_ID}:{delivery}"
        ]
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
