"""The ledger on a real SQLite file and on a real PostgreSQL server (see tests/conftest.py)."""

from __future__ import annotations

import dataclasses
import itertools
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

import app.ledger_batch
from app.ledger import (
    AmbiguousRunError,
    DuplicateTurnError,
    Ledger,
    LedgerError,
    UnknownRunError,
    brakes_from_dict,
    brakes_to_dict,
)
from app.ledger_rows import (
    tool_calls_from_json,
    tool_calls_to_json,
    verdict_from_json,
    verdict_to_json,
)
from app.ledger_schema import metadata
from app.run_queue import Claim, RunQueue
from loops.brakes import Brakes
from loops.checking import CheckResult, Verdict
from loops.jobs import LoopJob
from loops.records import ToolCallRecord, TurnRecord
from loops.usage import Usage
from loops.workflows import Workflow

T = TypeVar("T")
WORKFLOW_TEXT = "---\nname: fix-tests\nbrakes: {max_turns: 4}\n---\n{{ instruction }}\n"
WORKFLOW = Workflow(
    name="fix-tests",
    template="{{ instruction }}\n",
    source=WORKFLOW_TEXT,
    path="workflows/fix-tests.md",
    brakes=Brakes(max_turns=4, max_cost_usd=1.5),
)


class Clock:
    """Unix time that moves only when told to."""

    def __init__(self, start: float = 1_700_000_000.25) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float = 1.0) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ledger(db_url: str, clock: Clock) -> Iterator[Ledger]:
    with Ledger(db_url, clock=clock) as opened:
        opened.migrate()
        yield opened


def job(**changes: object) -> LoopJob:
    base = LoopJob(
        workflow="fix-tests",
        source="github",
        instruction="make the tests pass",
        concurrency_key="octo/repo#7",
        repo="octo/repo",
        pr=7,
        requested_by="mona",
        model="openai/gpt-4.1-mini",
        reply={"comment_url": "https://example.test/c/1"},
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def turn(run_id: str, number: int, **changes: object) -> TurnRecord:
    base = TurnRecord(
        run_id=run_id,
        number=number,
        maker_summary=f"turn {number} done",
        tool_calls=(
            ToolCallRecord(name="run", arguments='{"command": "pytest"}', result="1 failed"),
            ToolCallRecord(
                name="read_file", arguments='{"path": "x"}', result="nope", is_error=True
            ),
        ),
        verdict=Verdict(
            passed=False,
            results=(
                CheckResult(name="pytest -q", passed=False, findings="1 failed", exit_code=1),
                CheckResult(name="judge", passed=True, score=0.9, duration_s=1.5),
            ),
        ),
        usage=Usage(input_tokens=1000, output_tokens=200, cost_usd=0.0125, model_calls=3),
        steps=3,
        started_at=1_700_000_100.5,
        ended_at=1_700_000_130.75,
        elapsed_s=30.25 * number,
        consecutive_passes=0,
        findings="## pytest -q failed\n1 failed",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def run_in_threads(count: int, work: Callable[[], T]) -> list[T]:
    """Run `work` in `count` threads released at once; re-raise the first failure."""
    barrier = threading.Barrier(count)
    results: list[T] = []
    errors: list[BaseException] = []

    def target() -> None:
        barrier.wait()
        try:
            results.append(work())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=target) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


# --- migrations -----------------------------------------------------------------------------


def test_migrate_is_idempotent_and_matches_the_metadata(db_url: str) -> None:
    with Ledger(db_url) as ledger:
        ledger.migrate()
        ledger.migrate()
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn)
            assert context.get_current_revision() == "0004"
            assert compare_metadata(context, metadata) == []
            inspector = sa.inspect(conn)
            assert {"jobs", "runs", "turns"} <= set(inspector.get_table_names())
            # compare_metadata does not look at constraint names; these are fixed by convention.
            checks = [c["name"] for c in inspector.get_check_constraints("runs")]
            uniques = [c["name"] for c in inspector.get_unique_constraints("jobs")]
            assert (checks, uniques) == (["ck_runs_status"], ["uq_jobs_idempotency_key"])
    finally:
        engine.dispose()


