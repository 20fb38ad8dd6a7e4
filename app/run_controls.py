"""What `/loop stop`, `/loop status` and `/loop resume` do to runs, whichever chat they come from.

GitHub comments and Slack messages word their answers their own way; the runs of a thread (a
pull request, a Slack channel or thread: one concurrency key), cancelling them and queueing them
again work the same for both, here.
"""

from __future__ import annotations

import asyncio

import structlog

from app.executor import Executor
from app.ledger import RunRow
from app.reports import ReportHub
from app.run_lookup import runs_by_concurrency_key
from app.run_queue import RunStateError
from app.runner import Runner, resumed_brakes, run_interrupted

log = structlog.get_logger("app.runs")


class RunControls:
    def __init__(self, *, runner: Runner, executor: Executor, reports: ReportHub) -> None:
        self.runner = runner
        self.executor = executor
        self.reports = reports

    async def runs(self, key: str, limit: int) -> list[RunRow]:
        """The runs of the thread whose concurrency key is `key`, newest first."""
        ledger = self.runner.ledger
        return await asyncio.to_thread(runs_by_concurrency_key, ledger, key, limit=limit)

    async def cancel(self, run: RunRow) -> str | None:
        """The run's status once cancelled (`running`: its process stops it); None if it ended."""
        if self.interrupted(run):
            # Nobody would act on a cancel flag of a run whose process is gone: requeue it first.
            await asyncio.to_thread(self.runner.queue.recover, run)
        try:
            return await self.executor.cancel(run.id)
        except RunStateError:
            return None

    async def resume(self, run: RunRow) -> int:
        """Queue `run` again (a braked one with another round of its workflow's budget) and
        report it queued; returns the turns added.

        Raises:
            RunStateError: its status does not allow it, or it changed meanwhile.
        """
        brakes, extra_turns = await asyncio.to_thread(resumed_brakes, self.runner.ledger, run)
        if run.status == "running" and self.interrupted(run):
            if not await asyncio.to_thread(self.runner.queue.recover, run, brakes=brakes):
                raise RunStateError(f"run {run.id} changed while resuming it; try again")
            resumed = run
        else:
            resumed = await asyncio.to_thread(self.runner.queue.resume, run.id, brakes=brakes)
        log.info("run_resumed", run_id=run.id, source=resumed.source, extra_turns=extra_turns)
        self.executor.wake()
        job = await asyncio.to_thread(self.runner.ledger.get_job, run.job_id)
        if job is not None:
            self.reports.submit(self.reports.report("queued", resumed, job, status="queued"))
        return extra_turns

    def interrupted(self, run: RunRow) -> bool:
        return run_interrupted(run, stale_after=self.executor.config.stale_after_seconds)
