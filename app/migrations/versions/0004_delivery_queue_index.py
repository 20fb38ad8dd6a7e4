"""Deliveries: an index that serves the processor's "oldest due pending delivery" directly.

The old index on `(processed_at, received_at)` left `claim` visiting every pending row, and
with it each row's payload; with a backlog of thousands that took tens of milliseconds a claim,
inside a write transaction. The new one is ordered as `claim` reads and holds `not_before`, so
the first due delivery is found in the index alone.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None


def upgrade() -> None:
    op.drop_index(op.f("ix_deliveries_processed_at_received_at"), table_name="deliveries")
    op.create_index(
        op.f("ix_deliveries_pending"),
        "deliveries",
        ["source", "processed_at", "received_at", "key", "not_before"],
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_deliveries_pending"), table_name="deliveries")
    op.create_index(
        op.f("ix_deliveries_processed_at_received_at"),
        "deliveries",
        ["processed_at", "received_at"],
    )
