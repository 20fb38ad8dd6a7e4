"""The in-process executor: runs queued runs, a global limit and one run per concurrency key.

One dispatcher task claims queued runs in arrival order while slots are free, as many as there
are free slots at a time (one worker-thread hop claims them and reads their jobs); each claimed
run is an asyncio task, handed its run and job as claimed. A watch task heartbeats the runs
this process owns, turns cancel requests into task cancellation (the engine kills any running
tool or check process group), and periodically requeues runs whose process is gone, whoever
owned them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from app.ledger import JobRow, RunRow
from app.metrics import Metrics
from app.pidfd_watcher import install_pidfd_watcher
from app.reports import ReportHub
from app.run_queue import Claim, RunQueue
from app.runner import Runner, process_alive
from loops.checking import CheckResult
from loops.events import Listener, Outcome

log = structlog.get_logger("app.executor")


@dataclass(frozen=True, kw_only=True)
class ExecutorConfig:
    max_concurrent_runs: int = 4
    poll_seconds: float = 1.0  # how often the queue is read when nothing wakes the dispatcher
    watch_seconds: float = 0.5  # how often cancel requests are read (cancel within 2 s)
    heartbeat_seconds: float = 5.0
    stale_after_seconds: float = 60.0
    recover_every_seconds: float = 10.0
    shutdown_grace_seconds: float = 10.0
    claim_batch: int = 32  # runs claimed (and started) at a time


class Executor:
    def __init__(
        self,
        *,
        runner: Runner,
        config: ExecutorConfig,
        reports: ReportHub | None = None,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.metrics = metrics
        self.runner = runner
        self.queue: RunQueue = runner.queue
        self.config = config
        self.reports = reports
        self.clock = clock
        self.claim_as = Claim(
            owner=f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}",
            pid=os.getpid(),
            host=socket.gethostname(),
        )
        self.tasks: dict[str, asyncio.Task[Outcome | None]] = {}
        self.keys: dict[str, str | None] = {}
        self._cancelled: set[str] = set()
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._accepting = True
        self._dispatcher: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None

    @property
    def slots_in_use(self) -> int:
        return len(self.tasks)

    async def start(self) -> None:
        install_pidfd_watcher()  # many runs start processes at once: keep that off the loop
        recovered = await self._recover()
        if recovered:
            log.info("runs_recovered", runs=recovered)
        self._dispatcher = asyncio.create_task(self._dispatch_forever(), name="executor-dispatch")
        self._watcher = asyncio.create_task(self._watch_forever(), name="executor-watch")
        self.wake()

    def wake(self) -> None:
        """There may be queued work: the dispatcher looks at once if a slot is free (a busy
        executor looks again when a run ends)."""
        if len(self.tasks) < self.config.max_concurrent_runs:
            self._wake.set()

    async def cancel(self, run_id: str) -> str:
        """Cancel a run: at once if it runs here, else through the ledger for its owner."""
        task = self.tasks.get(run_id)
        status = await asyncio.to_thread(self.queue.request_cancel, run_id)
        if task is not None:
            self._cancel_task(run_id, task)
        return status

    async def shutdown(self) -> None:
        """Stop taking work; in-flight runs stop at their next step, within a bounded time."""
        self._accepting = False
        self._stop.set()
        # The dispatcher is not cancelled but woken: it finishes a claim in progress and hands
        # back what it got (a cancelled claim would leave runs `running` with nobody on them).
        self._wake.set()
        if self._watcher is not None:
            self._watcher.cancel()
        if self._dispatcher is not None:
            await self._dispatcher
        running = list(self.tasks.values())
        if running:
            log.info("executor_draining", runs=len(running))
            _, pending = await asyncio.wait(running, timeout=self.config.shutdown_grace_seconds)
            for task in pending:
                task.cancel()  # the engine records the partial turn and requeues the run
            if pending:
                await asyncio.wait(pending, timeout=5)
        if self._watcher is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher

    async def _dispatch_forever(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.poll_seconds):
                    await self._wake.wait()
            self._wake.clear()
            if not self._accepting:
                return
            try:
                await self._fill()
            except Exception:
                log.exception("dispatch_failed")

    async def _fill(self) -> None:
        # Claimed in batches: each batch's runs take their first steps on the event loop while
        # the next batch is claimed in a thread, so a full queue (a restart, a burst of jobs)
        # never starts hundreds of runs in one iteration of the loop.
        while True:
            free = self.config.max_concurrent_runs - len(self.tasks)
            if free <= 0:
                return
            busy = {k for k in self.keys.values() if k}
            wanted = min(free, self.config.claim_batch)
            claimed = await asyncio.to_thread(self._claim, wanted, busy)
            if not self._accepting:
                await asyncio.to_thread(self._hand_back, [run for run, _ in claimed])
                return
            for run, job in claimed:
                self._launch(run, job)
            if len(claimed) < wanted:
                return

    def _claim(self, limit: int, busy: set[str]) -> list[tuple[RunRow, JobRow | None]]:
        runs = self.queue.claim_next(self.claim_as, limit=limit, skip_keys=busy)
        jobs = self.runner.ledger.get_jobs({run.job_id for run in runs})
        return [(run, jobs.get(run.job_id)) for run in runs]

    def _hand_back(self, runs: list[RunRow]) -> None:
        for run in runs:
            self.queue.requeue(run.id, reason="interrupted: the service is stopping")

    def _launch(self, run: RunRow, job: JobRow | None) -> None:
        self.keys[run.id] = run.concurrency_key
        task = asyncio.create_task(self._execute(run, job), name=f"run-{run.id}")
        self.tasks[run.id] = task

    async def _execute(self, run: RunRow, job: JobRow | None) -> Outcome | None:
        try:
            outcome = await self._run(run, job)
            await self._report_finished(run, job, outcome)
            return outcome
        finally:
            self.tasks.pop(run.id, None)
            self.keys.pop(run.id, None)
            self._cancelled.discard(run.id)
            self._wake.set()

    async def _run(self, run: RunRow, job: JobRow | None) -> Outcome | None:
        try:
            listeners = self._listeners(run, job)
            return await self.runner.run(
                run.id, listeners=listeners, stop=self._stop, run=run, job=job
            )
        except Exception:
            log.exception("run_failed_to_execute", run_id=run.id)
            await asyncio.to_thread(
                self.runner.ledger.finish_run,
                run.id,
                status="errored",
                reason="internal error while running; see the service log",
            )
            return None

    async def _report_finished(
        self, run: RunRow, job: JobRow | None, outcome: Outcome | None
    ) -> None:
        """Report how the run ended, once the runner has recorded the outcome and published
        the work (the report shows both). Without `outcome` the run failed to execute."""
        reports = self.reports
        if reports is None or job is None or not reports.wants(job.source):
            return
        try:
            stored, checks = await asyncio.to_thread(self._final_state, run)
            if outcome is None:
                outcome = Outcome(
                    run_id=run.id,
                    status="errored",
                    reason=stored.reason,
                    turns=stored.turns_done,
                    usage=stored.usage,
                    elapsed_s=stored.elapsed_s,
                )
            reports.submit(reports.finished(stored, job, outcome, checks))
        except Exception:
            log.exception("finished_report_failed", run_id=run.id)

    def _final_state(self, run: RunRow) -> tuple[RunRow, tuple[CheckResult, ...]]:
        """The run as stored now, and the check results of its last turn."""
        ledger = self.runner.ledger
        stored = ledger.get_run(run.id) or run
        turns = ledger.turns(run.id) if stored.turns_done else []
        verdict = turns[-1].verdict if turns else None
        return stored, verdict.results if verdict else ()

    def _listeners(self, run: RunRow, job: JobRow | None) -> tuple[Listener, ...]:
        listeners: tuple[Listener, ...] = (self.metrics.listener(),) if self.metrics else ()
        if self.reports is None or job is None:
            return listeners
        return (*listeners, *self.reports.listeners_for(run, job))

    def _cancel_task(self, run_id: str, task: asyncio.Task[Outcome | None]) -> None:
        # Once only: a second cancel could interrupt the engine while it records the outcome.
        if run_id not in self._cancelled:
            self._cancelled.add(run_id)
            task.cancel()

    async def _watch_forever(self) -> None:
        last_beat = last_recovery = self.clock()
        while True:
            await asyncio.sleep(self.config.watch_seconds)
            try:
                await self._watch_once()
                now = self.clock()
                if now - last_beat >= self.config.heartbeat_seconds:
                    last_beat = now
                    await asyncio.to_thread(self.queue.heartbeat, list(self.tasks))
                if now - last_recovery >= self.config.recover_every_seconds:
                    last_recovery = now
                    if await self._recover():
                        self.wake()
            except Exception:
                log.exception("executor_watch_failed")

    async def _watch_once(self) -> None:
        flagged = await asyncio.to_thread(self.queue.cancel_requested, list(self.tasks))
        for run_id in flagged:
            task = self.tasks.get(run_id)
            if task is not None:
                log.info("run_cancel_requested", run_id=run_id)
                self._cancel_task(run_id, task)

    async def _recover(self) -> list[str]:
        return await asyncio.to_thread(
            self.queue.recover_stale,
            stale_before=self.clock() - self.config.stale_after_seconds,
            host=self.claim_as.host,
            alive=lambda pid: pid in _own_pids() or process_alive(pid, None),
        )


def _own_pids() -> set[int]:
    # This process's runs are alive by definition, even before their first heartbeat.
    return {os.getpid()}
