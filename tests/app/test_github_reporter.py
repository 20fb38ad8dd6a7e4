"""The GitHub reporter against the local GitHub stand-in and a real SQLite ledger: one progress
comment per run, created once and edited in place, across restarts and deletions; the finished
report sent by the executor once the run is recorded and its work published."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr
from structlog.testing import capture_logs

from app.executor import Executor, ExecutorConfig
from app.github_auth import AppAuth, TokenAuth
from app.github_client import GitHubClient, GitHubForbidden
from app.github_reporter import GitHubReporter
from app.ledger import JobRow, Ledger, RunRow
from app.reports import ReportHub
from app.runner import Runner
from app.service import create_app
from app.settings import Settings
from loops.checking import CheckResult
from loops.events import Outcome
from loops.jobs import LoopJob
from loops.reporting import RunReport
from loops.testing import FunctionModel
from loops.usage import Usage
from loops.workflow_files import parse_workflow
from tests.app.api_support import write_workflows
from tests.app.github_support import (
    BOT,
    FAST,
    REPO,
    TOKEN,
    comment,
    done,
    github_app,
    github_settings,
    jobs_of,
    pr_comment,
    progress_on,
    serve_hook,
)
from tests.support.github_server import FakeGitHub, pem
from tests.triggers.github_files import NO_FIXTURES

WORKFLOW = """\
---
name: quick
tools: [run]
brakes: {max_turns: 3, max_wall_seconds: 120}
exit: {checks: ["true"]}
---
{{ instruction }}
"""
COMMENTS = f"/repos/{REPO}/issues/1/comments"
EXECUTOR = ExecutorConfig(
    max_concurrent_runs=1, poll_seconds=0.05, watch_seconds=0.1, shutdown_grace_seconds=1
)
DIFF = "diff --git a/app.py b/app.py\n--- a/app.py\n+++ b/app.py\n@@ -1 +1 @@\n-x = 1\n+x = 2\n"
PUBLISH = {"action": "diff", "reason": "no push access to the fork", "diff": DIFF}


@pytest.fixture
async def client(github: FakeGitHub) -> AsyncIterator[GitHubClient]:
    async with httpx.AsyncClient(base_url=github.url) as http:
        yield GitHubClient(http, TokenAuth(SecretStr(TOKEN)))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "var", database_url=None, workflows_dir=tmp_path)


@pytest.fixture
def ledger(settings: Settings) -> Iterator[Ledger]:
    ledger = Ledger(settings.ledger_url)
    ledger.migrate()
    yield ledger
    ledger.close()


@pytest.fixture
def stored(ledger: Ledger, tmp_path: Path) -> tuple[RunRow, JobRow]:
    """A queued run of a job from a pull request comment."""
    job = LoopJob(
        workflow="quick",
        source="github",
        instruction="fix it",
        workdir=str(tmp_path),
        repo=REPO,
        pr=1,
        reply={"repo": REPO, "number": "1", "comment_id": "77", "comment_kind": "issue"},
    )
    job_row, run, _ = ledger.create_job(job, workflow=parse_workflow(WORKFLOW, "quick.md"))
    return run, job_row


HUB = ReportHub({})  # builds reports; never started


def comment_ids(github: FakeGitHub) -> list[int]:
    with github.lock:
        return [c.id for c in github.comments.values() if c.user == BOT]


def stored_comment_id(ledger: Ledger, run_id: str) -> object:
    run = ledger.get_run(run_id)
    assert run is not None
    return run.extra.get("progress_comment_id")


def finished(run: RunRow, job: JobRow) -> RunReport:
    outcome = Outcome(
        run_id=run.id,
        status="passed",
        reason="exit condition held 1 time(s) in a row",
        turns=1,
        usage=Usage(input_tokens=1200, output_tokens=80, cost_usd=0.0042),
        elapsed_s=3.0,
    )
    return HUB.finished(run, job, outcome, (CheckResult(name="pytest -q", passed=True),))


# --- one comment per run ---------------------------------------------------------------------


async def test_the_first_report_posts_the_comment_and_later_ones_edit_it(
    client: GitHubClient, github: FakeGitHub, ledger: Ledger, stored: tuple[RunRow, JobRow]
):
    run, job = stored
    reporter = GitHubReporter(client, ledger)

    with capture_logs() as logs:
        await reporter.report(HUB.report("queued", run, job))
        [queued] = progress_on(github)
        await reporter.report(HUB.report("started", run, job, status="running", turn=1))
        await reporter.report(finished(run, job))

    [comment_id] = comment_ids(github)
    assert "Status: **queued** · turn 0 of 3" in queued
    [body] = progress_on(github)
    assert "Status: **passed** · turn 1 of 3\n- ✓ `pytest -q`" in body
    assert "1,200 input / 80 output tokens · $0.0042 · 3s" in body
    assert len(github.requests_to(COMMENTS, "POST")) == 1
    assert len(github.requests_to(f"/repos/{REPO}/issues/comments/{comment_id}", "PATCH")) == 2
    assert stored_comment_id(ledger, run.id) == comment_id
    assert [e["event"] for e in logs if e["event"].startswith("progress_comment")] == [
        "progress_comment_created",
        "progress_comment_updated",
        "progress_comment_updated",
    ]


@pytest.mark.parametrize("carried", [True, False], ids=["id-in-report", "id-in-ledger"])
async def test_after_a_restart_the_stored_comment_is_edited(
    client: GitHubClient,
    github: FakeGitHub,
    ledger: Ledger,
    stored: tuple[RunRow, JobRow],
    carried: bool,
):
    run, job = stored
    await GitHubReporter(client, ledger).report(HUB.report("queued", run, job))
    [comment_id] = comment_ids(github)
    # The run as the next process claims it (its extra has the id), or as read before the
    # comment was posted (it has not: the reporter reads the ledger).
    seen = ledger.get_run(run.id) if carried else run
    assert seen is not None

    restarted = GitHubReporter(client, ledger)
    await restarted.report(HUB.report("started", seen, job, status="running", turn=1))

    assert comment_ids(github) == [comment_id]
    assert "Status: **running** · turn 1 of 3" in progress_on(github)[0]
    assert len(github.requests_to(COMMENTS, "POST")) == 1


async def test_a_deleted_comment_is_posted_again_and_its_new_id_kept(
    client: GitHubClient, github: FakeGitHub, ledger: Ledger, stored: tuple[RunRow, JobRow]
):
    run, job = stored
    reporter = GitHubReporter(client, ledger)
    await reporter.report(HUB.report("queued", run, job))
    [deleted] = comment_ids(github)
    with github.lock:
        del github.comments[deleted]

    with capture_logs() as logs:
        await reporter.report(HUB.report("started", run, job, status="running", turn=1))
        await reporter.report(HUB.report("turn_finished", run, job, status="running", turn=1))

    [replacement] = comment_ids(github)
    assert replacement != deleted
    assert "Status: **running**" in progress_on(github)[0]
    assert stored_comment_id(ledger, run.id) == replacement
    assert [(e["event"], e["comment_id"]) for e in logs if "comment_id" in e] == [
        ("progress_comment_missing", deleted),
        ("progress_comment_created", replacement),
        ("progress_comment_updated", replacement),
    ]


async def test_other_github_errors_are_raised_and_a_retry_edits_the_same_comment(
    client: GitHubClient, github: FakeGitHub, ledger: Ledger, stored: tuple[RunRow, JobRow]
):
    run, job = stored
    reporter = GitHubReporter(client, ledger)
    await reporter.report(HUB.report("queued", run, job))
    [comment_id] = comment_ids(github)
    github.fail(f"/repos/{REPO}/issues/comments/{comment_id}", 403, method="PATCH")
    started = HUB.report("started", run, job, status="running", turn=1)

    with pytest.raises(GitHubForbidden):
        await reporter.report(started)
    await reporter.report(started)

    assert comment_ids(github) == [comment_id]
    assert "Status: **running**" in progress_on(github)[0]


async def test_a_failed_ledger_write_is_retried_without_posting_twice(
    client: GitHubClient,
    github: FakeGitHub,
    ledger: Ledger,
    stored: tuple[RunRow, JobRow],
    monkeypatch: pytest.MonkeyPatch,
):
    run, job = stored
    write = ledger.update_extra
    failures = iter([ConnectionError("database restarting")])

    def flaky_write(run_id: str, **values: object) -> None:
        for exc in failures:
            raise exc
        write(run_id, **values)

    monkeypatch.setattr(ledger, "update_extra", flaky_write)
    reporter = GitHubReporter(client, ledger)
    queued = HUB.report("queued", run, job)

    with pytest.raises(ConnectionError):
        await reporter.report(queued)
    await reporter.report(queued)

    [comment_id] = comment_ids(github)
    assert stored_comment_id(ledger, run.id) == comment_id


async def test_a_review_comments_run_is_reported_in_the_pull_request_with_its_installation(
    github: FakeGitHub, ledger: Ledger, tmp_path: Path
):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    github.public_key = key.public_key()
    github.add_installation(42, [REPO])
    job = LoopJob(
        workflow="quick",
        source="github",
        workdir=str(tmp_path),
        reply={"repo": REPO, "number": "1", "installation_id": "42", "comment_kind": "review"},
    )
    job_row, run, _ = ledger.create_job(job, workflow=parse_workflow(WORKFLOW, "quick.md"))

    async with httpx.AsyncClient(base_url=github.url) as http:
        auth = AppAuth(github.app_id, SecretStr(pem(key)), clock=github.clock)
        app = GitHubClient(http, auth, clock=github.clock)
        await GitHubReporter(app, ledger).report(HUB.report("queued", run, job_row))

    [posted] = github.requests_to(COMMENTS, "POST")
    assert posted.json["body"].startswith("<!-- loopwright -->\n**Loopwright run ")
    assert github.requests_to("/app/installations/42/access_tokens", "POST")
    assert not github.requests_to(f"/repos/{REPO}/installation")  # the job named it


# --- the executor's finished report ----------------------------------------------------------


class PublishingRunner(Runner):
    """Publishes the work once the loop has ended, as the service does: what it did goes into
    the run's extra after the outcome is recorded and before `run` returns."""

    async def run(self, run_id: str, **kwargs: Any) -> Outcome:
        outcome = await super().run(run_id, **kwargs)
        await asyncio.to_thread(self.ledger.update_extra, run_id, publish=PUBLISH)
        return outcome


