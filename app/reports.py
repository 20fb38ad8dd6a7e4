"""Delivers run reports to the reporter of each job's source, in order per run, with retries.

Reports are queued and sent by a few worker tasks (a run always maps to the same worker, so its
reports arrive in order). A failing reporter is retried with backoff and then given up on, with
a log line each time; it never fails, blocks or slows the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections.abc import Callable, Mapping

import structlog

from app.ledger import JobRow, RunRow
from loops.checking import CheckResult
from loops.events import Event, Listener, Outcome, TurnFinished, TurnStarted
from loops.jobs import RunStatus
from loops.reporting import Reporter, ReportKind, RunReport
from loops.usage import Usage

log = structlog.get_logger("app.reports")

TraceUrl = Callable[[str], str | None]


class ReportHub:
    def __init__(
        self,
        reporters: Mapping[str, Reporter],
        *,
        attempts: int = 4,
        base_delay: float = 0.5,
        workers: int = 4,
        trace_url: TraceUrl | None = None,
    ) -> None:
        self.reporters = dict(reporters)
        self.attempts = attempts
        self.base_delay = base_delay
        self.trace_url = trace_url or (lambda _run_id: None)
        self._queues: list[asyncio.Queue[RunReport]] = [asyncio.Queue() for _ in range(workers)]
        self._workers: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._workers = [
            asyncio.create_task(self._work(q), name=f"reports-{i}")
            for i, q in enumerate(self._queues)
        ]

    async def stop(self, grace: float = 5.0) -> None:
        """Deliver what is queued (for at most `grace` seconds), then stop."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                for queue in self._queues:
                    await queue.join()
        for worker in self._workers:
            worker.cancel()
        for worker in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await worker

    def register_default(self, source: str, reporter: Reporter) -> bool:
        """Report on jobs from `source` through `reporter`, unless a reporter was given for it.

        Returns:
            whether `reporter` is the one now used.
        """
        if source in self.reporters:
            return False
        self.reporters[source] = reporter
        return True

    def wants(self, source: str) -> bool:
        """Whether jobs from `source` are reported on (else building their reports is moot)."""
        return source in self.reporters

    def submit(self, report: RunReport) -> None:
        if report.job.source not in self.reporters:
            return
        index = zlib.crc32(report.run_id.encode()) % len(self._queues)
        self._queues[index].put_nowait(report)

    def listeners_for(self, run: RunRow, job: JobRow) -> tuple[Listener, ...]:
        if job.source not in self.reporters:
            return ()
        return (_RunListener(self, run, job),)

    def report(
        self,
        kind: ReportKind,
        run: RunRow,
        job: JobRow,
        *,
        status: RunStatus | None = None,
        turn: int = 0,
        usage: Usage | None = None,
        checks: tuple[CheckResult, ...] = (),
        reason: str = "",
        elapsed_s: float = 0.0,
    ) -> RunReport:
        return RunReport(
            kind=kind,
            run_id=run.id,
            job_id=job.id,
            job=job.to_job(),
            status=status or run.status,
            workflow=run.workflow,
            turn=turn,
            max_turns=run.brakes.max_turns,
            usage=usage or run.usage,
            checks=checks,
            reason=reason,
            elapsed_s=elapsed_s,
            trace_url=self.trace_url(run.id),
            extra=dict(run.extra),
        )

    def finished(
        self, run: RunRow, job: JobRow, outcome: Outcome, checks: tuple[CheckResult, ...]
    ) -> RunReport:
        """A run's last report for this session of it, with `checks` from its last turn.

        Args:
            run: the run as stored once its outcome was recorded, so its `extra` holds what was
                published and the progress comment's id.
        """
        return self.report(
            "finished",
            run,
            job,
            status=outcome.status,
            turn=outcome.turns,
            usage=outcome.usage,
            checks=checks,
            reason=outcome.reason,
            elapsed_s=outcome.elapsed_s,
        )

    async def _work(self, queue: asyncio.Queue[RunReport]) -> None:
        while True:
            report = await queue.get()
            try:
                await self._deliver(report)
            finally:
                queue.task_done()

    async def _deliver(self, report: RunReport) -> None:
        reporter = self.reporters[report.job.source]
        for attempt in range(1, self.attempts + 1):
            try:
                await reporter.report(report)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "report_failed",
                    run_id=report.run_id,
                    kind=report.kind,
                    attempt=attempt,
                    error=f"{type(exc).__name__}: {exc}"[:300],
                )
                if attempt < self.attempts:
                    await asyncio.sleep(self.base_delay * 2 ** (attempt - 1))
        log.error("report_dropped", run_id=report.run_id, kind=report.kind)


class _RunListener:
    """Turns the engine's events for one run into reports.

    The engine's `RunFinished` is not one of them: it fires before the runner has recorded the
    outcome and published the work, so the executor sends the finished report after that.
    """

    def __init__(self, hub: ReportHub, run: RunRow, job: JobRow) -> None:
        self.hub = hub
        self.run = run
        self.job = job
        self.started = False

    def __call__(self, event: Event) -> None:
        hub, run, job = self.hub, self.run, self.job
        match event:
            case TurnStarted(turn=turn) if not self.started:
                self.started = True
                hub.submit(hub.report("started", run, job, status="running", turn=turn))
            case TurnFinished(record=record, usage=usage):
                checks = record.verdict.results if record.verdict else ()
                report = hub.report(
                    "turn_finished",
                    run,
                    job,
                    status="running",
                    turn=record.number,
                    usage=usage,
                    checks=checks,
                    elapsed_s=record.elapsed_s,
                )
                hub.submit(report)
