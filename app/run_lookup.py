"""Read queries over runs that the ledger's own API does not cover: the runs of one thread.

A thread is whatever a trigger groups runs by through the job's concurrency key (a pull request
or issue, a Slack thread, a schedule). The query goes through `jobs`, whose concurrency key is
indexed, to each job's runs.
"""

from __future__ import annotations

import sqlalchemy as sa

from app.ledger import Ledger, RunRow
from app.ledger_rows import run_row
from app.ledger_schema import jobs, runs

_RUNS_OF_KEY = (
    sa.select(runs)
    .join(jobs, jobs.c.id == runs.c.job_id)
    .where(jobs.c.concurrency_key == sa.bindparam("key"))
    .order_by(runs.c.created_at.desc(), runs.c.id.desc())
    .limit(sa.bindparam("limit"))
)


def runs_by_concurrency_key(ledger: Ledger, key: str, *, limit: int = 20) -> list[RunRow]:
    """The runs whose job has concurrency key `key`, newest first; at most `limit` of them."""
    with ledger.transaction(write=False) as conn:
        rows = conn.execute(_RUNS_OF_KEY, {"key": key, "limit": limit}).mappings().all()
    return [run_row(row) for row in rows]