class BrokenRunner(Runner):
    async def run(self, run_id: str, **_: Any) -> Outcome:
        raise RuntimeError("the workspace volume is gone")


class Recording:
    """Wraps a reporter and keeps each report it was given."""

    def __init__(self, inner: GitHubReporter) -> None:
        self.inner = inner
        self.reports: list[RunReport] = []

    async def report(self, report: RunReport) -> None:
        self.reports.append(report)
        await self.inner.report(report)


async def run_through_executor(runner: Runner, recording: Recording, run_id: str) -> None:
    hub = ReportHub({"github": recording}, base_delay=0.01)
    hub.start()
    executor = Executor(runner=runner, config=EXECUTOR, reports=hub)
    await executor.start()
    try:
        async with asyncio.timeout(20):
            while (run := runner.ledger.get_run(run_id)) is None or run.active:
                await asyncio.sleep(0.05)
    finally:
        await executor.shutdown()
        await hub.stop()


async def test_the_finished_report_shows_what_was_published_after_the_run_returned(
    client: GitHubClient,
    github: FakeGitHub,
    ledger: Ledger,
    settings: Settings,
    stored: tuple[RunRow, JobRow],
):
    run, _job = stored
    runner = PublishingRunner(settings=settings, ledger=ledger, model=FunctionModel(done))
    recording = Recording(GitHubReporter(client, ledger))

    await run_through_executor(runner, recording, run.id)

    assert [r.kind for r in recording.reports] == ["started", "turn_finished", "finished"]
    last = recording.reports[-1]
    assert last.status == "passed"
    assert last.extra["publish"] == PUBLISH
    [check] = last.checks
    assert (check.name, check.passed) == ("true", True)
    [body] = progress_on(github)
    assert stored_comment_id(ledger, run.id) == comment_ids(github)[0]
    assert "Status: **passed** · turn 1 of 3\n- ✓ `true`" in body
    assert "**The run passed**: exit condition held 1 time(s) in a row" in body
    assert "Changes: not pushed (no push access to the fork); the diff is below." in body
    assert f"```diff\n{DIFF}```" in body
    assert "/loop" not in body


