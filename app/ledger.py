"""The ledger: jobs, runs and turns in SQL, so loops survive restarts and resume days later.

Any SQLAlchemy URL works; the service defaults to a SQLite file and PostgreSQL is the choice for
several replicas. Every write is one short transaction (see `app.ledger_engine` for how SQLite
is made to serialize writers).

Errors are drawn in `app.ledger_errors` and re-exported here; SQLAlchemy and Alembic exceptions
never leave this module unmapped.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from app.ledger_batch import (
    Existing,
    NewJob,
    PreparedJob,
    Stored,
    insert_jobs,
    insert_prepared,
)
from app.ledger_engine import WRITE_OPTION, alembic_config, create_engine, in_memory, write_lock
from app.ledger_errors import (
    AmbiguousRunError,
    ConflictError,
    DuplicateTurnError,
    LedgerError,
    StorageError,
    UnknownRunError,
)
from app.ledger_rows import (
    JobRow,
    RunRow,
    brakes_from_dict,
    brakes_to_dict,
    decode_cursor,
    encode_cursor,
    job_row,
    run_row,
    turn_record,
    turn_values,
)
from app.ledger_schema import RUN_STATUSES, jobs, runs, turns
from loops.brakes import Brakes
from loops.jobs import ACTIVE_STATUSES, LoopJob, RunStatus
from loops.records import TurnRecord
from loops.workflows import Workflow

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = [
    "AmbiguousRunError",
    "ConflictError",
    "DuplicateTurnError",
    "JobRow",
    "Ledger",
    "LedgerError",
    "NewJob",
    "RunRow",
    "StorageError",
    "UnknownRunError",
    "brakes_from_dict",
    "brakes_to_dict",
]

MIN_PREFIX = 4
"""The shortest id prefix `find_run` resolves."""
MAX_CANDIDATES = 10
TERMINAL_STATUSES: frozenset[RunStatus] = frozenset(RUN_STATUSES) - ACTIVE_STATUSES

_PG_MIGRATION_LOCK = 0x6C6F6F70  # any constant shared by every process migrating this database
# Alembic installs its `context` proxy process-wide, so two threads must never migrate at once.
_MIGRATION_THREAD_LOCK = threading.Lock()


T = TypeVar("T")


class Ledger:
    """The jobs, runs and turns of the service, in any SQLAlchemy database.

    Safe to share between threads; several processes may use one database at once. Call
    `migrate` before first use.

    Args:
        url: a SQLAlchemy URL. For SQLite, the file's directory is created if missing.
        clock: unix time, for timestamps.
    """

    def __init__(self, url: str, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        try:
            self._engine = create_engine(url)
        except SQLAlchemyError as exc:
            raise StorageError(f"cannot open the ledger database: {exc}") from exc
        self._write_lock = write_lock(self._engine)

    def __enter__(self) -> Ledger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._engine.dispose()

    @property
    def url(self) -> str:
        """The database's SQLAlchemy URL, password included."""
        return self._engine.url.render_as_string(hide_password=False)

    @property
    def in_memory(self) -> bool:
        """Whether the database lives in this process only (in-memory SQLite)."""
        return self._engine.dialect.name == "sqlite" and in_memory(self._engine.url)

    def migrate(self) -> None:
        """Bring the schema to the newest revision; a no-op when it is there already.

        Concurrent callers are serialized: by a lock within the process, and by the database
        (SQLite's write lock, a PostgreSQL advisory lock) across processes.
        """
        # Alembic (~0.2 s to import) is loaded by the processes that migrate, not by every one
        # that opens the ledger (the intake writer, most CLI commands).
        from alembic import command
        from alembic.util import CommandError

        config = alembic_config()
        with _MIGRATION_THREAD_LOCK:
            try:
                with self.transaction(write=True) as conn:
                    if conn.dialect.name == "postgresql":
                        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_MIGRATION_LOCK)))
                    config.attributes["connection"] = conn
                    command.upgrade(config, "head")
            except (StorageError, CommandError) as exc:
                if not self._at_head(config):
                    raise StorageError(f"cannot migrate the ledger: {exc}") from exc

    def _at_head(self, config: Config) -> bool:
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory

        heads = set(ScriptDirectory.from_config(config).get_heads())
        with self.transaction(write=False) as conn:
            return set(MigrationContext.configure(conn).get_current_heads()) == heads

    def create_job(
        self,
        job: LoopJob,
        *,
        workflow: Workflow,
        brakes: Brakes | None = None,
        run_values: Mapping[str, object] | None = None,
    ) -> Stored:
        """Store a job and its first, queued run; or find them, if the idempotency key is known.

        `brakes` and `run_values` are as in `NewJob`.

        Returns:
            the job, its first run, and whether they were created by this call.
        """
        request = NewJob(job=job, workflow=workflow, brakes=brakes, run_values=run_values or {})
        return self.create_jobs([request])[0]

    def create_jobs(self, requests: Sequence[NewJob]) -> list[Stored]:
        """Store many jobs in one transaction (one commit); results in the order of `requests`.

        Idempotency keys behave exactly as in `create_job`, within the batch as well: a repeated
        key is stored once, and the later requests get its job and run with `created=False`.
        """
        for request in requests:
            if request.job.workflow != request.workflow.name:
                raise LedgerError(
                    f"job names workflow {request.job.workflow!r}, given {request.workflow.name!r}"
                )
        if not requests:
            return []
        return self._retrying(len(requests), lambda conn: insert_jobs(conn, requests, self._clock))

    def store_prepared(self, prepared: Sequence[PreparedJob]) -> list[Existing | None]:
        """Store jobs prepared by `prepare_job` in one transaction. For each, in order: None if
        it was stored, or the rows stored earlier under its idempotency key (a key repeated
        within `prepared` is stored once, and its later copies get the first one's rows)."""
        if not prepared:
            return []
        return self._retrying(len(prepared), lambda conn: insert_prepared(conn, prepared))

    def _retrying(self, count: int, insert: Callable[[Connection], list[T]]) -> list[T]:
        for _attempt in range(3):
            try:
                with self.transaction(write=True) as conn:
                    return insert(conn)
            except ConflictError:
                # Another process inserted one of the keys between our lookup and our insert
                # (PostgreSQL; SQLite's write lock covers both). The retry's lookup finds it.
                continue
        raise StorageError(f"could not store {count} job(s): conflicting writers")

    def get_jobs(self, job_ids: Iterable[str]) -> dict[str, JobRow]:
        """The jobs with these ids, by id (missing ones are left out)."""
        ids = list(job_ids)
        if not ids:
            return {}
        with self.transaction(write=False) as conn:
            rows = conn.execute(_JOBS_BY_ID, {"ids": ids}).mappings().all()
        return {row["id"]: job_row(row) for row in rows}

    def get_job(self, job_id: str) -> JobRow | None:
        with self.transaction(write=False) as conn:
            row = conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).mappings().first()
        return None if row is None else job_row(row)

    def get_run(self, run_id: str) -> RunRow | None:
        with self.transaction(write=False) as conn:
            row = conn.execute(sa.select(runs).where(runs.c.id == run_id)).mappings().first()
        return None if row is None else run_row(row)

    def find_run(self, ref: str) -> RunRow | None:
        """The run with id `ref`, else the one run whose id starts with it.

        Prefixes shorter than `MIN_PREFIX` only match exactly.

        Raises:
            AmbiguousRunError: several runs start with `ref`.
        """
        exact = self.get_run(ref)
        if exact is not None or len(ref) < MIN_PREFIX:
            return exact
        query = (
            sa.select(runs)
            .where(sa.func.substr(runs.c.id, 1, len(ref)) == ref)
            .order_by(runs.c.created_at.desc(), runs.c.id.desc())
            .limit(MAX_CANDIDATES + 1)
        )
        with self.transaction(write=False) as conn:
            rows = conn.execute(query).mappings().all()
        if len(rows) > 1:
            ids = [row["id"] for row in rows[:MAX_CANDIDATES]]
            raise AmbiguousRunError(ref, ids, more=len(rows) > MAX_CANDIDATES)
        return run_row(rows[0]) if rows else None

    def list_runs(
        self,
        *,
        status: str | None = None,
        workflow: str | None = None,
        source: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[RunRow], str | None]:
        """Runs, newest first.

        Returns:
            one page of runs, and the cursor for the next page (None on the last page).
        """
        if limit < 1:
            raise LedgerError(f"limit must be at least 1 (got {limit})")
        query = sa.select(runs).order_by(runs.c.created_at.desc(), runs.c.id.desc())
        for name, value in (("status", status), ("workflow", workflow), ("source", source)):
            if value is not None:
                query = query.where(runs.c[name] == value)
        if cursor is not None:
            position = decode_cursor(cursor)
            if position is None:
                raise LedgerError(f"invalid cursor {cursor!r}")
            created_at, run_id = position
            query = query.where(
                sa.or_(
                    runs.c.created_at < created_at,
                    sa.and_(runs.c.created_at == created_at, runs.c.id < run_id),
                )
            )
        with self.transaction(write=False) as conn:
            rows = conn.execute(query.limit(limit + 1)).mappings().all()
        page = [run_row(row) for row in rows[:limit]]
        return page, encode_cursor(page[-1]) if len(rows) > limit else None

    def turns(self, run_id: str) -> list[TurnRecord]:
        query = sa.select(turns).where(turns.c.run_id == run_id).order_by(turns.c.number)
        with self.transaction(write=False) as conn:
            rows = conn.execute(query).mappings().all()
        return [turn_record(row) for row in rows]

    def set_workdir(self, run_id: str, workdir: str) -> None:
        """Where the run's workspace is, once its process has prepared it."""
        self._update_run(run_id, workdir=workdir)

    def heartbeat(self, run_id: str) -> None:
        self._update_run(run_id, heartbeat_at=self._clock())

    def finish_run(
        self, run_id: str, *, status: RunStatus, reason: str = "", brake: str | None = None
    ) -> None:
        if status not in TERMINAL_STATUSES:
            raise LedgerError(f"a run cannot finish as {status!r}")
        self._update_run(
            run_id, status=status, reason=reason, brake=brake, ended_at=self._clock(), pid=None
        )

    def set_brakes(self, run_id: str, brakes: Brakes) -> None:
        self._update_run(run_id, brakes=brakes_to_dict(brakes))

    def set_status(self, run_id: str, status: RunStatus) -> None:
        """Set the status alone; back to `queued` also clears the end time and the pid."""
        if status not in RUN_STATUSES:
            raise LedgerError(f"unknown run status {status!r}")
        if status == "queued":
            self._update_run(run_id, status=status, ended_at=None, pid=None)
        else:
            self._update_run(run_id, status=status)

    def update_extra(self, run_id: str, **values: object) -> None:
        """Merge `values` into the run's `extra` (a key set to None stays, as null)."""
        query = sa.select(runs.c.extra).where(runs.c.id == run_id).with_for_update()
        with self.transaction(write=True) as conn:
            extra = conn.execute(query).scalar_one_or_none()
            if extra is None:
                raise UnknownRunError(f"no run {run_id!r}")
            conn.execute(_UPDATE_RUN, {"target_id": run_id, "extra": {**extra, **values}})

    async def turn_completed(self, record: TurnRecord) -> None:
        """Store the turn and add it to its run's totals, in one transaction.

        The write runs in a worker thread. Cancelling the caller does not cancel the write: it
        commits or fails as a whole, and a resumed run reads back whatever was committed.

        Raises:
            DuplicateTurnError: the run already has a turn with this number.
            UnknownRunError: there is no such run.
        """
        await asyncio.to_thread(self._record_turn, record)

    def _record_turn(self, record: TurnRecord) -> None:
        if record.number < 1:
            raise LedgerError(f"turn numbers start at 1 (got {record.number})")
        usage = record.usage
        totals = {
            "target_id": record.run_id,
            "add_input_tokens": usage.input_tokens,
            "add_output_tokens": usage.output_tokens,
            "add_cost_usd": usage.cost_usd,
            "add_model_calls": usage.model_calls,
            "add_tool_calls": usage.tool_calls,
            "turns_done": record.number,
            "elapsed_s": record.elapsed_s,
            "consecutive_passes": record.consecutive_passes,
            "last_findings": record.findings,
            "heartbeat_at": self._clock(),
        }
        try:
            with self.transaction(write=True) as conn:
                # Updating the run first locks its row, so concurrent writers of one turn queue.
                _require_run(conn.execute(_ADD_TURN, totals), record.run_id)
                conn.execute(_INSERT_TURN, turn_values(record))
        except ConflictError as exc:
            raise DuplicateTurnError(
                f"run {record.run_id!r} already has turn {record.number}"
            ) from exc

    def _update_run(self, run_id: str, **values: Any) -> None:
        """Set plain column values (no SQL expressions) of one run."""
        with self.transaction(write=True) as conn:
            _require_run(conn.execute(_UPDATE_RUN, {"target_id": run_id, **values}), run_id)

    @contextmanager
    def transaction(self, *, write: bool) -> Iterator[Connection]:
        try:
            with self._engine.connect() as conn:
                if not write:
                    with conn.begin():
                        yield conn
                    return
                conn.execution_options(**{WRITE_OPTION: True})
                with self._write_lock, conn.begin():
                    yield conn
        except IntegrityError as exc:
            raise ConflictError(_describe(exc)) from exc
        except SQLAlchemyError as exc:
            raise StorageError(_describe(exc)) from exc


# Built once and executed with parameters: SQLAlchemy compiles each statement once per set of
# columns given. `_UPDATE_RUN` sets whichever columns the parameters name.
_UPDATE_RUN = sa.update(runs).where(runs.c.id == sa.bindparam("target_id"))
_ADD_TURN = _UPDATE_RUN.values(
    {
        name: runs.c[name] + sa.bindparam(f"add_{name}")
        for name in ("input_tokens", "output_tokens", "cost_usd", "model_calls", "tool_calls")
    }
)
_INSERT_TURN = sa.insert(turns)
_JOBS_BY_ID = sa.select(jobs).where(jobs.c.id.in_(sa.bindparam("ids", expanding=True)))


def _require_run(result: sa.CursorResult[Any], run_id: str) -> None:
    if result.rowcount == 0:
        raise UnknownRunError(f"no run {run_id!r}")


def _describe(exc: SQLAlchemyError) -> str:
    # The first line names the driver's error; the rest repeats the statement and its values.
    return str(exc).splitlines()[0]
