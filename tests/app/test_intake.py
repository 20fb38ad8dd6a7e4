"""Group commit at intake on a thread (in-memory ledgers): batches, answers after the commit,
exact keys, stop and failures."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import pytest
import sqlalchemy as sa

from app.deliveries import DeliveryStore
from app.intake import IntakeBatcher, IntakeClosedError
from app.intake_process import ThreadWriter, Writes
from app.ledger import Ledger, LedgerError, StorageError
from app.ledger_batch import Existing, PreparedJob, Stored
from app.ledger_schema import jobs
from loops.jobs import LoopJob
from loops.workflow_files import parse_workflow

WORKFLOW = parse_workflow(
    "---\nname: quick\nexit: {checks: ['true']}\n---\n{{ instruction }}\n", "quick.md"
)


def job(text: str = "go", key: str | None = None) -> LoopJob:
    return LoopJob(workflow="quick", source="api", instruction=text, idempotency_key=key)


class GatedLedger(Ledger):
    """A ledger whose batch writes are recorded, and held at `gate` while it is closed."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.batches: list[int] = []
        self.gate = threading.Event()
        self.gate.set()
        self.fail: Callable[[], None] | None = None

    def store_prepared(self, prepared: Sequence[PreparedJob]) -> list[Existing | None]:
        self.batches.append(len(prepared))
        self.gate.wait(timeout=10)
        if self.fail is not None:
            self.fail()
        return super().store_prepared(prepared)


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'var' / 'ledger.db'}"


@pytest.fixture
async def ledger(url: str) -> AsyncIterator[GatedLedger]:
    with GatedLedger(url) as opened:
        opened.migrate()
        yield opened


@pytest.fixture
async def intake(ledger: GatedLedger) -> AsyncIterator[IntakeBatcher]:
    writer = ThreadWriter(Writes(ledger, DeliveryStore(ledger)))
    writer.start()
    yield IntakeBatcher(writer)
    ledger.gate.set()
    await writer.stop()


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(5):
        while not condition():
            await asyncio.sleep(0.005)


def count(ledger: Ledger) -> int:
    with ledger.transaction(write=False) as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(jobs)).scalar_one())


async def test_submissions_wait_for_their_batch_and_are_answered_only_once_it_committed(
    ledger: GatedLedger, intake: IntakeBatcher, url: str
) -> None:
    reader = Ledger(url)  # its own connections: sees only what was committed

    async def submit(text: str) -> Stored:
        stored = await intake.submit(job(text), WORKFLOW)
        assert reader.get_job(stored[0].id) == stored[0]
        assert reader.get_run(stored[1].id) == stored[1]
        return stored

    ledger.gate.clear()
    first = asyncio.create_task(submit("first"))
    await until(lambda: ledger.batches == [1])
    rest = [asyncio.create_task(submit(f"job {n}")) for n in range(10)]
    await asyncio.sleep(0.05)
    assert not first.done()
    assert not any(task.done() for task in rest)

    ledger.gate.set()
    results = await asyncio.gather(first, *rest)

    assert ledger.batches == [1, 10]  # the ten queued while the first batch was committing
    assert [stored[0].instruction for stored in results] == ["first"] + [
        f"job {n}" for n in range(10)
    ]
    assert all(created for _, _, created in results)
    reader.close()


async def test_keys_stay_exact_within_a_batch_and_against_stored_jobs(
    ledger: GatedLedger, intake: IntakeBatcher
) -> None:
    old = ledger.create_job(job(key="old"), workflow=WORKFLOW)
    ledger.batches.clear()
    ledger.gate.clear()
    blocker = asyncio.create_task(intake.submit(job(), WORKFLOW))
    await until(lambda: len(ledger.batches) == 1)
    same = [asyncio.create_task(intake.submit(job(key="same"), WORKFLOW)) for _ in range(5)]
    again = asyncio.create_task(intake.submit(job(key="old"), WORKFLOW))
    ledger.gate.set()
    await blocker
    results = await asyncio.gather(*same, again)

    assert ledger.batches[1] == 6
    assert [created for _, _, created in results] == [True, False, False, False, False, False]
    assert len({(j.id, r.id) for j, r, _ in results[:5]}) == 1
    assert results[5] == (old[0], old[1], False)
    assert count(ledger) == 3


async def test_stop_stores_what_was_submitted_then_refuses_new_jobs(
    ledger: GatedLedger, intake: IntakeBatcher
) -> None:
    pending = [asyncio.create_task(intake.submit(job(f"job {n}"), WORKFLOW)) for n in range(3)]
    await asyncio.sleep(0)  # queued, not yet written
    await intake.writer.stop()

    assert all(created for _, _, created in await asyncio.gather(*pending))
    assert count(ledger) == 3
    with pytest.raises(IntakeClosedError, match="the service is stopping"):
        await intake.submit(job(), WORKFLOW)


async def test_a_storage_failure_is_every_callers_of_that_batch_and_only_theirs(
    ledger: GatedLedger, intake: IntakeBatcher
) -> None:
    def fail() -> None:
        raise StorageError("database is locked")

    ledger.fail = fail
    failed = await asyncio.gather(
        *(intake.submit(job(), WORKFLOW) for _ in range(3)), return_exceptions=True
    )
    ledger.fail = None
    stored = await intake.submit(job("after"), WORKFLOW)

    assert [str(e) for e in failed] == ["database is locked"] * 3
    assert stored[2]
    assert count(ledger) == 1


async def test_a_caller_that_goes_away_leaves_its_job_stored(
    ledger: GatedLedger, intake: IntakeBatcher
) -> None:
    ledger.gate.clear()
    gone = asyncio.create_task(intake.submit(job("gone"), WORKFLOW))
    await until(lambda: ledger.batches == [1])
    gone.cancel()
    ledger.gate.set()
    stored = await intake.submit(job("next"), WORKFLOW)

    assert gone.cancelled()
    assert stored[2]
    assert count(ledger) == 2


async def test_a_job_must_name_the_workflow_it_comes_with(intake: IntakeBatcher) -> None:
    with pytest.raises(LedgerError, match="job names workflow 'other'"):
        await intake.submit(LoopJob(workflow="other", source="api", instruction="x"), WORKFLOW)