async def test_a_run_that_fails_to_execute_is_reported_errored_with_how_to_resume(
    client: GitHubClient,
    github: FakeGitHub,
    ledger: Ledger,
    settings: Settings,
    stored: tuple[RunRow, JobRow],
):
    run, _job = stored
    runner = BrokenRunner(settings=settings, ledger=ledger, model=FunctionModel(done))
    recording = Recording(GitHubReporter(client, ledger))

    await run_through_executor(runner, recording, run.id)

    [last] = recording.reports
    assert (last.kind, last.status) == ("finished", "errored")
    [body] = progress_on(github)
    assert "Status: **errored**" in body
    assert "internal error while running; see the service log" in body
    assert body.endswith(f"Comment `/loop resume {run.id}` to continue.")


# --- registration in the service -------------------------------------------------------------


class Collect:
    """A reporter that keeps what it is given."""

    def __init__(self) -> None:
        self.reports: list[RunReport] = []

    async def report(self, report: RunReport) -> None:
        self.reports.append(report)


def test_a_reporter_given_for_a_source_is_kept():
    mine, other = Collect(), Collect()
    hub = ReportHub({"github": mine})

    assert hub.register_default("github", other) is False
    assert hub.register_default("slack", other) is True
    assert hub.reporters == {"github": mine, "slack": other}


