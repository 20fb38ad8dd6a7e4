"""The intake writer process: items committed before their answers, exact keys, a writer that
dies, signals it ignores, stopping, and how it reads its input."""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import app.intake_process
from app.deliveries import DeliveryStore, NewDelivery
from app.intake import DeliveryIntake, IntakeBatcher, IntakeClosedError
from app.intake_process import ProcessWriter, ThreadWriter, Writes, _Frames, intake_writer
from app.ledger import Ledger, LedgerError, StorageError
from loops.jobs import LoopJob
from loops.workflow_files import parse_workflow

WORKFLOW = parse_workflow(
    "---\nname: quick\nexit: {checks: ['true']}\n---\n{{ instruction }}\n", "quick.md"
)


def job(text: str = "go", key: str | None = None) -> LoopJob:
    return LoopJob(workflow="quick", source="api", instruction=text, idempotency_key=key)


def delivery(key: str) -> NewDelivery:
    return NewDelivery(source="github", key=key, event="issue_comment", payload={"n": key})


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger(f"sqlite:///{tmp_path / 'var' / 'ledger.db'}") as opened:
        opened.migrate()
        yield opened


@pytest.fixture
async def writer(ledger: Ledger) -> AsyncIterator[ProcessWriter]:
    started = intake_writer(ledger)
    assert isinstance(started, ProcessWriter)
    started.start()
    yield started
    await started.stop()


def database(ledger: Ledger) -> str:
    return ledger.url.removeprefix("sqlite:///")


async def child_pid(writer: ProcessWriter) -> int:
    async with asyncio.timeout(30):
        while writer.pid is None:
            await asyncio.sleep(0.01)
    return writer.pid


async def test_jobs_and_deliveries_are_committed_before_they_are_answered(
    ledger: Ledger, writer: ProcessWriter
) -> None:
    reader = Ledger(ledger.url)  # its own connections: sees only what was committed
    intake, deliveries = IntakeBatcher(writer), DeliveryIntake(writer)
    store = DeliveryStore(reader)

    async def submit(n: int) -> None:
        job_row, run, created = await intake.submit(job(f"job {n}"), WORKFLOW)
        assert created
        assert reader.get_job(job_row.id) == job_row
        assert reader.get_run(run.id) == run

    async def deliver(key: str) -> bool:
        fresh = await deliveries.store(delivery(key))
        assert key in {d.key for d in store.pending("github")}
        return fresh

    done = await asyncio.gather(
        *(submit(n) for n in range(20)), *(deliver(k) for k in ("a", "b", "a"))
    )

    assert done[20:] == [True, True, False]  # the second "a" is a redelivery
    assert [d.payload for d in store.pending("github")] == [{"n": "a"}, {"n": "b"}]
    reader.close()


async def test_keys_stay_exact_across_the_process(ledger: Ledger, writer: ProcessWriter) -> None:
    intake = IntakeBatcher(writer)
    old_job, old_run, _ = ledger.create_job(job(key="old"), workflow=WORKFLOW)

    results = await asyncio.gather(
        *(intake.submit(job(key="same"), WORKFLOW) for _ in range(4)),
        intake.submit(job(key="old"), WORKFLOW),
    )

    assert [created for _, _, created in results] == [True, False, False, False, False]
    assert len({(j.id, r.id) for j, r, _ in results[:4]}) == 1
    assert results[4] == (old_job, old_run, False)


async def test_a_refused_write_fails_its_own_items_only(
    ledger: Ledger, writer: ProcessWriter
) -> None:
    intake, deliveries = IntakeBatcher(writer), DeliveryIntake(writer)
    await intake.submit(job("warm-up"), WORKFLOW)  # the child is up and has its connection
    with sqlite3.connect(database(ledger)) as conn:
        conn.execute("ALTER TABLE runs RENAME TO runs_away")

    refused, fresh = await asyncio.gather(
        intake.submit(job("refused"), WORKFLOW),
        deliveries.store(delivery("kept")),
        return_exceptions=True,
    )

    assert isinstance(refused, StorageError)
    assert "no such table: runs" in str(refused)
    assert fresh is True
    with pytest.raises(LedgerError, match="has no write 'unknown'"):
        await writer.store("unknown", None)


