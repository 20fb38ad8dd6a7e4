"""Queue transitions on SQLite and PostgreSQL: one winner per claim, key and recovery."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

from app.ledger import Ledger
from app.run_queue import Claim, RunQueue, RunStateError
from loops.brakes import Brakes
from loops.jobs import LoopJob
from loops.workflow_files import parse_workflow

WORKFLOW = parse_workflow(
    "---\nname: quick\nexit: {checks: ['true']}\n---\n{{ instruction }}\n", "quick.md"
)
HERE = Claim(owner="here", pid=1, host="box")


@pytest.fixture
def queue(db_url: str) -> Iterator[RunQueue]:
    with Ledger(db_url) as ledger:
        ledger.migrate()
        yield RunQueue(ledger)


def submit(queue: RunQueue, key: str | None = None, text: str = "x") -> str:
    job = LoopJob(workflow="quick", source="api", instruction=text, concurrency_key=key)
    return queue.ledger.create_job(job, workflow=WORKFLOW)[1].id


def race(n: int, attempt: Callable[[int], bool]) -> list[bool]:
    barrier = threading.Barrier(n)
    results: list[bool] = [False] * n

    def one(i: int) -> None:
        barrier.wait()
        results[i] = attempt(i)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_a_run_is_claimed_by_exactly_one_of_many_racers(db_url: str, queue: RunQueue) -> None:
    run_id = submit(queue)
    ledgers = [Ledger(db_url) for _ in range(8)]
    try:
        wins = race(
            8,
            lambda i: RunQueue(ledgers[i]).claim(
                run_id, Claim(owner=f"p{i}", pid=i + 10, host="box")
            ),
        )
    finally:
        for ledger in ledgers:
            ledger.close()
    assert wins.count(True) == 1
    run = queue.ledger.get_run(run_id)
    assert run is not None
    assert (run.status, run.attempts, run.owner) == ("running", 1, f"p{wins.index(True)}")


def test_only_one_run_per_concurrency_key_can_be_running(db_url: str, queue: RunQueue) -> None:
    ids = [submit(queue, key="repo:o/r#7") for _ in range(6)]
    ledgers = [Ledger(db_url) for _ in ids]
    try:
        wins = race(len(ids), lambda i: RunQueue(ledgers[i]).claim(ids[i], HERE))
    finally:
        for ledger in ledgers:
            ledger.close()
    assert wins.count(True) == 1
    assert queue.busy_keys() == {"repo:o/r#7"}
    other = submit(queue, key="repo:o/r#8")
    assert queue.claim(other, HERE)


def test_queued_runs_come_in_arrival_order_skipping_busy_keys(queue: RunQueue) -> None:
    first = submit(queue, key="a")
    second = submit(queue, key="b")
    third = submit(queue)
    assert [r.id for r in queue.next_queued(limit=10)] == [first, second, third]
    assert [r.id for r in queue.next_queued(limit=10, skip_keys={"a"})] == [second, third]


def test_claim_next_takes_runs_in_arrival_order_and_one_per_key(queue: RunQueue) -> None:
    elsewhere = Claim(owner="there", pid=2, host="far")
    running_c = submit(queue, key="c")
    assert queue.claim(running_c, elsewhere)
    a1, free1, a2, b1, free2, c1 = (submit(queue, key=k) for k in ("a", None, "a", "b", None, "c"))

    claimed = queue.claim_next(HERE, limit=10, skip_keys={"b"})

    assert [r.id for r in claimed] == [a1, free1, free2]  # a2 waits for a1; c runs elsewhere
    assert claimed == [queue.ledger.get_run(r.id) for r in claimed]
    assert {(r.status, r.owner, r.pid, r.attempts) for r in claimed} == {("running", "here", 1, 1)}
    assert all(r.started_at is not None and r.heartbeat_at is not None for r in claimed)
    assert [r.id for r in queue.claim_next(HERE, limit=10)] == [b1]
    assert {r.id for r in queue.next_queued(limit=10)} == {a2, c1}


def test_claim_next_claims_at_most_its_limit(queue: RunQueue) -> None:
    ids = [submit(queue) for _ in range(3)]
    assert [r.id for r in queue.claim_next(HERE, limit=2)] == ids[:2]
    assert [r.id for r in queue.next_queued(limit=10)] == ids[2:]


def test_a_stale_run_is_recovered_by_one_process_only(db_url: str, queue: RunQueue) -> None:
    run_id = submit(queue)
    assert queue.claim(run_id, Claim(owner="dead", pid=999_999, host="box"))
    ledgers = [Ledger(db_url) for _ in range(6)]
    try:
        recovered = race(
            6,
            lambda i: bool(
                RunQueue(ledgers[i]).recover_stale(
                    stale_before=0, host="box", alive=lambda pid: False
                )
            ),
        )
    finally:
        for ledger in ledgers:
            ledger.close()
    assert recovered.count(True) == 1
    run = queue.ledger.get_run(run_id)
    assert run is not None
    assert (run.status, run.owner) == ("queued", None)


def test_a_live_run_with_a_fresh_heartbeat_is_left_alone(queue: RunQueue) -> None:
    run_id = submit(queue)
    assert queue.claim(run_id, Claim(owner="alive", pid=4242, host="other-host"))
    assert queue.recover_stale(stale_before=0, host="box", alive=lambda pid: True) == []


def test_cancel_a_queued_run_at_once_and_flag_a_running_one(queue: RunQueue) -> None:
    queued, running = submit(queue), submit(queue)
    assert queue.claim(running, HERE)
    assert queue.request_cancel(queued) == "cancelled"
    assert queue.request_cancel(running) == "running"
    assert queue.cancel_requested([queued, running]) == {running}
    with pytest.raises(RunStateError, match="is cancelled; it cannot cancel"):
        queue.request_cancel(queued)


def test_resume_extends_brakes_and_refuses_a_passed_run(queue: RunQueue) -> None:
    run_id = submit(queue)
    assert queue.claim(run_id, HERE)
    queue.ledger.finish_run(run_id, status="braked", reason="max_turns", brake="max_turns")
    resumed = queue.resume(run_id, brakes=Brakes(max_turns=9))
    assert (resumed.status, resumed.brakes.max_turns) == ("queued", 9)
    assert queue.claim(run_id, HERE)
    queue.ledger.finish_run(run_id, status="passed")
    with pytest.raises(RunStateError, match="is passed"):
        queue.resume(run_id)