def test_migrate_from_two_threads_at_once(db_url: str) -> None:
    def migrate() -> None:
        with Ledger(db_url) as ledger:
            ledger.migrate()

    run_in_threads(2, migrate)
    with Ledger(db_url) as ledger:
        assert ledger.create_job(job(), workflow=WORKFLOW)[2]


def test_migrate_from_three_processes_at_once(db_url: str) -> None:
    code = "import sys; from app.ledger import Ledger; Ledger(sys.argv[1]).migrate()"
    procs = [subprocess.Popen([sys.executable, "-c", code, db_url]) for _ in range(3)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0]


def test_sqlite_file_gets_its_directory_and_write_ahead_log(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "ledger.db"
    with Ledger(f"sqlite:///{path}") as ledger:
        ledger.migrate()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_a_bad_url_is_a_ledger_error() -> None:
    with pytest.raises(LedgerError, match="cannot open the ledger database"):
        Ledger("nosuchdialect://x/y")


# --- jobs -----------------------------------------------------------------------------------


def test_create_job_stores_the_job_and_one_queued_run(ledger: Ledger, clock: Clock) -> None:
    original = job(idempotency_key="github:1:abc")
    stored, run, created = ledger.create_job(original, workflow=WORKFLOW)

    assert created
    assert stored.to_job() == original
    assert stored.workflow_source == WORKFLOW_TEXT
    assert stored.workflow_path == "workflows/fix-tests.md"
    assert stored.created_at == run.created_at == clock.now
    assert ledger.get_job(stored.id) == stored
    assert (run.job_id, run.status, run.workflow, run.source) == (
        stored.id,
        "queued",
        "fix-tests",
        "github",
    )
    assert run.brakes == WORKFLOW.brakes
    assert run.usage == Usage()
    assert (run.attempts, run.pid, run.extra) == (0, None, {})
    assert ledger.get_run(run.id) == run


def test_create_job_freezes_the_given_brakes(ledger: Ledger) -> None:
    brakes = Brakes(max_turns=2, max_cost_usd=None, max_wall_seconds=60.0)
    _, run, _ = ledger.create_job(job(), workflow=WORKFLOW, brakes=brakes)
    assert ledger.get_run(run.id) == run
    assert run.brakes == brakes


def test_an_idempotency_key_seen_before_returns_the_same_job_and_run(ledger: Ledger) -> None:
    first_job, first_run, created = ledger.create_job(job(idempotency_key="k1"), workflow=WORKFLOW)
    again_job, again_run, again = ledger.create_job(
        job(idempotency_key="k1", instruction="different text"), workflow=WORKFLOW
    )
    other_job, _, other = ledger.create_job(job(idempotency_key="k2"), workflow=WORKFLOW)

    assert (created, again, other) == (True, False, True)
    assert (again_job, again_run) == (first_job, first_run)
    assert other_job.id != first_job.id
    assert len(ledger.list_runs()[0]) == 2


def test_jobs_without_a_key_are_always_new(ledger: Ledger) -> None:
    ids = {ledger.create_job(job(), workflow=WORKFLOW)[0].id for _ in range(3)}
    assert len(ids) == 3


def test_a_job_must_name_the_workflow_it_comes_with(ledger: Ledger) -> None:
    with pytest.raises(LedgerError, match="job names workflow 'other'"):
        ledger.create_job(job(workflow="other"), workflow=WORKFLOW)


def test_racers_with_one_key_make_one_job_and_one_run(db_url: str) -> None:
    with Ledger(db_url) as setup:
        setup.migrate()
    # Each racer has its own engine, as separate processes would; PostgreSQL's default
    # max_connections (100) bounds how many can connect at once there.
    racers = 100 if db_url.startswith("sqlite") else 40

    def create() -> tuple[str, str, bool]:
        with Ledger(db_url) as ledger:
            stored, run, created = ledger.create_job(
                job(idempotency_key="schedule:fix-tests:2025-01-06T03:00Z"), workflow=WORKFLOW
            )
            return stored.id, run.id, created

    results = run_in_threads(racers, create)

    assert len(results) == racers
    assert len({r[:2] for r in results}) == 1
    assert sum(1 for r in results if r[2]) == 1
    with Ledger(db_url) as ledger:
        assert len(ledger.list_runs(limit=500)[0]) == 1


# --- listing and finding --------------------------------------------------------------------


def test_list_runs_newest_first_with_filters(ledger: Ledger, clock: Clock) -> None:
    made = []
    for workflow, source in [("fix-tests", "github"), ("fix-tests", "slack"), ("lint", "cron")]:
        flow = dataclasses.replace(WORKFLOW, name=workflow)
        made.append(ledger.create_job(job(workflow=workflow, source=source), workflow=flow)[1])
        clock.advance()
    ledger.finish_run(made[1].id, status="passed")

    def ids(**filters: str) -> list[str]:
        runs, cursor = ledger.list_runs(**filters)  # type: ignore[arg-type]
        assert cursor is None
        return [r.id for r in runs]

    assert ids() == [made[2].id, made[1].id, made[0].id]
    assert ids(workflow="fix-tests") == [made[1].id, made[0].id]
    assert ids(source="cron") == [made[2].id]
    assert ids(status="queued") == [made[2].id, made[0].id]
    assert ids(status="passed", source="slack") == [made[1].id]
    assert ids(status="running") == []


def test_list_runs_pages_through_everything_once(ledger: Ledger, clock: Clock) -> None:
    # Several runs share a created_at, so the cursor must break ties by id.
    for i in range(11):
        ledger.create_job(job(), workflow=WORKFLOW)
        if i % 3 == 0:
            clock.advance(0.001)
    everything, _ = ledger.list_runs(limit=100)
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        page, cursor = ledger.list_runs(limit=4, cursor=cursor)
        pages.append([r.id for r in page])
        if cursor is None:
            break

    assert [len(p) for p in pages] == [4, 4, 3]
    assert [i for p in pages for i in p] == [r.id for r in everything]
    assert everything == sorted(everything, key=lambda r: (r.created_at, r.id), reverse=True)


def test_list_runs_refuses_a_cursor_it_did_not_make(ledger: Ledger) -> None:
    for bad in ("garbage!", "bm90IGpzb24", "WzEsIDJd"):  # not base64, not JSON, [1, 2]
        with pytest.raises(LedgerError, match="invalid cursor"):
            ledger.list_runs(cursor=bad)
    with pytest.raises(LedgerError, match="limit must be at least 1"):
        ledger.list_runs(limit=0)


def test_find_run_by_id_or_unique_prefix(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = iter(["job00001", "abcd1111", "job00002", "abcd2222", "job00003", "abef3333"])
    monkeypatch.setattr(app.ledger_batch, "new_id", lambda: next(ids))
    for _ in range(3):
        ledger.create_job(job(), workflow=WORKFLOW)

    def found(ref: str) -> str | None:
        run = ledger.find_run(ref)
        return None if run is None else run.id

    assert found("abcd1111") == "abcd1111"
    assert found("abcd2") == "abcd2222"
    assert found("abef") == "abef3333"
    assert found("abe") is None  # too short to be taken as a prefix
    assert found("zzzz") is None
    assert found("job00001") is None  # a job id is not a run id
    with pytest.raises(AmbiguousRunError, match="'abcd' matches 2 runs") as info:
        ledger.find_run("abcd")
    assert set(info.value.candidates) == {"abcd1111", "abcd2222"}


# --- turns ----------------------------------------------------------------------------------


async def test_turns_round_trip_and_add_up_on_the_run(ledger: Ledger, db_url: str) -> None:
    _, run, _ = ledger.create_job(job(), workflow=WORKFLOW)
    first = turn(run.id, 1)
    second = turn(
        run.id,
        2,
        verdict=Verdict(passed=True, results=(CheckResult(name="pytest -q", passed=True),)),
        usage=Usage(input_tokens=500, output_tokens=50, cost_usd=0.5, model_calls=1, tool_calls=4),
        consecutive_passes=1,
        findings="",
    )
    cut_short = turn(run.id, 3, verdict=None, tool_calls=(), interrupted="max_cost_usd")

    for record in (first, second, cut_short):
        await ledger.turn_completed(record)

    with Ledger(db_url) as reopened:
        assert reopened.turns(run.id) == [first, second, cut_short]
        totals = reopened.get_run(run.id)
    assert totals is not None
    assert totals.usage == Usage(
        input_tokens=2500,
        output_tokens=450,
        cost_usd=pytest.approx(0.525),  # type: ignore[arg-type]
        model_calls=7,
        tool_calls=4,
    )
    assert (totals.turns_done, totals.elapsed_s, totals.consecutive_passes) == (3, 90.75, 0)
    assert totals.last_findings == cut_short.findings


async def test_a_turn_is_never_recorded_twice(ledger: Ledger) -> None:
    _, run, _ = ledger.create_job(job(), workflow=WORKFLOW)
    await ledger.turn_completed(turn(run.id, 1))

    with pytest.raises(DuplicateTurnError, match=rf"run '{run.id}' already has turn 1"):
        await ledger.turn_completed(turn(run.id, 1, maker_summary="again"))

    after = ledger.get_run(run.id)
    assert after is not None
    assert after.usage == turn(run.id, 1).usage  # the rejected turn added nothing
    assert [t.maker_summary for t in ledger.turns(run.id)] == ["turn 1 done"]


async def test_a_turn_of_an_unknown_run_is_refused(ledger: Ledger) -> None:
    with pytest.raises(UnknownRunError, match="no run 'nope'"):
        await ledger.turn_completed(turn("nope", 1))


def test_turn_codecs_ignore_unknown_keys_and_fill_in_missing_ones() -> None:
    verdict = Verdict(passed=True, results=(CheckResult(name="a", passed=True, score=1.0),))
    calls = (ToolCallRecord(name="note", arguments="{}", result="ok", duration_s=0.5),)
    assert verdict_from_json(verdict_to_json(verdict)) == verdict
    assert verdict_from_json(None) is None
    assert tool_calls_from_json(tool_calls_to_json(calls)) == calls
    assert verdict_from_json(
        {"passed": False, "results": [{"name": "x", "passed": False, "new": 1}]}
    )
    assert tool_calls_from_json([{"name": "run", "arguments": "", "result": "", "later": 2}]) == (
        ToolCallRecord(name="run", arguments="", result=""),
    )


# --- run lifecycle --------------------------------------------------------------------------


def test_claim_heartbeat_and_finish(ledger: Ledger, clock: Clock) -> None:
    _, run, _ = ledger.create_job(job(), workflow=WORKFLOW)
    clock.advance(5)
    assert RunQueue(ledger, clock=clock).claim(run.id, Claim(owner="o", pid=4242, host="box"))
    ledger.set_workdir(run.id, "/srv/ws")
    started = clock.now
    clock.advance(30)
    ledger.heartbeat(run.id)

    running = ledger.get_run(run.id)
    assert running is not None
    assert (running.status, running.pid, running.host, running.workdir) == (
        "running",
        4242,
        "box",
        "/srv/ws",
    )
    assert (running.started_at, running.heartbeat_at, running.attempts) == (
        started,
        clock.now,
        1,
    )

    clock.advance(10)
    ledger.finish_run(
        run.id, status="braked", reason="max_cost_usd of 1.5 reached", brake="max_cost_usd"
    )
    braked = ledger.get_run(run.id)
    assert braked is not None
    assert (braked.status, braked.pid, braked.ended_at, braked.brake) == (
        "braked",
        None,
        clock.now,
        "max_cost_usd",
    )
    assert braked.reason == "max_cost_usd of 1.5 reached"

    ledger.set_status(run.id, "queued")
    clock.advance(100)
    assert RunQueue(ledger, clock=clock).claim(run.id, Claim(owner="o", pid=5151, host="box"))
    resumed = ledger.get_run(run.id)
    assert resumed is not None
    assert resumed.started_at == started  # the first start is kept
    assert (resumed.attempts, resumed.pid, resumed.ended_at, resumed.brake, resumed.reason) == (
        2,
        5151,
        None,
        None,
        "",
    )


def test_set_status_back_to_queued_clears_the_end(ledger: Ledger) -> None:
    _, run, _ = ledger.create_job(job(), workflow=WORKFLOW)
    ledger.finish_run(run.id, status="cancelled", reason="cancelled from the command line")
    ledger.set_status(run.id, "queued")
    queued = ledger.get_run(run.id)
    assert queued is not None
    assert (queued.status, queued.ended_at, queued.active) == ("queued", None, True)


def test_finish_run_needs_an_ending_status(ledger: Ledger) -> None:
    _, run, _ = ledger.create_job(job(), workflow=WORKFLOW)
    with pytest.raises(LedgerError, match="a run cannot finish as 'running'"):
        ledger.finish_run(run.id, status="running")
    with pytest.raises(LedgerError, match="unknown run status 'paused'"):
        ledger.set_status(run.id, "paused")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "update",
    [
        lambda ledger: ledger.heartbeat("nope"),
        lambda ledger: ledger.set_workdir("nope", "/w"),
        lambda ledger: ledger.finish_run("nope", status="passed"),
        lambda ledger: ledger.set_brakes("nope", Brakes()),
        lambda ledger: ledger.set_status("nope", "queued"),
        lambda ledger: ledger.update_extra("nope", comment_id=1),
    ],
)
def test_updates_of_an_unknown_run_are_refused(
    ledger: Ledger, update: Callable[[Ledger], None]
) -> None:
    with pytest.raises(UnknownRunError, match="no run 'nope'"):
        update(ledger)


def test_set_brakes_round_trip(ledger: Ledger) -> None:
    _, run, _ = ledger.create_job(job(), workflow=WORKFLOW)
    extended = run.brakes.extended(turns=3, cost_usd=1.0, tokens=1000, seconds=60)
    ledger.set_brakes(run.id, extended)
    after = ledger.get_run(run.id)
    assert after is not None
    assert after.brakes == extended
    assert after.brakes.max_turns == 7


def test_brakes_from_dict_tolerates_missing_and_unknown_keys() -> None:
    brakes = Brakes(max_turns=9, max_input_tokens=10, max_cost_usd=None)
    assert brakes_from_dict(brakes_to_dict(brakes)) == brakes
    assert brakes_from_dict({"max_turns": 2, "max_coffee": 3}) == Brakes(max_turns=2)
    assert brakes_from_dict(None) == Brakes()


def test_update_extra_merges(ledger: Ledger) -> None:
    _, run, _ = ledger.create_job(job(), workflow=WORKFLOW)
    ledger.update_extra(run.id, progress_comment_id=991, thread_ts="1.2")
    ledger.update_extra(run.id, thread_ts="3.4", trace_url=None)
    after = ledger.get_run(run.id)
    assert after is not None
    assert after.extra == {"progress_comment_id": 991, "thread_ts": "3.4", "trace_url": None}


def test_update_extra_from_many_threads_loses_nothing(db_url: str) -> None:
    with Ledger(db_url) as ledger:
        ledger.migrate()
        _, run, _ = ledger.create_job(job(), workflow=WORKFLOW)
        counter = itertools.count()

        def add() -> None:
            ledger.update_extra(run.id, **{f"k{next(counter)}": True})

        run_in_threads(10, add)
        after = ledger.get_run(run.id)
    assert after is not None
    assert len(after.extra) == 10
