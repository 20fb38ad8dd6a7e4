"""Webhook deliveries in the ledger: the dedupe of redeliveries, and the work still to do.

A delivery is stored before its webhook is answered, keyed by its source and the key the
trigger derives from it (for GitHub, the hook and delivery ids). A second delivery with a known
key is a redelivery: `record` says so, whether the first one was processed or not, also after a
restart. A stored delivery stays pending until `mark_processed` gives it an outcome, so one
stored just before a crash is processed after it.

A processor takes pending deliveries one at a time with `claim`, which leases the delivery
(`not_before`) so that other processes on the same database leave it alone meanwhile; a failed
attempt holds it back until its retry is due (`retry_later`). A lease left by a process that
died expires, and the delivery is claimed again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from app.ledger import ConflictError, Ledger, StorageError
from app.ledger_batch import insert_rows
from app.ledger_schema import deliveries

MAX_OUTCOME_CHARS = 1_000


@dataclass(frozen=True, kw_only=True)
class NewDelivery:
    """A delivery to store; `outcome` stores it as processed already (it asks for nothing)."""

    source: str
    key: str
    event: str
    payload: Mapping[str, object]
    """What its processing will read of the delivery's JSON object."""
    outcome: str | None = None


@dataclass(frozen=True, kw_only=True)
class Delivery:
    """A stored delivery that still waits to be processed.

    Attributes:
        attempts: how many times processing it has failed so far.
    """

    source: str
    key: str
    event: str
    payload: Mapping[str, object]
    received_at: float
    attempts: int


