"""The ledger's first schema: jobs, runs and turns.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None

_STATUSES = ("queued", "running", "passed", "braked", "stuck", "cancelled", "errored")


def _json() -> sa.JSON:
    return sa.JSON(none_as_null=True)


def _count(name: str) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger, nullable=False, server_default="0")


def _create_jobs() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("idempotency_key", sa.Text, nullable=True),
        sa.Column("workflow", sa.Text, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("instruction", sa.Text, nullable=False, server_default=""),
        sa.Column("workdir", sa.Text, nullable=True),
        sa.Column("repo", sa.Text, nullable=True),
        sa.Column("pr", sa.Integer, nullable=True),
        sa.Column("requested_by", sa.Text, nullable=True),
        sa.Column("model", sa.Text, nullable=True),
        sa.Column("reply", _json(), nullable=False),
        sa.Column("concurrency_key", sa.Text, nullable=True),
        sa.Column("workflow_source", sa.Text, nullable=False),
        sa.Column("workflow_path", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_jobs_idempotency_key")),
    )
    op.create_index(op.f("ix_jobs_concurrency_key"), "jobs", ["concurrency_key"])


def _create_runs() -> None:
    statuses = ", ".join(f"'{s}'" for s in _STATUSES)
    op.create_table(
        "runs",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("job_id", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("workflow", sa.Text, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("started_at", sa.Float, nullable=True),
        sa.Column("ended_at", sa.Float, nullable=True),
        sa.Column("pid", sa.Integer, nullable=True),
        sa.Column("host", sa.Text, nullable=True),
        sa.Column("heartbeat_at", sa.Float, nullable=True),
        _count("turns_done"),
        _count("input_tokens"),
        _count("output_tokens"),
        sa.Column("cost_usd", sa.Float, nullable=False, server_default="0"),
        _count("model_calls"),
        _count("tool_calls"),
        sa.Column("elapsed_s", sa.Float, nullable=False, server_default="0"),
        _count("consecutive_passes"),
        sa.Column("last_findings", sa.Text, nullable=False, server_default=""),
        sa.Column("brakes", _json(), nullable=False),
        sa.Column("brake", sa.Text, nullable=True),
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
        sa.Column("workdir", sa.Text, nullable=True),
        _count("attempts"),
        sa.Column("extra", _json(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_runs_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.CheckConstraint(f"status IN ({statuses})", name=op.f("ck_runs_status")),
    )
    op.create_index(op.f("ix_runs_created_at_id"), "runs", ["created_at", "id"])
    op.create_index(op.f("ix_runs_status_created_at_id"), "runs", ["status", "created_at", "id"])
    op.create_index(op.f("ix_runs_job_id"), "runs", ["job_id"])


def _create_turns() -> None:
    op.create_table(
        "turns",
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("number", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("maker_summary", sa.Text, nullable=False),
        sa.Column("tool_calls", _json(), nullable=False),
        sa.Column("verdict", _json(), nullable=True),
        sa.Column("passed", sa.Boolean, nullable=True),
        sa.Column("findings", sa.Text, nullable=False, server_default=""),
        _count("input_tokens"),
        _count("output_tokens"),
        sa.Column("cost_usd", sa.Float, nullable=False, server_default="0"),
        _count("model_calls"),
        _count("tool_call_count"),
        _count("steps"),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("ended_at", sa.Float, nullable=False),
        sa.Column("elapsed_s", sa.Float, nullable=False, server_default="0"),
        _count("consecutive_passes"),
        sa.Column("interrupted", sa.Text, nullable=True),
        # The primary key is what makes recording a turn twice impossible.
        sa.PrimaryKeyConstraint("run_id", "number", name=op.f("pk_turns")),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_turns_run_id_runs"), ondelete="CASCADE"
        ),
    )


def upgrade() -> None:
    _create_jobs()
    _create_runs()
    _create_turns()


def downgrade() -> None:
    op.drop_table("turns")
    op.drop_table("runs")
    op.drop_table("jobs")
