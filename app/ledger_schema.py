"""The ledger's tables, as SQLAlchemy Core metadata.

The migrations under `app/migrations/versions` create exactly these tables; a test compares the
migrated database with this metadata so the two cannot drift apart. Every type is dialect
neutral (SQLite and PostgreSQL); timestamps are unix seconds as floats, like the engine's own.
"""

from __future__ import annotations

from typing import get_args

import sqlalchemy as sa

from loops.jobs import RunStatus

RUN_STATUSES: tuple[RunStatus, ...] = get_args(RunStatus)
STATUS_CHECK = f"status IN ({', '.join(repr(s) for s in RUN_STATUSES)})"

NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


def _json() -> sa.JSON:
    # Python None is stored as SQL NULL, not as the JSON literal `null`.
    return sa.JSON(none_as_null=True)


def _count(name: str) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger, nullable=False, server_default="0")


def _seconds(name: str, *, nullable: bool = True) -> sa.Column[float]:
    return sa.Column(name, sa.Float, nullable=nullable)


jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("idempotency_key", sa.Text, nullable=True, unique=True),
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
    _seconds("created_at", nullable=False),
    sa.Index("ix_jobs_concurrency_key", "concurrency_key"),
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column(
        "job_id", sa.String(32), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("workflow", sa.Text, nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
    _seconds("created_at", nullable=False),
    _seconds("started_at"),
    _seconds("ended_at"),
    sa.Column("pid", sa.Integer, nullable=True),
    sa.Column("host", sa.Text, nullable=True),
    _seconds("heartbeat_at"),
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
    # Added by 0002: the executor's queue.
    sa.Column("concurrency_key", sa.Text, nullable=True),
    _seconds("queued_at"),
    sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("owner", sa.Text, nullable=True),
    sa.CheckConstraint(STATUS_CHECK, name="status"),
    sa.Index("ix_runs_created_at_id", "created_at", "id"),
    sa.Index("ix_runs_status_created_at_id", "status", "created_at", "id"),
    sa.Index("ix_runs_job_id", "job_id"),
    sa.Index("ix_runs_status_queued_at_id", "status", "queued_at", "id"),
    # At most one running run per concurrency key, whichever process claims it: the database
    # refuses the second claim, so per-key serialization holds across replicas.
    sa.Index(
        "uq_runs_running_concurrency_key",
        "concurrency_key",
        unique=True,
        sqlite_where=sa.text("status = 'running'"),
        postgresql_where=sa.text("status = 'running'"),
    ),
)

turns = sa.Table(
    "turns",
    metadata,
    # The primary key is what makes recording a turn twice impossible.
    sa.Column(
        "run_id",
        sa.String(32),
        sa.ForeignKey("runs.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("number", sa.Integer, primary_key=True, autoincrement=False),
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
    _seconds("started_at", nullable=False),
    _seconds("ended_at", nullable=False),
    sa.Column("elapsed_s", sa.Float, nullable=False, server_default="0"),
    _count("consecutive_passes"),
    sa.Column("interrupted", sa.Text, nullable=True),
)

# Added by 0003: webhook deliveries, kept so a redelivery (also after a restart) is recognised
# and so a delivery stored before a crash is still processed after it.
deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("source", sa.String(16), primary_key=True),
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("event", sa.Text, nullable=False),
    sa.Column("payload", _json(), nullable=False),
    _seconds("received_at", nullable=False),
    _seconds("processed_at"),
    sa.Column("outcome", sa.Text, nullable=False, server_default=""),
    _count("attempts"),
    # Leased until then by the process working on it, or held back until a retry is due.
    _seconds("not_before"),
    # Added by 0004, replacing 0003's: `claim` finds the oldest due pending delivery in it.
    sa.Index("ix_deliveries_pending", "source", "processed_at", "received_at", "key", "not_before"),
)
