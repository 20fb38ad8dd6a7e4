"""Job intake with group commit: concurrent submissions share one transaction and one commit.

`IntakeBatcher.submit` queues the job and waits; a single writer task takes whatever is queued
(waiting at most `window_seconds` for more, up to `max_batch`), stores it all with
`Ledger.create_jobs` in one worker-thread hop, and answers each submission after the commit. So
every job is durably stored before its caller hears about it, exactly as with one transaction per
job, while a busy service pays one commit and one thread hop per batch instead of per job.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import structlog

from app.ledger import Ledger, LedgerError, NewJob, StorageError
from app.ledger_batch import Stored
from loops.jobs import LoopJob
from loops.workflows import Workflow

log = structlog.get_logger("app.intake")


class IntakeClosedError(StorageError):
    """The service is stopping: intake takes no more jobs (the API answers 503)."""


@dataclass(frozen=True)
class _Pending:
    request: NewJob
    answer: asyncio.Future[Stored]


class IntakeBatcher:
    """Stores submitted jobs in batches; one per service, started and stopped by its lifespan.

    Args:
        window_seconds: how long the writer waits for more submissions once one has arrived.
            Under load it rarely waits: submissions queue up while the previous batch commits.
        max_batch: the most jobs stored in one transaction.
    """

    def __init__(
        self, ledger: Ledger, *, window_seconds: float = 0.002, max_batch: int = 64
    ) -> None:
        self.ledger = ledger
        self.window_seconds = window_seconds
        self.max_batch = max_batch
        self._queue: asyncio.Queue[_Pending | None] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._closed = False

    def start(self) -> None:
        self._writer = asyncio.create_task(self._write_forever(), name="intake-writer")

    async def stop(self) -> None:
        """Take no more jobs; store and answer those already submitted, then end the writer."""
        self._closed = True
        if self._writer is None:
            return
        self._queue.put_nowait(None)  # after everything already queued
        await self._writer

    async def submit(self, job: LoopJob, workflow: Workflow) -> Stored:
        """Store the job and its queued run, as `Ledger.create_job` does; answers after commit.

        Raises:
            IntakeClosedError: the service is stopping.
            LedgerError: as `Ledger.create_job`.
        """
        if self._closed or self._writer is None:
            raise IntakeClosedError("the service is stopping; it takes no new jobs")
        if job.workflow != workflow.name:
            raise LedgerError(f"job names workflow {job.workflow!r}, given {workflow.name!r}")
        answer: asyncio.Future[Stored] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(NewJob(job=job, workflow=workflow), answer))
        # A caller cancelled meanwhile (a client gone) cancels only its answer: its job is still
        # stored with the batch, as a job whose insert had begun always was.
        return await answer

    async def _write_forever(self) -> None:
        while True:
            batch, last = await self._collect()
            if batch:
                await self._write(batch)
            if last:
                return

    async def _collect(self) -> tuple[list[_Pending], bool]:
        """The next batch, and whether `stop` was called behind it."""
        first = await self._queue.get()
        if first is None:
            return [], True
        batch = [first]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.window_seconds
        while len(batch) < self.max_batch:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    async with asyncio.timeout(remaining):
                        item = await self._queue.get()
                except TimeoutError:
                    break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    async def _write(self, batch: list[_Pending]) -> None:
        outcome: list[Stored] | BaseException
        try:
            outcome = await asyncio.to_thread(self.ledger.create_jobs, [p.request for p in batch])
        except LedgerError as exc:
            outcome = exc  # the database failed: every job of the batch is refused alike
        except Exception as exc:  # a bug must not leave callers waiting forever
            log.exception("intake_batch_failed", jobs=len(batch))
            outcome = exc
        for n, pending in enumerate(batch):
            if pending.answer.done():
                continue
            if isinstance(outcome, BaseException):
                pending.answer.set_exception(outcome)
            else:
                pending.answer.set_result(outcome[n])
