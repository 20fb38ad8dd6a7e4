"""Batched job inserts and the write lock, on SQLite and PostgreSQL (see tests/app/conftest.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

import app.ledger_batch
from app.ledger import Ledger, LedgerError, NewJob
from app.ledger_engine import write_lock
from app.ledger_schema import jobs, runs
from loops.brakes import Brakes
from loops.jobs import LoopJob
from loops.workflow_files import parse_workflow

WORKFLOW = parse_workflow(
    "---\nname: quick\nbrakes: {max_turns: 2}\nexit: {checks: ['true']}\n---\n{{ instruction }}\n",
    "quick.md",
)


@pytest.fixture
def ledger(db_url: str) -> Iterator[Ledger]:
    with Ledger(db_url) as opened:
        opened.migrate()
        yield opened


def new(
    key: str | None = None,
    instruction: str = "do it",
    brakes: Brakes | None = None,
    run_values: dict[str, object] | None = None,
) -> NewJob:
    job = LoopJob(workflow="quick", source="api", instruction=instruction, idempotency_key=key)
    return NewJob(job=job, workflow=WORKFLOW, brakes=brakes, run_values=run_values or {})


def count(ledger: Ledger, table: sa.Table) -> int:
    with ledger.transaction(write=False) as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def test_a_batch_keeps_idempotency_keys_exact_within_it_and_against_stored_jobs(
    ledger: Ledger,
) -> None:
    stored_job, stored_run, _ = ledger.create_job(new("stored").job, workflow=WORKFLOW)

    results = ledger.create_jobs(
        [new(), new("fresh"), new("stored"), new("fresh", instruction="again"), new()]
    )

    assert [created for _, _, created in results] == [True, True, False, False, True]
    assert results[2][:2] == (stored_job, stored_run)
    assert results[3][:2] == results[1][:2]  # the first request with the key wins
    assert results[3][0].instruction == "do it"
    created = [(job, run) for job, run, made in results if made]
    assert len({job.id for job, _ in created} | {stored_job.id}) == 4
    for job, run in created:
        assert ledger.get_job(job.id) == job
        assert ledger.get_run(run.id) == run
        assert (run.job_id, run.status, run.brakes) == (job.id, "queued", WORKFLOW.brakes)
    assert (count(ledger, jobs), count(ledger, runs)) == (4, 4)


def test_each_job_of_a_batch_gets_its_own_brakes_and_run_values(ledger: Ledger) -> None:
    brakes = Brakes(max_turns=9)
    results = ledger.create_jobs([new(brakes=brakes), new(run_values={"status": "cancelled"})])

    assert [run.brakes for _, run, _ in results] == [brakes, WORKFLOW.brakes]
    assert [run.status for _, run, _ in results] == ["queued", "cancelled"]


def test_a_key_stored_by_another_writer_after_the_lookup_is_found_on_retry(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored_job, stored_run, _ = ledger.create_job(new("raced").job, workflow=WORKFLOW)
    real = app.ledger_batch.stored_by_keys
    lookups: list[int] = []

    def blind_once(conn: sa.Connection, keys: set[str]) -> object:
        # The first lookup misses the key, as if another process had committed it just after.
        lookups.append(len(keys))
        return {} if len(lookups) == 1 else real(conn, keys)

    monkeypatch.setattr(app.ledger_batch, "stored_by_keys", blind_once)
    results = ledger.create_jobs([new("other"), new("raced")])

    assert len(lookups) == 2  # the insert hit the unique key; the whole batch was retried
    assert results[1] == (stored_job, stored_run, False)
    assert results[0][2] is True
    assert (count(ledger, jobs), count(ledger, runs)) == (2, 2)


def test_a_batch_naming_the_wrong_workflow_stores_nothing(ledger: Ledger) -> None:
    wrong = NewJob(job=new().job, workflow=parse_workflow(WORKFLOW.source.replace("quick", "x")))
    assert ledger.create_jobs([]) == []
    with pytest.raises(LedgerError, match="job names workflow 'quick', given 'x'"):
        ledger.create_jobs([new(), wrong])
    assert count(ledger, jobs) == 0


def test_writers_in_one_process_share_one_lock_per_sqlite_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    os.mkdir("var")
    by_path = Ledger(f"sqlite:///{tmp_path / 'var' / 'a.db'}")
    relative = Ledger("sqlite:///var/../var/a.db")
    other = Ledger(f"sqlite:///{tmp_path / 'var' / 'b.db'}")
    memory, other_memory = Ledger("sqlite://"), Ledger("sqlite://")
    postgres = sa.create_engine("postgresql+psycopg://u@127.0.0.1/none")
    try:
        assert by_path._write_lock is relative._write_lock
        assert by_path._write_lock is not other._write_lock
        assert memory._write_lock is not other_memory._write_lock
        with write_lock(postgres) as held:
            assert held is None  # PostgreSQL locks rows: nothing to hold in the process
    finally:
        for ledger in (by_path, relative, other, memory, other_memory):
            ledger.close()
        postgres.dispose()
