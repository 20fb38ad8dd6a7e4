"""Webhook deliveries: the dedupe key of each, its payload until processed, and the outcome.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None


def upgrade() -> None:
    op.create_table(
        "deliveries",
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("event", sa.Text, nullable=False),
        sa.Column("payload", sa.JSON(none_as_null=True), nullable=False),
        sa.Column("received_at", sa.Float, nullable=False),
        sa.Column("processed_at", sa.Float, nullable=True),
        sa.Column("outcome", sa.Text, nullable=False, server_default=""),
        sa.Column("attempts", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("not_before", sa.Float, nullable=True),
        sa.PrimaryKeyConstraint("source", "key", name=op.f("pk_deliveries")),
    )
    op.create_index(
        op.f("ix_deliveries_processed_at_received_at"),
        "deliveries",
        ["processed_at", "received_at"],
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_deliveries_processed_at_received_at"), table_name="deliveries")
    op.drop_table("deliveries")
