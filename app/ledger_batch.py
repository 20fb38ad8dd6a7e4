"""Storing new jobs in batches: many jobs and their first runs in one write transaction.

Idempotency keys stay exact within a batch: a key already in the database returns the stored
job and its first run; a key repeated within the batch is stored once, and every later request
with it gets the first one's job and run, as `created=False`. Statements are built once and
executed with parameters, so SQLAlchemy compiles each of them once per process.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from app.ledger_errors import StorageError
from app.ledger_rows import (
    JobRow,
    RunRow,
    brakes_from_dict,
    job_row,
    job_values,
    new_id,
    new_run_values,
    run_row,
)
from app.ledger_schema import jobs, runs
from loops.brakes import Brakes
from loops.jobs import LoopJob
from loops.workflows import Workflow

Stored = tuple[JobRow, RunRow, bool]
"""A job, its first run, and whether this request created them."""

_JOBS_BY_KEY = sa.select(jobs).where(
    jobs.c.idempotency_key.in_(sa.bindparam("keys", expanding=True))
)
_RUNS_OF_JOBS = (
    sa.select(runs)
    .where(runs.c.job_id.in_(sa.bindparam("job_ids", expanding=True)))
    .order_by(runs.c.created_at, runs.c.id)
)


@dataclass(frozen=True, kw_only=True)
class NewJob:
    """A job to store with its first, queued run.

    Attributes:
        brakes: the limits to freeze on the run; None takes the workflow's.
        run_values: columns of the new run to override (a foreground run is inserted already
            claimed, so no service sharing the database can pick it up first).
    """

    job: LoopJob
    workflow: Workflow
    brakes: Brakes | None = None
    run_values: Mapping[str, object] = field(default_factory=dict)


PreparedJob = tuple[str | None, dict[str, Any], dict[str, Any]]
"""A job to store, as its idempotency key and the `jobs` and `runs` columns to insert (ids and
timestamps given). Only plain values, so it can be handed to another process as it is
(`app.intake_process`), and a plain tuple, which pickles fastest."""

Existing = tuple[dict[str, Any], dict[str, Any]]
"""The job and first-run columns stored earlier under a prepared job's idempotency key."""


def prepare_job(request: NewJob, now: float) -> tuple[PreparedJob, Stored]:
    """The rows to insert for `request`, and what it stores if its key is new."""
    job, workflow = request.job, request.workflow
    job_id = new_id()
    job_fields = {
        "id": job_id,
        **job_values(job),
        "workflow_source": workflow.source,
        "workflow_path": workflow.path,
        "created_at": now,
    }
    brakes = workflow.brakes if request.brakes is None else request.brakes
    run_fields = {
        **new_run_values(run_id=new_id(), job_id=job_id, job=job, brakes=brakes, now=now),
        **request.run_values,
    }
    if "brakes" in request.run_values:
        brakes = brakes_from_dict(run_fields["brakes"])
    stored = job_row(job_fields), run_row({**run_fields, "brakes": brakes}), True
    return (job.idempotency_key, job_fields, run_fields), stored


def result(stored: Stored, existing: Existing | None) -> Stored:
    """What a prepared job's request stored: its own rows, or those its key already had."""
    if existing is None:
        return stored
    return job_row(existing[0]), run_row(existing[1]), False


def insert_jobs(
    conn: Connection, requests: Sequence[NewJob], clock: Callable[[], float]
) -> list[Stored]:
    """Store `requests` within the caller's write transaction; results in request order."""
    prepared = [prepare_job(request, clock()) for request in requests]
    found = insert_prepared(conn, [rows for rows, _ in prepared])
    return [result(stored, existing) for (_, stored), existing in zip(prepared, found, strict=True)]


def insert_prepared(conn: Connection, prepared: Sequence[PreparedJob]) -> list[Existing | None]:
    """Store `prepared` within the caller's write transaction. For each, in order: None if it
    was inserted, or the rows its idempotency key already had. A key repeated within the
    batch is stored once; its later copies get the first copy's rows.

    A concurrent writer may commit one of the keys between the lookup and the insert; the
    insert then raises `IntegrityError`, and the caller retries the batch, whose lookup finds it.
    """
    keys = {key for key, _job, _run in prepared if key is not None}
    known: dict[str, Existing] = stored_by_keys(conn, keys)
    found: list[Existing | None] = []
    new_jobs: list[dict[str, Any]] = []
    new_runs: list[dict[str, Any]] = []
    for key, job, run in prepared:
        if key is not None and key in known:
            found.append(known[key])
            continue
        new_jobs.append(job)
        new_runs.append(run)
        if key is not None:
            known[key] = (job, run)
        found.append(None)
    if new_jobs:
        insert_rows(conn, jobs, new_jobs)
        insert_rows(conn, runs, new_runs)
    return found


def insert_rows(conn: Connection, table: sa.Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert `rows` with one `executemany` per set of columns, through the driver.

    Parameters go to the DB-API cursor as they are, JSON columns serialized here, instead of
    through SQLAlchemy's per-row parameter processing, which costs more than the insert itself
    (measured: ~60 µs per job). Dialects with another placeholder style take the usual path.
    """
    placeholder = _PLACEHOLDERS.get(conn.dialect.paramstyle)
    if placeholder is None:
        conn.execute(sa.insert(table), list(rows))
        return
    groups: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row), []).append(row)
    for names, group in groups.items():
        statement, json_at = _insert_statement(conn.dialect, table, names, placeholder)
        values = []
        for row in group:
            value = list(row.values())
            for i in json_at:
                if value[i] == {}:
                    value[i] = "{}"  # most runs' `extra` and most jobs' `reply`
                elif value[i] is not None:
                    value[i] = json.dumps(value[i])
            values.append(tuple(value))
        conn.exec_driver_sql(statement, values)


@functools.lru_cache(maxsize=64)
def _insert_statement(
    dialect: sa.Dialect, table: sa.Table, names: tuple[str, ...], placeholder: str
) -> tuple[str, tuple[int, ...]]:
    """The INSERT for `names` of `table`, and where its JSON columns are; built once per set of
    columns (quoting each name on every batch cost more than the batch's own Python work)."""
    quote = dialect.identifier_preparer.quote
    json_at = tuple(i for i, n in enumerate(names) if isinstance(table.c[n].type, sa.JSON))
    columns = ", ".join(quote(n) for n in names)
    marks = ", ".join(placeholder for _ in names)
    # Names come from the schema, quoted; values travel as parameters.
    statement = f"INSERT INTO {quote(table.name)} ({columns}) VALUES ({marks})"  # noqa: S608
    return statement, json_at


_PLACEHOLDERS = {"qmark": "?", "format": "%s", "pyformat": "%s"}


def stored_by_keys(conn: Connection, keys: Collection[str]) -> dict[str, Existing]:
    """The jobs stored under any of `keys`, each with its first run, as column values."""
    if not keys:
        return {}
    found = conn.execute(_JOBS_BY_KEY, {"keys": list(keys)}).mappings().all()
    if not found:
        return {}
    first_runs: dict[str, dict[str, Any]] = {}
    for row in conn.execute(_RUNS_OF_JOBS, {"job_ids": [j["id"] for j in found]}).mappings():
        first_runs.setdefault(row["job_id"], dict(row))
    stored = {}
    for job in found:
        run = first_runs.get(job["id"])
        if run is None:
            raise StorageError(f"job {job['id']!r} has no run")
        stored[job["idempotency_key"]] = (dict(job), run)
    return stored
