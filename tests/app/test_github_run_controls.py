"""`/loop stop`, `/loop status` and `/loop resume` on a pull request's runs, end to end."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from app.github_replies import MARKER
from app.run_queue import RESUMABLE
from loops.testing import FunctionModel, ScriptedModel, reply
from tests.app.github_support import (
    AUTHOR,
    Hook,
    comment,
    github_app,
    github_settings,
    jobs_of,
    pr_comment,
    reactions_on,
    replies_on,
    serve_hook,
)
from tests.support.github_server import FakeGitHub
from tests.triggers.github_files import NO_FIXTURES

pytestmark = NO_FIXTURES

RESUMABLE_NAMES = ", ".join(sorted(RESUMABLE))


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
