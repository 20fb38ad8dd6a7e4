"""The run queue on top of the ledger: claim, requeue, cancel requests, stale-run recovery.

Every transition is one conditional UPDATE, so whichever process gets there first wins and the
others see zero rows changed: a run is claimed once, recovered once, and (by a partial unique
index) at most one run per concurrency key is `running` at any time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from app.ledger import ConflictError, JobRow, Ledger, LedgerError, RunRow
from app.ledger_rows import brakes_to_dict, run_row
from app.ledger_schema import runs
from loops.brakes import Brakes
from loops.jobs import LoopJob, RunStatus
from loops.workflows import Workflow

RESUMABLE: frozenset[RunStatus] = frozenset({"braked", "stuck", "cancelled", "errored", "queued"})


class RunStateError(LedgerError):
    """The run is in a status that does not allow the request (resume a passed run, ...)."""


@dataclass(frozen=True, kw_only=True)
class Claim:
    owner: str
    pid: int
    host: str


class RunQueue:
    def __init__(self, ledger: Ledger, *, clock: Callable[[], float] = time.time) -> None:
        self.ledger = ledger
        self.clock = clock

    def next_queued(self, *, limit: int, skip_keys: Iterable[str] = ()) -> list[RunRow]:
        """Queued runs in arrival order, leaving out concurrency keys known to be busy."""
        query = (
            sa.select(runs)
            .where(runs.c.status == "queued")
            .order_by(runs.c.queued_at, runs.c.id)
            .limit(limit)
        )
        busy = list(skip_keys)
        if busy:
            query = query.where(
                sa.or_(runs.c.concurrency_key.is_(None), runs.c.concurrency_key.not_in(busy))
            )
        with self.ledger.transaction(write=False) as conn:
            return [run_row(r) for r in conn.execute(query).mappings().all()]

    def busy_keys(self) -> set[str]:
        query = sa.select(runs.c.concurrency_key).where(
            runs.c.status == "running", runs.c.concurrency_key.is_not(None)
        )
        with self.ledger.transaction(write=False) as conn:
            return {str(k) for k in conn.execute(query).scalars()}

    def submit_claimed(
        self, job: LoopJob, workflow: Workflow, claim: Claim
    ) -> tuple[JobRow, RunRow, bool]:
        """Store a job whose run starts `running` in the caller's process (the CLI's `run`)."""
        now = self.clock()
        values = {
            "status": "running",
            "owner": claim.owner,
            "pid": claim.pid,
            "host": claim.host,
            "started_at": now,
            "heartbeat_at": now,
            "attempts": 1,
        }
        return self.ledger.create_job(job, workflow=workflow, run_values=values)

    def claim(self, run_id: str, claim: Claim) -> bool:
        """queued → running for this process; False if another process (or key) got there."""
        return run_id in self._claim_all([run_id], claim)

    def claim_next(
        self, claim: Claim, *, limit: int, skip_keys: Iterable[str] = ()
    ) -> list[RunRow]:
        """Claim up to `limit` queued runs in arrival order, as they are once claimed.

        At most one run per concurrency key, and none whose key is in `skip_keys` (an earlier
        queued run with a key goes first). Runs without a key are claimed by one UPDATE; keyed
        ones one at a time, since another process may be running their key.
        """
        busy = set(skip_keys)
        chosen: list[RunRow] = []
        for run in self.next_queued(limit=limit + len(busy) + 8, skip_keys=busy):
            if len(chosen) >= limit:
                break
            if run.concurrency_key is None:
                chosen.append(run)
            elif run.concurrency_key not in busy:
                busy.add(run.concurrency_key)
                chosen.append(run)
        free = [r.id for r in chosen if r.concurrency_key is None]
        claimed = self._claim_all(free, claim) if free else {}
        for run in chosen:
            if run.concurrency_key is not None:
                claimed.update(self._claim_all([run.id], claim))
        return [claimed[r.id] for r in chosen if r.id in claimed]

    def _claimed(self, claim: Claim) -> dict[str, Any]:
        now = self.clock()
        return {
            "status": "running",
            "owner": claim.owner,
            "pid": claim.pid,
            "host": claim.host,
            "started_at": sa.func.coalesce(runs.c.started_at, now),
            "heartbeat_at": now,
            "attempts": runs.c.attempts + 1,
            "ended_at": None,
            "brake": None,
            "reason": "",
            "cancel_requested": False,
        }

    def _claim_all(self, run_ids: list[str], claim: Claim) -> dict[str, RunRow]:
        params = {"ids": run_ids, "owner": claim.owner, "pid": claim.pid, "host": claim.host}
        try:
            with self.ledger.transaction(write=True) as conn:
                rows = conn.execute(_CLAIM, {**params, "now": self.clock()}).mappings().all()
        except ConflictError:
            return {}  # another run with this concurrency key is already running
        return {row["id"]: run_row(row) for row in rows}

    def requeue(self, run_id: str, *, reason: str) -> bool:
        """running → queued (interrupted by a shutdown): the next start picks it up again."""
        values = {"status": "queued", "queued_at": self.clock(), "owner": None, "pid": None}
        return self._transition(run_id, ("running",), {**values, "reason": reason})

    def resume(
        self, run_id: str, *, brakes: Brakes | None = None, claim: Claim | None = None
    ) -> RunRow:
        """A stopped run goes back to the queue (or straight to `claim`'s process).

        Raises:
            RunStateError: it passed, or it is queued or running and not interrupted.
        """
        run = self._require(run_id)
        if run.status not in RESUMABLE:
            raise RunStateError(f"run {run.id} is {run.status}; only {_names(RESUMABLE)} resume")
        values: dict[str, Any] = (
            self._claimed(claim)
            if claim
            else {"status": "queued", "queued_at": self.clock(), "ended_at": None, "pid": None}
        )
        if brakes is not None:
            values["brakes"] = brakes_to_dict(brakes)
        if not self._transition(run.id, (run.status,), values):
            raise RunStateError(f"run {run.id} changed while resuming it; try again")
        return self._require(run.id)

    def recover_stale(
        self, *, stale_before: float, host: str, alive: Callable[[int], bool]
    ) -> list[str]:
        """Requeue `running` runs whose process is gone; each is recovered by one process only.

        Gone means: on this host with a dead pid, or silent since `stale_before` anywhere.
        """
        query = sa.select(runs.c.id, runs.c.pid, runs.c.host, runs.c.heartbeat_at).where(
            runs.c.status == "running"
        )
        with self.ledger.transaction(write=False) as conn:
            rows = conn.execute(query).all()
        recovered = []
        for run_id, pid, run_host, beat in rows:
            dead_here = run_host == host and (pid is None or not alive(pid))
            silent = beat is None or beat < stale_before
            if (dead_here or silent) and self._recover(run_id, beat):
                recovered.append(run_id)
        return recovered

    def recover(self, run: RunRow, *, brakes: Brakes | None = None) -> bool:
        """Requeue one `running` run that the caller has found to be gone (see `recover_stale`).

        The heartbeat in `run` is the one the caller judged by: if the run has beaten since, it
        is alive after all and nothing changes. Returns whether this call requeued it.
        """
        extra = {} if brakes is None else {"brakes": brakes_to_dict(brakes)}
        return self._recover(run.id, run.heartbeat_at, **extra)

    def _recover(self, run_id: str, beat: float | None, **extra: Any) -> bool:
        # The heartbeat in the WHERE clause makes this a compare-and-set: if the owner beat in
        # the meantime, or another process recovered it first, nothing changes.
        values = {
            "status": "queued",
            "queued_at": self.clock(),
            "owner": None,
            "pid": None,
            "reason": "interrupted: its process is gone",
            **extra,
        }
        condition = runs.c.heartbeat_at.is_(None) if beat is None else runs.c.heartbeat_at == beat
        query = (
            sa.update(runs)
            .where(runs.c.id == run_id, runs.c.status == "running", condition)
            .values(**values)
        )
        with self.ledger.transaction(write=True) as conn:
            return conn.execute(query).rowcount == 1

    def request_cancel(self, run_id: str) -> RunStatus:
        """A queued run is cancelled at once; a running one is flagged for its process.

        Raises:
            RunStateError: the run has already ended.
        """
        run = self._require(run_id)
        if run.status == "queued":
            done = {"status": "cancelled", "ended_at": self.clock(), "reason": "cancelled"}
            if self._transition(run.id, ("queued",), done):
                return "cancelled"
        elif run.status == "running" and self._transition(
            run.id, ("running",), {"cancel_requested": True}
        ):
            return "running"
        raise RunStateError(f"run {run.id} is {self._require(run.id).status}; it cannot cancel")

    def cancel_requested(self, run_ids: Iterable[str]) -> set[str]:
        ids = list(run_ids)
        if not ids:
            return set()
        query = sa.select(runs.c.id).where(runs.c.id.in_(ids), runs.c.cancel_requested)
        with self.ledger.transaction(write=False) as conn:
            return {str(i) for i in conn.execute(query).scalars()}

    def heartbeat(self, run_ids: Iterable[str]) -> None:
        ids = list(run_ids)
        if ids:
            query = sa.update(runs).where(runs.c.id.in_(ids), runs.c.status == "running")
            with self.ledger.transaction(write=True) as conn:
                conn.execute(query.values(heartbeat_at=self.clock()))

    def counts(self) -> dict[str, int]:
        query = sa.select(runs.c.status, sa.func.count()).group_by(runs.c.status)
        with self.ledger.transaction(write=False) as conn:
            return {str(status): int(n) for status, n in conn.execute(query).all()}

    def _transition(
        self, run_id: str, from_statuses: tuple[str, ...], values: dict[str, Any]
    ) -> bool:
        query = (
            sa.update(runs)
            .where(runs.c.id == run_id, runs.c.status.in_(from_statuses))
            .values(**values)
        )
        try:
            with self.ledger.transaction(write=True) as conn:
                return conn.execute(query).rowcount == 1
        except ConflictError:
            return False  # another run with this concurrency key is already running

    def _require(self, run_id: str) -> RunRow:
        run = self.ledger.find_run(run_id)
        if run is None:
            raise RunStateError(f"no run {run_id!r}")
        return run


# Compare-and-set: only runs still queued change, and RETURNING says which ones this call got.
_CLAIM = (
    sa.update(runs)
    .where(runs.c.id.in_(sa.bindparam("ids", expanding=True)), runs.c.status == "queued")
    .values(
        status="running",
        owner=sa.bindparam("owner"),
        pid=sa.bindparam("pid"),
        host=sa.bindparam("host"),
        started_at=sa.func.coalesce(runs.c.started_at, sa.bindparam("now")),
        heartbeat_at=sa.bindparam("now"),
        attempts=runs.c.attempts + 1,
        ended_at=None,
        brake=None,
        reason="",
        cancel_requested=False,
    )
    .returning(*runs.c)
)


def _names(statuses: Iterable[str]) -> str:
    return ", ".join(sorted(statuses))
