"""A PR comment command end to end: the service with its GitHub trigger on, the GitHub stand-in,
a real git server holding the PR's repository, and the maker through the real litellm path
against a local OpenAI-compatible server.

signed `issue_comment` → 👀 → progress comment → the loop fixes a failing test → a commit on the
remote PR branch → the comment edited to `passed` with its cost; the same delivery again changes
nothing. Then the cases where the work cannot go to the PR's branch: a fork's pull request, a
braked run, and a base repository that refuses the push.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from app.github_replies import MARKER
from loops.litellm_model import LiteLLMModel
from tests.app.github_support import (
    AUTHOR,
    BOT,
    REPO,
    TOKEN,
    Hook,
    github_app,
    github_settings,
    jobs_of,
    pr_comment,
    progress_on,
    reactions_on,
    serve_hook,
)
from tests.support.git_http import GitHTTPServer, bare_repo, branches, commit_files, fork_of, log
from tests.support.github_server import FakeGitHub
from tests.support.openai_server import Reply, ScriptedOpenAIServer
from tests.support.repos import BUGGY, FIXED, TEST
from tests.triggers.github_files import NO_FIXTURES

pytestmark = [NO_FIXTURES, pytest.mark.usefixtures("allow_model_requests")]

APP_AUTHOR = "loopwright[bot] <loopwright[bot]@users.noreply.github.com>"
BARE = "runatlantis/atlantis-tests.git"


def workflow(name: str, *, max_turns: int = 3, push: bool = True) -> str:
    return f"""\
---
name: {name}
model: openai/local-stub
workspace: pr
tools: [read_file, write_file, run]
brakes: {{max_turns: {max_turns}, max_steps_per_turn: 5, max_cost_usd: 1.0, max_wall_seconds: 120}}
exit:
  checks:
    - run: {sys.executable} -m pytest -q -p no:cacheprovider -p no:opik test_calc.py
      name: pytest
on_success: {{push: {"true" if push else "false"}}}
---
{{{{ instruction }}}}
{{% if findings %}}Findings: {{{{ findings }}}}{{% endif %}}
"""


@pytest.fixture
def served(tmp_path: Path) -> Path:
    """The git server's root: the PR's repository, `main` with the bug, PR branch `feature`."""
    root = tmp_path / "served"
    bare = bare_repo(root, BARE)
    commit_files(bare, "main", {"calc.py": BUGGY, "test_calc.py": TEST}, "calc with a bug")
    commit_files(bare, "feature", {"NOTES.md": "adding things\n"}, "notes", start="main")
    return root


@pytest.fixture
def git_server(served: Path) -> Iterator[GitHTTPServer]:
    with GitHTTPServer(served, token=TOKEN) as server:
        yield server


@pytest.fixture
def github(git_server: GitHTTPServer) -> Iterator[FakeGitHub]:
    with FakeGitHub() as server:
        server.add_plain_token(TOKEN, login=BOT)
        server.add_repo(REPO, clone_url=git_server.url(BARE))
        server.add_pull(REPO, 1, head_ref="feature")
        server.set_role(REPO, AUTHOR, "write")
        yield server


@pytest.fixture
def model(monkeypatch: pytest.MonkeyPatch) -> Iterator[ScriptedOpenAIServer]:
    with ScriptedOpenAIServer() as server:
        monkeypatch.setenv("OPENAI_API_BASE", server.url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-local-test")
        yield server


@pytest.fixture
async def hook(
    tmp_path: Path, github: FakeGitHub, model: ScriptedOpenAIServer
) -> AsyncIterator[Hook]:
    app = github_app(tmp_path, LiteLLMModel(), github_settings(github))
    workflows = tmp_path / "workflows"
    (workflows / "fix-calc.md").write_text(workflow("fix-calc"))
    (workflows / "one-try.md").write_text(workflow("one-try", max_turns=1))
    async with serve_hook(app) as served:
        yield served


def fixes_calc() -> list[Reply]:
    return [
        Reply(tool_calls=[("write_file", {"path": "calc.py", "content": FIXED})]),
        Reply(content="add() subtracted; it adds now."),
    ]


def progress(github: FakeGitHub, number: int = 1) -> list[str]:
    """The service's comments on a pull request, as they read now."""
    return progress_on(github, REPO, number)


async def deliver(hook: Hook, payload: dict[str, Any], delivery: str) -> None:
    response = await hook.deliver("issue_comment", payload, delivery=delivery)
    assert response.status_code in (200, 202), response.text
    await hook.processed(delivery)


async def finished_run(hook: Hook, *statuses: str) -> Any:
    [(run, _job)] = jobs_of(hook)
    done = await hook.wait_for_run(run.id, *statuses, timeout=60)
    return done["run"]


async def settled(github: FakeGitHub, run_id: str, word: str, number: int = 1) -> str:
    """The progress comment once its final edit (naming `word`) has arrived."""
    async with asyncio.timeout(20):
        while True:
            bodies = [b for b in progress(github, number) if run_id in b]
            if bodies and word in bodies[-1]:
                return bodies[-1]
            await asyncio.sleep(0.05)