class DeliveryStore:
    """The `deliveries` table. Safe to share between threads; every call is one transaction."""

    def __init__(self, ledger: Ledger, *, clock: Callable[[], float] = time.time) -> None:
        self.ledger = ledger
        self.clock = clock

    def record(
        self,
        source: str,
        key: str,
        event: str,
        payload: Mapping[str, object],
        *,
        outcome: str | None = None,
    ) -> bool:
        """Store a delivery; False when its key is known already (a redelivery).

        Args:
            outcome: stores it as processed at once, with this outcome (a delivery that asks
                for nothing); else it is pending.

        Raises:
            StorageError: the database failed; nothing was stored.
        """
        item = NewDelivery(source=source, key=key, event=event, payload=payload, outcome=outcome)
        return self.record_many([item])[0]

    def record_many(self, items: Sequence[NewDelivery]) -> list[bool]:
        """Store deliveries in one transaction; for each, in order, whether it was new. A key
        repeated within `items` is stored once, and its later copies are redeliveries.

        Raises:
            StorageError: the database failed; nothing was stored.
        """
        if not items:
            return []
        for _attempt in range(3):
            try:
                with self.ledger.transaction(write=True) as conn:
                    return self._insert_new(conn, items)
            except ConflictError:
                # Another process stored one of the keys between our look-up and our insert
                # (PostgreSQL; SQLite's write lock covers both). The retry's look-up finds it.
                continue
        raise StorageError(f"could not store {len(items)} deliveries: conflicting writers")

    def _insert_new(self, conn: Connection, items: Sequence[NewDelivery]) -> list[bool]:
        known: set[tuple[str, str]] = set()
        for source in {item.source for item in items}:
            keys = [item.key for item in items if item.source == source]
            found = conn.execute(_KNOWN, {"source": source, "keys": keys}).scalars()
            known.update((source, key) for key in found)
        now = self.clock()
        rows: list[dict[str, Any]] = []
        fresh: list[bool] = []
        for item in items:
            ident = (item.source, item.key)
            fresh.append(ident not in known)
            if ident in known:
                continue
            known.add(ident)
            rows.append(
                {
                    "source": item.source,
                    "key": item.key,
                    "event": item.event,
                    "payload": dict(item.payload),
                    "received_at": now,
                    "processed_at": None if item.outcome is None else now,
                    "outcome": _clip(item.outcome or ""),
                    "attempts": 0,
                    "not_before": None,
                }
            )
        if rows:
            insert_rows(conn, deliveries, rows)
        return fresh

    def pending(self, source: str, *, limit: int = 50) -> list[Delivery]:
        """Deliveries not processed yet, oldest first, leased or not."""
        query = (
            sa.select(deliveries)
            .where(deliveries.c.source == source, deliveries.c.processed_at.is_(None))
            .order_by(deliveries.c.received_at, deliveries.c.key)
            .limit(limit)
        )
        with self.ledger.transaction(write=False) as conn:
            rows = conn.execute(query).mappings().all()
        return [_delivery(row) for row in rows]

    def mark_processed(self, source: str, key: str, outcome: str) -> bool:
        """Record what came of a delivery; its payload is no longer needed and is dropped.

        Returns:
            whether it was still pending (False: another process got there first).
        """
        values = {"processed_at": self.clock(), "outcome": _clip(outcome), "payload": {}}
        query = (
            sa.update(deliveries)
            .where(
                deliveries.c.source == source,
                deliveries.c.key == key,
                deliveries.c.processed_at.is_(None),
            )
            .values(**values)
        )
        with self.ledger.transaction(write=True) as conn:
            return conn.execute(query).rowcount == 1

    def claim(self, source: str, *, lease_seconds: float) -> Delivery | None:
        """The oldest pending delivery that is due, leased to the caller for `lease_seconds`."""
        now = self.clock()
        due = sa.and_(
            deliveries.c.source == source,
            deliveries.c.processed_at.is_(None),
            sa.or_(deliveries.c.not_before.is_(None), deliveries.c.not_before <= now),
        )
        oldest = (
            sa.select(deliveries.c.key)
            .where(due)
            .order_by(deliveries.c.received_at, deliveries.c.key)
            .limit(1)
            .scalar_subquery()
        )
        # `due` is repeated on the row itself: of two processes that chose the same delivery,
        # the second finds it leased once the first commits, and changes nothing.
        query = (
            sa.update(deliveries)
            .where(due, deliveries.c.key == oldest)
            .values(not_before=now + lease_seconds)
            .returning(*deliveries.c)
        )
        with self.ledger.transaction(write=True) as conn:
            row = conn.execute(query).mappings().first()
        return None if row is None else _delivery(row)

    def retry_later(self, source: str, key: str, error: str, *, delay: float) -> int:
        """Count a failed attempt and hold the delivery back for `delay` seconds.

        Returns:
            the failed attempts so far.
        """
        query = (
            sa.update(deliveries)
            .where(deliveries.c.source == source, deliveries.c.key == key)
            .values(
                attempts=deliveries.c.attempts + 1,
                not_before=self.clock() + delay,
                outcome=_clip(f"retrying: {error}"),
            )
            .returning(deliveries.c.attempts)
        )
        with self.ledger.transaction(write=True) as conn:
            attempts = conn.execute(query).scalar_one_or_none()
        return int(attempts or 0)

    def outcome(self, source: str, key: str) -> tuple[float | None, str] | None:
        """When a delivery was processed (None: not yet) and its outcome; None if unknown."""
        query = sa.select(deliveries.c.processed_at, deliveries.c.outcome).where(
            deliveries.c.source == source, deliveries.c.key == key
        )
        with self.ledger.transaction(write=False) as conn:
            row = conn.execute(query).first()
        return None if row is None else (row[0], str(row[1]))


_KNOWN = sa.select(deliveries.c.key).where(
    deliveries.c.source == sa.bindparam("source"),
    deliveries.c.key.in_(sa.bindparam("keys", expanding=True)),
)


def _delivery(row: Mapping[Any, Any]) -> Delivery:
    return Delivery(
        source=row["source"],
        key=row["key"],
        event=row["event"],
        payload=dict(row["payload"] or {}),
        received_at=row["received_at"],
        attempts=row["attempts"],
    )


def _clip(text: str) -> str:
    return text if len(text) <= MAX_OUTCOME_CHARS else text[: MAX_OUTCOME_CHARS - 1] + "…"