async def test_a_killed_writer_fails_its_callers_and_the_next_item_starts_another(
    ledger: Ledger, writer: ProcessWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    intake = IntakeBatcher(writer)
    await intake.submit(job("warm-up"), WORKFLOW)
    first = await child_pid(writer)
    blocker = sqlite3.connect(database(ledger), isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # the child's insert waits for the write lock
    waiting = asyncio.create_task(intake.submit(job("lost", key="lost"), WORKFLOW))
    await asyncio.sleep(0.3)
    assert not waiting.done()

    os.kill(first, signal.SIGKILL)
    with pytest.raises(StorageError, match=r"the intake writer stopped \(exit code -9\)"):
        await waiting
    blocker.execute("ROLLBACK")
    blocker.close()
    with pytest.raises(StorageError, match="restarting"):
        await intake.submit(job("too soon"), WORKFLOW)  # a crash-looping child is not rushed

    monkeypatch.setattr(app.intake_process, "RESPAWN_SECONDS", 0.0)
    job_row, _run, created = await intake.submit(job("again", key="lost"), WORKFLOW)

    assert created  # the killed child committed nothing: the retry stores the job
    assert job_row.instruction == "again"
    assert await child_pid(writer) != first


async def test_the_writer_ignores_signals_to_its_group_and_stops_with_the_service(
    ledger: Ledger,
) -> None:
    writer = ProcessWriter(ledger.url)
    writer.start()
    intake = IntakeBatcher(writer)
    await intake.submit(job("warm-up"), WORKFLOW)
    pid = await child_pid(writer)
    os.kill(pid, signal.SIGTERM)
    os.kill(pid, signal.SIGINT)
    assert (await intake.submit(job("after the signals"), WORKFLOW))[2]

    pending = [asyncio.create_task(intake.submit(job(f"job {n}"), WORKFLOW)) for n in range(5)]
    await asyncio.sleep(0)  # submitted, not yet sent
    await writer.stop()

    assert all(created for _, _, created in await asyncio.gather(*pending))
    assert writer.exit_code == 0
    with pytest.raises(IntakeClosedError, match="the service is stopping"):
        await intake.submit(job(), WORKFLOW)


async def test_the_database_url_is_not_on_the_childs_command_line(
    ledger: Ledger, writer: ProcessWriter
) -> None:
    await IntakeBatcher(writer).submit(job(), WORKFLOW)

    cmdline = Path(f"/proc/{await child_pid(writer)}/cmdline").read_bytes()

    assert b"app.intake_process" in cmdline
    assert database(ledger).encode() not in cmdline


def test_an_in_memory_ledger_is_written_on_a_thread() -> None:
    with Ledger("sqlite://") as memory:
        assert isinstance(intake_writer(memory), ThreadWriter)


def test_frames_are_read_whole_and_together() -> None:
    read, write = os.pipe()

    def frame(items: list[object]) -> bytes:
        data = pickle.dumps(items)
        return len(data).to_bytes(4, "big") + data

    frames = _Frames(read)
    os.write(write, frame([1, 2]) + frame([3]))
    assert frames.batch() == [1, 2, 3]

    last = frame(["four"])
    os.write(write, last[:5])  # a frame split across reads is waited for
    os.write(write, last[5:] + frame(["five"]))
    assert frames.batch() == ["four", "five"]

    os.close(write)
    assert frames.batch() is None
    os.close(read)


def test_writes_group_items_by_kind_in_order(ledger: Ledger) -> None:
    writes = Writes(ledger, DeliveryStore(ledger))

    outcomes = writes.write(
        [("deliveries", delivery("x")), ("unknown", None), ("deliveries", delivery("x"))]
    )

    assert outcomes[0] == (True, True)
    assert outcomes[2] == (True, False)
    assert outcomes[1][0] is False
    assert isinstance(outcomes[1][1], LedgerError)


async def test_an_item_that_cannot_be_sent_fails_alone(
    ledger: Ledger, writer: ProcessWriter
) -> None:
    with pytest.raises(StorageError, match="cannot hand the items to the intake writer"):
        await writer.store("deliveries", lambda: None)  # no pickle for a lambda

    assert await DeliveryIntake(writer).store(delivery("after")) is True
