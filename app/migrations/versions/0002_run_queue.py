"""The executor's queue: claims, arrival order, cancel requests, one running run per key.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None

_RUNNING = sa.text("status = 'running'")


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("concurrency_key", sa.Text, nullable=True))
        batch.add_column(sa.Column("queued_at", sa.Float, nullable=True))
        batch.add_column(
            sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("owner", sa.Text, nullable=True))
    op.execute(
        "UPDATE runs SET queued_at = created_at, concurrency_key = "
        "(SELECT jobs.concurrency_key FROM jobs WHERE jobs.id = runs.job_id)"
    )
    op.create_index("ix_runs_status_queued_at_id", "runs", ["status", "queued_at", "id"])
    op.create_index(
        "uq_runs_running_concurrency_key",
        "runs",
        ["concurrency_key"],
        unique=True,
        sqlite_where=_RUNNING,
        postgresql_where=_RUNNING,
    )


def downgrade() -> None:
    op.drop_index("uq_runs_running_concurrency_key", table_name="runs")
    op.drop_index("ix_runs_status_queued_at_id", table_name="runs")
    with op.batch_alter_table("runs") as batch:
        for column in ("owner", "cancel_requested", "queued_at", "concurrency_key"):
            batch.drop_column(column)
