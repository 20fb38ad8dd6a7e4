"""What each command of a permitted GitHub comment does: start, stop, report on or resume runs.

A handler returns its outcome in words (for the delivery's record and the log) and answers on
GitHub: an 👀 reaction when it queued a run, a reply comment otherwise. GitHub failures are
raised (`GitHubError`) for the caller to retry the delivery; every ledger write a handler makes
is idempotent or checked, so a retried delivery starts no second run.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import structlog

from app import github_replies as replies
from app.executor import Executor
from app.github_client import GitHubClient
from app.github_workflows import BrokenWorkflow, RepoWorkflows
from app.ledger import RunRow
from app.reports import ReportHub
from app.run_controls import RunControls
from app.run_queue import RunStateError
from app.runner import Runner
from loops.jobs import ACTIVE_STATUSES, STOPPED_STATUSES
from triggers.commands import (
    Command,
    InvalidCommand,
    MentionCommand,
    ResumeCommand,
    RunCommand,
    StatusCommand,
    StopCommand,
)
from triggers.github import CommentEvent, to_loop_job

log = structlog.get_logger("app.github")

MIN_RUN_PREFIX = 4
_THREAD_RUNS = 100


@dataclass(kw_only=True)
class Thread:
    """The comment being answered, its delivery, and what has been done for it so far."""

    event: CommentEvent
    delivery_key: str
    reacted: bool = False

    @property
    def concurrency_key(self) -> str:
        # The key `triggers.github.to_loop_job` gives every run of this pull request or issue.
        return f"github:{self.event.repo}#{self.event.number}"

    @property
    def noun(self) -> str:
        return "pull request" if self.event.is_pull_request else "issue"


class CommandHandlers:
    def __init__(
        self,
        *,
        github: GitHubClient,
        workflows: RepoWorkflows,
        runner: Runner,
        executor: Executor,
        reports: ReportHub,
        default_workflow: str,
    ) -> None:
        self.github = github
        self.workflows = workflows
        self.runner = runner
        self.executor = executor
        self.reports = reports
        self.default_workflow = default_workflow
        self.controls = RunControls(runner=runner, executor=executor, reports=reports)

    async def handle(self, thread: Thread, index: int, command: Command) -> str:
        """Carry out the `index`-th command of the thread's comment; returns what came of it."""
        match command:
            case RunCommand() | MentionCommand():
                return await self._start(thread, index, command)
            case StopCommand():
                return await self._stop(thread)
            case StatusCommand():
                runs = await self._runs(thread, replies.MAX_STATUS_RUNS)
                await self.reply(thread, replies.status(thread.event.author, thread.noun, runs))
                return f"status of {len(runs)} run(s) sent"
            case ResumeCommand(run_ref=ref):
                return await self._resume(thread, ref)
            case InvalidCommand(reason=reason):
                await self.reply(thread, replies.invalid(thread.event.author, reason))
                return f"invalid command: {reason}"

    async def reply(self, thread: Thread, body: str) -> None:
        event = thread.event
        await self.github.create_comment(
            event.repo, event.number, body, installation_id=event.installation_id
        )

    async def _react(self, thread: Thread) -> None:
        if thread.reacted:
            return
        event = thread.event
        await self.github.add_reaction(
            event.repo,
            event.comment_id,
            kind=event.comment_kind,
            content="eyes",
            installation_id=event.installation_id,
        )
        thread.reacted = True

    async def _start(self, thread: Thread, index: int, command: RunCommand | MentionCommand) -> str:
        event = thread.event
        name = command.workflow if isinstance(command, RunCommand) else self.default_workflow
        found = await self.workflows.find(event.repo, name, installation_id=event.installation_id)
        if found is None:
            names = await self.workflows.names(event.repo, installation_id=event.installation_id)
            await self.reply(thread, replies.unknown_workflow(event.author, name, names))
            return f"unknown workflow {name!r}"
        if isinstance(found, BrokenWorkflow):
            await self.reply(thread, replies.broken_workflow(event.author, name, found.reason))
            return f"workflow {name!r} is broken"
        job = to_loop_job(
            event, command, workflow=name, delivery_key=thread.delivery_key, index=index
        )
        job_row, run, created = await asyncio.to_thread(self.runner.submit, job, found)
        if created:
            log.info("github_job_created", job_id=job_row.id, run_id=run.id, workflow=name)
            self.executor.wake()
            self.reports.submit(self.reports.report("queued", run, job_row))
        # A redelivery or a retried delivery finds its job stored: it only answers again.
        await self._react(thread)
        return f"queued run {run.id} of {name!r}" if created else f"run {run.id} was queued"

    async def _stop(self, thread: Thread) -> str:
        runs = await self._runs(thread, _THREAD_RUNS)
        stopped: list[tuple[RunRow, str]] = []
        for run in runs:
            if run.status in ACTIVE_STATUSES:
                status = await self.controls.cancel(run)
                if status is not None:
                    stopped.append((run, status))
        author = thread.event.author
        if not stopped:
            await self.reply(thread, replies.nothing_to_stop(author, thread.noun))
            return "nothing to stop"
        log.info("github_runs_cancelled", runs=[run.id for run, _ in stopped])
        await self.reply(thread, replies.stopping(author, thread.noun, stopped))
        return f"stopped run(s) {', '.join(run.id for run, _ in stopped)}"

    async def _resume(self, thread: Thread, ref: str | None) -> str:
        author = thread.event.author
        runs = await self._runs(thread, _THREAD_RUNS)
        run, problem = _pick(runs, ref, thread.noun)
        if run is None:
            await self.reply(thread, replies.not_resumed(author, problem))
            return f"not resumed: {problem}"
        try:
            extra_turns = await self.controls.resume(run)
        except RunStateError as exc:
            await self.reply(thread, replies.not_resumed(author, str(exc)))
            return f"not resumed: {exc}"
        await self._react(thread)
        await self.reply(thread, replies.resumed(author, run, extra_turns=extra_turns))
        return f"resumed run {run.id}"

    async def _runs(self, thread: Thread, limit: int) -> list[RunRow]:
        return await self.controls.runs(thread.concurrency_key, limit)


def _pick(runs: list[RunRow], ref: str | None, noun: str) -> tuple[RunRow | None, str]:
    """The run `/loop resume [ref]` means among this thread's runs, or why there is none.

    Only this thread's runs are looked at, so a comment can neither resume nor learn of a run
    of another repository."""
    if ref is None:
        stopped = [run for run in runs if run.status in STOPPED_STATUSES]
        if stopped:
            return stopped[0], ""
        return None, f"no run of this {noun} is braked, stuck, cancelled or errored"
    exact = [run for run in runs if run.id == ref]
    matches = exact or (
        [run for run in runs if run.id.startswith(ref)] if len(ref) >= MIN_RUN_PREFIX else []
    )
    if len(matches) == 1:
        return matches[0], ""
    if matches:
        ids = ", ".join(f"`{run.id}`" for run in matches[:5])
        return None, f"{ref!r} matches several runs of this {noun}: {ids}"
    return None, f"this {noun} has no run {ref!r}"
