"""The deliveries table: dedupe of redeliveries, pending work, leases and retries."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app.deliveries import DeliveryStore, NewDelivery
from app.ledger import Ledger
from loops.testing import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=1_000.0)


@pytest.fixture
def store(db_url: str, clock: FakeClock) -> Iterator[DeliveryStore]:
    with Ledger(db_url) as ledger:
        ledger.migrate()
        yield DeliveryStore(ledger, clock=clock.now)


def test_a_known_key_is_a_redelivery_processed_or_not(store: DeliveryStore) -> None:
    assert store.record("github", "1:a", "issue_comment", {"n": 1}) is True
    assert store.record("github", "1:a", "issue_comment", {"n": 2}) is False
    assert store.record("slack", "1:a", "app_mention", {}) is True  # another source's key space

    store.mark_processed("github", "1:a", "done")

    assert store.record("github", "1:a", "issue_comment", {"n": 3}) is False
    assert store.outcome("github", "1:a") == (store.clock(), "done")


def test_a_batch_stores_each_new_key_once_and_says_which_were_new(store: DeliveryStore) -> None:
    store.record("github", "1:old", "issue_comment", {"n": 0})

    def new(key: str, n: int, outcome: str | None = None) -> NewDelivery:
        return NewDelivery(
            source="github", key=key, event="issue_comment", payload={"n": n}, outcome=outcome
        )

    fresh = store.record_many(
        [new("1:a", 1), new("1:old", 2), new("1:b", 3, "ignored: edited"), new("1:a", 4)]
    )

    assert fresh == [True, False, True, False]
    # Both arrived at the same (fake) time: the key breaks the tie.
    assert [(d.key, d.payload) for d in store.pending("github")] == [
        ("1:a", {"n": 1}),
        ("1:old", {"n": 0}),
    ]
    assert store.outcome("github", "1:b") == (store.clock(), "ignored: edited")
    assert store.record_many([]) == []


def test_claiming_reads_the_pending_index_not_the_payloads(store: DeliveryStore) -> None:
    # The plan SQLite picks for `claim`'s look-up: a search of the pending index, no table scan
    # and no sort (with thousands pending, each claim otherwise read every payload).
    with store.ledger.transaction(write=False) as conn:
        if conn.dialect.name != "sqlite":
            pytest.skip("the plan is SQLite's")
        plan = conn.exec_driver_sql(
            "EXPLAIN QUERY PLAN SELECT key FROM deliveries WHERE source = 'github' "
            "AND processed_at IS NULL AND (not_before IS NULL OR not_before <= 5) "
            "ORDER BY received_at, key LIMIT 1"
        ).all()
    details = " ".join(str(row[-1]) for row in plan)
    assert "USING COVERING INDEX ix_deliveries_pending" in details, details
    assert "TEMP B-TREE" not in details, details


def test_pending_is_oldest_first_and_leaves_out_processed_ones(
    store: DeliveryStore, clock: FakeClock
) -> None:
    store.record("github", "1:b", "issue_comment", {"n": 1})
    clock.advance(1)
    store.record("github", "1:a", "issue_comment", {"n": 2})
    store.record("github", "1:c", "push", {}, outcome="ignored: push")

    pending = store.pending("github")

    assert [(d.key, d.payload) for d in pending] == [("1:b", {"n": 1}), ("1:a", {"n": 2})]
    assert store.outcome("github", "1:c") == (clock.now(), "ignored: push")


def test_a_claim_leases_the_delivery_until_it_is_processed_or_the_lease_ends(
    store: DeliveryStore, clock: FakeClock
) -> None:
    store.record("github", "1:a", "issue_comment", {})
    store.record("github", "1:b", "issue_comment", {})

    first = store.claim("github", lease_seconds=60)
    second = store.claim("github", lease_seconds=60)

    assert (first and first.key, second and second.key) == ("1:a", "1:b")
    assert store.claim("github", lease_seconds=60) is None
    assert store.mark_processed("github", "1:b", "done") is True
    assert store.mark_processed("github", "1:b", "again") is False
    clock.advance(61)
    again = store.claim("github", lease_seconds=60)
    assert again is not None
    assert again.key == "1:a"  # its processor died: the lease ran out


def test_a_failed_attempt_is_counted_and_held_back_until_its_retry(
    store: DeliveryStore, clock: FakeClock
) -> None:
    store.record("github", "1:a", "issue_comment", {})
    assert store.claim("github", lease_seconds=60) is not None

    assert store.retry_later("github", "1:a", "GitHub did not answer", delay=10) == 1

    assert store.claim("github", lease_seconds=60) is None
    clock.advance(10)
    retried = store.claim("github", lease_seconds=60)
    assert retried is not None
    assert retried.attempts == 1
    assert store.outcome("github", "1:a") == (None, "retrying: GitHub did not answer")


def test_processing_drops_the_payload_and_clips_long_outcomes(store: DeliveryStore) -> None:
    store.record("github", "1:a", "issue_comment", {"comment": {"body": "x" * 10_000}})

    store.mark_processed("github", "1:a", "y" * 5_000)

    assert store.pending("github") == []
    outcome = store.outcome("github", "1:a")
    assert outcome is not None
    assert len(outcome[1]) == 1_000
