"""Intake: jobs and webhook deliveries are stored, many to a transaction, before their callers
are answered.

`IntakeBatcher` (jobs with their first runs) and `DeliveryIntake` (webhook deliveries) hand
their items to an `IntakeWriter`: the intake writer process (`app.intake_process`), or, for an
in-memory ledger, `GroupCommit` on a thread. Either way every item is durably stored before its
caller hears about it, exactly as with one transaction per item, while a busy service pays one
commit per batch instead of per item.

`GroupCommit.store` queues an item and waits. One writer thread takes whatever is queued (up to
`max_batch`), stores it all with one call of its `write` function, and hands the results back
to the event loop in one callback, which answers each submission. The writer is a thread rather
than a task on the event loop: a task only gets to start a batch once the loop has worked
through every request that arrived with the first one, so the commit never overlaps that work.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import structlog

from app.ledger import LedgerError, NewJob, StorageError
from app.ledger_batch import Existing, Stored, prepare_job, result
from loops.jobs import LoopJob
from loops.workflows import Workflow

if TYPE_CHECKING:
    from app.deliveries import NewDelivery

log = structlog.get_logger("app.intake")


class IntakeClosedError(StorageError):
    """The service is stopping: intake takes no more jobs (the API answers 503)."""


T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class _Pending(Generic[T, R]):
    item: T
    answer: asyncio.Future[R]


class GroupCommit(Generic[T, R]):
    """Stores submitted items in batches on one writer thread; started and stopped by the
    service's lifespan.

    Args:
        write: stores a batch in one transaction; returns one result per item, in order. A
            `LedgerError` it raises refuses the whole batch.
        name: the writer thread's name.
        max_batch: the most items stored in one transaction. The writer takes what is queued
            without waiting for more: under load, items queue up while the previous batch
            commits, and an idle service stores a lone item without delay.
    """

    def __init__(
        self,
        write: Callable[[list[T]], Sequence[R]],
        *,
        name: str,
        max_batch: int = 64,
    ) -> None:
        self.write = write
        self.name = name
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[_Pending[T, R] | None] = queue.SimpleQueue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writer: threading.Thread | None = None
        self._closed = False

    def start(self) -> None:
        """Start the writer; call from the event loop that will submit."""
        self._loop = asyncio.get_running_loop()
        self._writer = threading.Thread(target=self._write_all, name=self.name, daemon=True)
        self._writer.start()

    async def stop(self) -> None:
        """Take no more items; store and answer those already submitted, then end the writer."""
        self._closed = True
        if self._writer is None:
            return
        self._queue.put(None)  # after everything already queued
        await asyncio.to_thread(self._writer.join)

    async def store(self, item: T) -> R:
        """Store `item` with whatever else is queued; answers after the commit.

        Raises:
            IntakeClosedError: the service is stopping.
            LedgerError: as `write`.
        """
        if self._closed or self._loop is None:
            raise IntakeClosedError("the service is stopping; it takes no new work")
        answer: asyncio.Future[R] = self._loop.create_future()
        self._queue.put(_Pending(item, answer))
        # A caller cancelled meanwhile (a client gone) cancels only its answer: its item is
        # still stored with the batch, as an item whose insert had begun always was.
        return await answer

    def _write_all(self) -> None:
        while True:
            batch, last = self._next_batch()
            if batch:
                self._write(batch)
            if last:
                return

    def _next_batch(self) -> tuple[list[_Pending[T, R]], bool]:
        """The next batch, and whether `stop` was called behind it."""
        first = self._queue.get()
        if first is None:
            return [], True
        batch = [first]
        while len(batch) < self.max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _write(self, batch: list[_Pending[T, R]]) -> None:
        outcome: Sequence[R] | BaseException
        try:
            outcome = self.write([p.item for p in batch])
        except LedgerError as exc:
            outcome = exc  # the database failed: every item of the batch is refused alike
        except Exception as exc:  # a bug must not leave callers waiting forever
            log.exception("group_commit_failed", writer=self.name, items=len(batch))
            outcome = exc
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(_answer, batch, outcome)
        except RuntimeError:
            log.warning("group_commit_loop_closed", writer=self.name, items=len(batch))


def _answer(batch: list[_Pending[T, R]], outcome: Sequence[R] | BaseException) -> None:
    for n, pending in enumerate(batch):
        if pending.answer.done():
            continue
        if isinstance(outcome, BaseException):
            pending.answer.set_exception(outcome)
        else:
            pending.answer.set_result(outcome[n])


Outcome = tuple[bool, Any]
"""(True, a write's result) or (False, the `LedgerError` it raised)."""


class IntakeWriter(Protocol):
    """Stores items by the name of their write (`app.intake_process.Writes`), each answered
    after the commit that stores it; started and stopped by the service's lifespan."""

    def start(self) -> None: ...

    async def stop(self) -> None:
        """Take no more items; store and answer those already submitted."""

    async def store(self, op: str, item: object) -> Any:
        """The write's result for `item`.

        Raises:
            IntakeClosedError: the service is stopping.
            LedgerError: the write refused it; `StorageError` if the database failed.
        """


class IntakeBatcher:
    """Stores submitted jobs with their first runs, many to a transaction, through `writer`."""

    def __init__(self, writer: IntakeWriter, *, clock: Callable[[], float] = time.time) -> None:
        self.writer = writer
        self.clock = clock

    async def submit(self, job: LoopJob, workflow: Workflow) -> Stored:
        """Store the job and its queued run, as `Ledger.create_job` does; answers after commit.

        Raises:
            IntakeClosedError: the service is stopping.
            LedgerError: as `Ledger.create_job`.
        """
        if job.workflow != workflow.name:
            raise LedgerError(f"job names workflow {job.workflow!r}, given {workflow.name!r}")
        prepared, stored = prepare_job(NewJob(job=job, workflow=workflow), self.clock())
        existing: Existing | None = await self.writer.store("jobs", prepared)
        return result(stored, existing)


class DeliveryIntake:
    """Stores webhook deliveries, many to a transaction, through `writer`."""

    def __init__(self, writer: IntakeWriter) -> None:
        self.writer = writer

    async def store(self, delivery: NewDelivery) -> bool:
        """Whether the delivery is new (`DeliveryStore.record_many`); answers after commit.

        Raises:
            IntakeClosedError: the service is stopping.
            StorageError: the database failed.
        """
        fresh: bool = await self.writer.store("deliveries", delivery)
        return fresh