async def test_a_pr_comment_fixes_the_test_and_pushes_to_the_pr_branch(
    hook: Hook, github: FakeGitHub, model: ScriptedOpenAIServer, served: Path
):
    model.add(*fixes_calc())
    payload = pr_comment(github, "/loop fix-calc make the tests pass")
    delivery = str(uuid.uuid4())

    await deliver(hook, payload, delivery)
    run = await finished_run(hook, "passed", "braked", "errored", "stuck")

    assert run.status == "passed", run.reason
    assert reactions_on(github, payload["comment"]["id"]) == [("issue", "eyes")]
    body = await settled(github, run.id, "passed")
    assert body.startswith(MARKER)
    assert "$" in body
    assert len(progress(github)) == 1, "one progress comment, edited in place"
    [pushed, *older] = log(served / BARE, "feature")
    assert pushed.startswith(f"{APP_AUTHOR}|Loopwright run {run.id}: fix-calc")
    assert older == [
        "Test Author <author@example.com>|notes",
        "Test Author <author@example.com>|calc with a bug",
    ]
    stored = hook.services.ledger.get_run(run.id)
    assert stored is not None
    assert stored.extra["publish"]["action"] == "pushed"
    assert stored.extra["publish"]["branch"] == "feature"

    # GitHub redelivers the same delivery: nothing new anywhere.
    requests_before = len(model.requests)
    await hook.deliver("issue_comment", payload, delivery=delivery)
    assert len(jobs_of(hook)) == 1
    assert len(progress(github)) == 1
    assert len(log(served / BARE, "feature")) == 3
    assert len(model.requests) == requests_before


async def test_a_fork_pr_gets_its_fix_on_a_run_branch_of_the_base_repository(
    hook: Hook,
    github: FakeGitHub,
    model: ScriptedOpenAIServer,
    served: Path,
    git_server: GitHTTPServer,
):
    fork = fork_of(served, served / BARE, "someone/atlantis-tests.git")
    commit_files(fork, "patch-1", {"NOTES.md": "from a fork\n"}, "fork notes", start="main")
    github.add_pull(
        REPO,
        2,
        head_ref="patch-1",
        head_repo="someone/atlantis-tests",
        head_clone_url=git_server.url("someone/atlantis-tests.git"),
    )
    model.add(*fixes_calc())
    payload = pr_comment(github, "/loop fix-calc")
    payload["issue"]["number"] = 2

    await deliver(hook, payload, str(uuid.uuid4()))
    run = await finished_run(hook, "passed", "braked", "errored", "stuck")

    assert run.status == "passed", run.reason
    branch = f"loopwright/run-{run.id}"
    body = await settled(github, run.id, branch, number=2)
    assert "fork" in body
    assert branch in branches(served / BARE)
    assert log(fork, "patch-1")[0].endswith("|fork notes"), "nothing is pushed to the fork"


async def test_a_braked_run_keeps_its_work_on_a_run_branch(
    hook: Hook, github: FakeGitHub, model: ScriptedOpenAIServer, served: Path
):
    # One turn, and the maker's change does not fix anything.
    model.add(
        Reply(tool_calls=[("write_file", {"path": "calc.py", "content": BUGGY + "# tried\n"})]),
        Reply(content="I tried something."),
    )
    await deliver(hook, pr_comment(github, "/loop one-try"), str(uuid.uuid4()))
    run = await finished_run(hook, "passed", "braked", "errored", "stuck")

    assert run.status == "braked"
    branch = f"loopwright/run-{run.id}"
    body = await settled(github, run.id, branch)
    assert f"/loop resume {run.id}" in body
    assert branch in branches(served / BARE)
    assert log(served / BARE, "feature")[0].endswith("|notes"), "a braked run never touches the PR"


async def test_when_no_push_is_allowed_the_diff_goes_into_the_comment(
    hook: Hook, github: FakeGitHub, model: ScriptedOpenAIServer, served: Path
):
    # The repository refuses every push (as a protected or read-only repository does).
    (served / BARE / "hooks").mkdir(exist_ok=True)
    refuse = served / BARE / "hooks" / "pre-receive"
    refuse.write_text("#!/bin/sh\necho 'pushes are not allowed here' >&2\nexit 1\n")
    refuse.chmod(0o755)
    model.add(
        Reply(tool_calls=[("write_file", {"path": "calc.py", "content": BUGGY + "# tried\n"})]),
        Reply(content="I tried something."),
    )

    await deliver(hook, pr_comment(github, "/loop one-try"), str(uuid.uuid4()))
    run = await finished_run(hook, "passed", "braked", "errored", "stuck")

    assert run.status == "braked"
    body = await settled(github, run.id, "# tried")
    assert "```diff" in body
    assert branches(served / BARE) == ["feature", "main"]
    stored = hook.services.ledger.get_run(run.id)
    assert stored is not None
    assert stored.extra["publish"]["action"] == "diff"


async def test_a_run_that_changed_nothing_pushes_nothing(
    hook: Hook, github: FakeGitHub, model: ScriptedOpenAIServer, served: Path
):
    model.add(Reply(content="I see nothing to change."))

    await deliver(hook, pr_comment(github, "/loop one-try"), str(uuid.uuid4()))
    run = await finished_run(hook, "passed", "braked", "errored", "stuck")

    assert run.status == "braked"
    await settled(github, run.id, "braked")
    assert branches(served / BARE) == ["feature", "main"]
    stored = hook.services.ledger.get_run(run.id)
    assert stored is not None
    assert stored.extra["publish"]["action"] == "nothing"
