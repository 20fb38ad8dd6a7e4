"""What Slack commands and mentions do: start, stop, report on or resume the runs of a channel
or thread.

Each handler stores what it must (a job, a cancel, a resume) and returns the answer's text, so
the route can answer Slack within its 3 seconds; progress messages come afterwards from the
report hub. A slash command acts on the runs of its channel; a mention or direct message on the
runs of its thread. Who may use the service is checked first (`allowed`).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import structlog

from app import slack_messages as say
from app.catalog import WorkflowCatalog
from app.executor import Executor
from app.github_handlers import MIN_RUN_PREFIX
from app.intake import IntakeBatcher
from app.ledger import RunRow
from app.reports import ReportHub
from app.run_controls import RunControls
from app.run_queue import RunStateError
from app.runner import Runner
from loops.jobs import ACTIVE_STATUSES, STOPPED_STATUSES, LoopJob
from triggers.commands import (
    InvalidCommand,
    MentionCommand,
    ResumeCommand,
    RunCommand,
    StatusCommand,
    StopCommand,
)
from triggers.slack import (
    MessageEvent,
    SlashCommand,
    channel_key,
    event_job,
    parse_slash_text,
    slash_job,
)

log = structlog.get_logger("app.slack")

MAX_STATUS_RUNS = 10
_SCOPE_RUNS = 100


@dataclass(frozen=True, kw_only=True)
class Answer:
    """What to tell the user; `run_id` names the run a command queued, if any."""

    text: str
    run_id: str | None = None


class SlackHandlers:
    def __init__(
        self,
        *,
        catalog: WorkflowCatalog,
        intake: IntakeBatcher,
        runner: Runner,
        executor: Executor,
        reports: ReportHub,
        default_workflow: str,
        allowed_users: Collection[str] = (),
        allowed_channels: Collection[str] = (),
    ) -> None:
        self.catalog = catalog
        self.intake = intake
        self.runner = runner
        self.executor = executor
        self.reports = reports
        self.default_workflow = default_workflow
        self.allowed_users = frozenset(allowed_users)
        self.allowed_channels = frozenset(allowed_channels)
        self.controls = RunControls(runner=runner, executor=executor, reports=reports)

    def allowed(self, user: str, channel: str) -> bool:
        """Whether the allow-lists (when set) let `user` use the service in `channel`."""
        if self.allowed_users and user not in self.allowed_users:
            return False
        return not self.allowed_channels or channel in self.allowed_channels

    async def slash(self, command: SlashCommand) -> Answer:
        """Carry out a `/loop …` slash command."""
        if not self.allowed(command.user, command.channel):
            log.info("slack_command_refused", user=command.user, channel=command.channel)
            return Answer(text=say.refused(command.user, command.channel))
        parsed, target = parse_slash_text(command.text)
        scope = channel_key(command.team, command.channel)
        match parsed:
            case RunCommand():
                return await self._start(slash_job(command, parsed, target))
            case StopCommand():
                return Answer(text=await self._stop(scope))
            case StatusCommand():
                runs = await self._runs(scope, MAX_STATUS_RUNS)
                return Answer(text=say.status(runs))
            case ResumeCommand(run_ref=ref):
                return Answer(text=await self._resume(scope, ref))
            case InvalidCommand(reason=reason):
                return Answer(text=say.invalid(reason))
            case MentionCommand():  # the slash grammar has no mentions
                return Answer(text=say.invalid("a slash command names a workflow"))

    async def mention(self, event: MessageEvent, instruction: str) -> Answer:
        """Start the default workflow for a mention or a direct message."""
        job = event_job(event, workflow=self.default_workflow, instruction=instruction)
        return await self._start(job)

    async def _start(self, job: LoopJob) -> Answer:
        workflow = self.catalog.get(job.workflow)
        if workflow is None:
            return Answer(text=say.unknown_workflow(job.workflow, self.catalog.names()))
        job_row, run, created = await self.intake.submit(job, workflow)
        if not created:
            return Answer(text=say.already_queued(run.id, job.workflow), run_id=run.id)
        log.info("slack_job_created", job_id=job_row.id, run_id=run.id, workflow=job.workflow)
        self.executor.wake()
        self.reports.submit(self.reports.report("queued", run, job_row))
        return Answer(text=say.queued(run.id, job.workflow), run_id=run.id)

    async def _stop(self, scope: str) -> str:
        stopped: list[tuple[RunRow, str]] = []
        for run in await self._runs(scope, _SCOPE_RUNS):
            if run.status not in ACTIVE_STATUSES:
                continue
            status = await self.controls.cancel(run)
            if status is not None:
                stopped.append((run, status))
        if not stopped:
            return say.nothing_to_stop()
        log.info("slack_runs_cancelled", runs=[run.id for run, _ in stopped])
        return say.stopping(stopped)

    async def _resume(self, scope: str, ref: str | None) -> str:
        run, problem = _pick(await self._runs(scope, _SCOPE_RUNS), ref)
        if run is None:
            return say.not_resumed(problem)
        try:
            extra_turns = await self.controls.resume(run)
        except RunStateError as exc:
            return say.not_resumed(str(exc))
        return say.resumed(run.id, extra_turns)

    async def _runs(self, scope: str, limit: int) -> list[RunRow]:
        return await self.controls.runs(scope, limit)


def _pick(runs: list[RunRow], ref: str | None) -> tuple[RunRow | None, str]:
    """The run `/loop resume [ref]` means among the runs here, or why there is none."""
    if ref is None:
        stopped = [run for run in runs if run.status in STOPPED_STATUSES]
        if stopped:
            return stopped[0], ""
        return None, "no run here is braked, stuck, cancelled or errored"
    exact = [run for run in runs if run.id == ref]
    matches = exact or (
        [run for run in runs if run.id.startswith(ref)] if len(ref) >= MIN_RUN_PREFIX else []
    )
    if len(matches) == 1:
        return matches[0], ""
    if matches:
        return None, f"{ref!r} matches several runs here"
    return None, f"there is no run {ref!r} here"
