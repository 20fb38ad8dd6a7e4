"""PR comment commands end to end: a real delivery posted to the service, processed against the
GitHub stand-in, run by the executor, and answered with reactions and replies."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from app.github_replies import MARKER
from loops.testing import FunctionModel
from tests.app.github_support import (
    AUTHOR,
    BOT,
    REPO,
    REVIEW_REPO,
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
)
from tests.support.github_server import FakeGitHub
from tests.triggers.github_files import NO_FIXTURES
from triggers.commands import USAGE

pytestmark = NO_FIXTURES

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