async def wait_until(check: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.05)


@NO_FIXTURES
async def test_the_service_reports_a_commands_run_in_one_progress_comment(
    tmp_path: Path, github: FakeGitHub
):
    app = github_app(tmp_path, FunctionModel(done), github_settings(github))
    async with serve_hook(app) as hook:
        await comment(hook, pr_comment(github, "/loop quick do X"))
        [(run, _job)] = jobs_of(hook)
        await hook.wait_for_run(run.id, "passed")
        await wait_until(lambda: "**The run passed**" in "".join(progress_on(github)))

    [body] = progress_on(github)
    assert f"**Loopwright run `{run.id}`** · workflow `quick`" in body
    assert len(github.requests_to(COMMENTS, "POST")) == 1


@NO_FIXTURES
async def test_a_reporter_given_to_the_service_wins_over_the_comment(
    tmp_path: Path, github: FakeGitHub
):
    collect = Collect()
    settings = Settings(
        data_dir=tmp_path / "var",
        database_url=None,
        workflows_dir=write_workflows(tmp_path),
        default_workflow="quick",
        github=github_settings(github),
    )
    app = create_app(
        settings,
        model=FunctionModel(done),
        reporters={"github": collect},
        executor_config=EXECUTOR,
        github_config=FAST,
    )
    async with serve_hook(app) as hook:
        await comment(hook, pr_comment(github, "/loop quick do X"))
        await wait_until(lambda: any(r.kind == "finished" for r in collect.reports))

    assert [r.kind for r in collect.reports] == ["queued", "started", "turn_finished", "finished"]
    assert progress_on(github) == []
