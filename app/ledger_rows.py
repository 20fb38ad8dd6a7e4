"""The ledger's rows as frozen values, the JSON codecs for what the engine hands it, and the
listing cursor.

Decoders tolerate rows written by older or newer code: a missing key takes its default and an
unknown key is ignored, so adding a field to `Brakes`, `CheckResult` or `ToolCallRecord` never
makes stored runs unreadable.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import json
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from loops.brakes import Brakes
from loops.checking import CheckResult, Verdict
from loops.jobs import ACTIVE_STATUSES, LoopJob, RunStatus, Source
from loops.records import ToolCallRecord, TurnRecord
from loops.usage import Usage


def new_id() -> str:
    """A short random id (16 hex digits).

    Random rather than time-ordered on purpose: people refer to runs by a prefix of their id,
    which only works when the first characters differ. Listings order by `created_at`.
    """
    return secrets.token_hex(8)


@dataclass(frozen=True, kw_only=True)
class JobRow:
    """A stored job: the `LoopJob` plus the workflow text it was created with."""

    id: str
    idempotency_key: str | None
    workflow: str
    source: Source
    instruction: str
    workdir: str | None
    repo: str | None
    pr: int | None
    requested_by: str | None
    model: str | None
    reply: dict[str, str]
    concurrency_key: str | None
    workflow_source: str  # the workflow file's full text when the job was created
    workflow_path: str
    created_at: float

    def to_job(self) -> LoopJob:
        return LoopJob(
            workflow=self.workflow,
            source=self.source,
            instruction=self.instruction,
            idempotency_key=self.idempotency_key,
            concurrency_key=self.concurrency_key,
            workdir=self.workdir,
            repo=self.repo,
            pr=self.pr,
            requested_by=self.requested_by,
            model=self.model,
            reply=dict(self.reply),
        )


@dataclass(frozen=True, kw_only=True)
class RunRow:
    """A stored run: its status, where it runs, what it has consumed and its frozen brakes.

    Attributes:
        brakes: the limits frozen when the job was created (extended on resume).
        brake: the name of the brake that stopped the run, if one did.
        reason: why the run ended, in words.
        attempts: how many times the run has been started or resumed.
        extra: trigger data, such as the id of a progress comment.
    """

    id: str
    job_id: str
    status: RunStatus
    workflow: str
    source: Source
    created_at: float
    started_at: float | None
    ended_at: float | None
    pid: int | None
    host: str | None
    heartbeat_at: float | None
    turns_done: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    model_calls: int
    tool_calls: int
    elapsed_s: float
    consecutive_passes: int
    last_findings: str
    brakes: Brakes
    brake: str | None
    reason: str
    workdir: str | None
    attempts: int
    extra: dict[str, object]
    concurrency_key: str | None = None
    queued_at: float | None = None
    cancel_requested: bool = False
    owner: str | None = None

    @property
    def usage(self) -> Usage:
        return Usage(
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cost_usd=self.cost_usd,
            model_calls=self.model_calls,
            tool_calls=self.tool_calls,
        )

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def _known(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    names = _field_names(cls)
    return {k: v for k, v in data.items() if k in names}


def brakes_to_dict(brakes: Brakes) -> dict[str, object]:
    # Every field is a number or None: a flat copy, without `asdict`'s recursive deep copy.
    return {name: getattr(brakes, name) for name in _field_names(Brakes)}


def brakes_from_dict(data: Mapping[str, Any] | Brakes | None) -> Brakes:
    """Missing keys take their defaults; unknown keys are ignored. A `Brakes` is returned as is."""
    if isinstance(data, Brakes):
        return data
    return Brakes(**_known(Brakes, data or {}))


def verdict_to_json(verdict: Verdict | None) -> dict[str, object] | None:
    if verdict is None:
        return None
    return {
        "passed": verdict.passed,
        "results": [dataclasses.asdict(r) for r in verdict.results],
    }


def verdict_from_json(data: Mapping[str, Any] | None) -> Verdict | None:
    if data is None:
        return None
    results = tuple(CheckResult(**_known(CheckResult, r)) for r in data.get("results", ()))
    return Verdict(passed=bool(data.get("passed", False)), results=results)


def tool_calls_to_json(calls: Iterable[ToolCallRecord]) -> list[dict[str, object]]:
    return [dataclasses.asdict(c) for c in calls]


def tool_calls_from_json(data: Iterable[Mapping[str, Any]] | None) -> tuple[ToolCallRecord, ...]:
    return tuple(ToolCallRecord(**_known(ToolCallRecord, c)) for c in data or ())


def job_values(job: LoopJob) -> dict[str, object]:
    """The `jobs` columns a `LoopJob` fills."""
    return {
        "idempotency_key": job.idempotency_key,
        "workflow": job.workflow,
        "source": job.source,
        "instruction": job.instruction,
        "workdir": job.workdir,
        "repo": job.repo,
        "pr": job.pr,
        "requested_by": job.requested_by,
        "model": job.model,
        "reply": dict(job.reply),
        "concurrency_key": job.concurrency_key,
    }


_NEW_RUN: dict[str, Any] = {
    "status": "queued",
    **dict.fromkeys(("started_at", "ended_at", "pid", "host", "heartbeat_at"), None),
    **dict.fromkeys(("turns_done", "input_tokens", "output_tokens", "model_calls"), 0),
    "tool_calls": 0,
    "cost_usd": 0.0,
    "elapsed_s": 0.0,
    "consecutive_passes": 0,
    "last_findings": "",
    "brake": None,
    "reason": "",
    "workdir": None,
    "attempts": 0,
    "cancel_requested": False,
    "owner": None,
}
"""The columns every new run starts with; `new_run_values` adds those of its own."""


def new_run_values(
    *, run_id: str, job_id: str, job: LoopJob, brakes: Brakes, now: float
) -> dict[str, Any]:
    """Every `runs` column of a new, queued run."""
    values = dict(_NEW_RUN)
    values["id"] = run_id
    values["job_id"] = job_id
    values["workflow"] = job.workflow
    values["source"] = job.source
    values["created_at"] = values["queued_at"] = now
    values["brakes"] = brakes_to_dict(brakes)
    values["extra"] = {}
    values["concurrency_key"] = job.concurrency_key
    return values


def job_row(values: Mapping[Any, Any]) -> JobRow:
    """A `JobRow` from the `jobs` columns (a database row's mapping, or the values inserted)."""
    return _build(JobRow, dict(values))


def run_row(values: Mapping[Any, Any]) -> RunRow:
    """A `RunRow` from the `runs` columns (the brakes as stored, or as a `Brakes`)."""
    fields: dict[str, Any] = dict(values)
    fields["brakes"] = brakes_from_dict(fields["brakes"])
    fields["extra"] = dict(fields["extra"] or {})
    fields["cancel_requested"] = bool(fields.get("cancel_requested"))
    return _build(RunRow, fields)


R = TypeVar("R")


def _build(cls: type[R], fields: dict[str, Any]) -> R:
    """`cls(**fields)` for a frozen dataclass, without its `__init__`, which sets each field
    through `object.__setattr__` (a run has 30: ~7 µs a row, paid for every row read and every
    job taken in). Only when `fields` names exactly the dataclass's fields; else `__init__`
    says what is wrong. The rows are not slotted dataclasses: their fields live in `__dict__`."""
    if fields.keys() != _FIELD_SETS[cls]:
        return cls(**fields)
    row: R = object.__new__(cls)
    row.__dict__.update(fields)
    return row


_FIELD_SETS: dict[type, frozenset[str]] = {
    cls: frozenset(f.name for f in dataclasses.fields(cls)) for cls in (JobRow, RunRow)
}


def turn_values(record: TurnRecord) -> dict[str, object]:
    """The `turns` columns of a record."""
    usage = record.usage
    return {
        "run_id": record.run_id,
        "number": record.number,
        "maker_summary": record.maker_summary,
        "tool_calls": tool_calls_to_json(record.tool_calls),
        "verdict": verdict_to_json(record.verdict),
        "passed": None if record.verdict is None else record.verdict.passed,
        "findings": record.findings,
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cost_usd": usage.cost_usd,
        "model_calls": usage.model_calls,
        "tool_call_count": usage.tool_calls,
        "steps": record.steps,
        "started_at": record.started_at,
        "ended_at": record.ended_at,
        "elapsed_s": record.elapsed_s,
        "consecutive_passes": record.consecutive_passes,
        "interrupted": record.interrupted,
    }


def turn_record(values: Mapping[Any, Any]) -> TurnRecord:
    return TurnRecord(
        run_id=values["run_id"],
        number=values["number"],
        maker_summary=values["maker_summary"],
        tool_calls=tool_calls_from_json(values["tool_calls"]),
        verdict=verdict_from_json(values["verdict"]),
        usage=Usage(
            input_tokens=values["input_tokens"],
            output_tokens=values["output_tokens"],
            cost_usd=values["cost_usd"],
            model_calls=values["model_calls"],
            tool_calls=values["tool_call_count"],
        ),
        steps=values["steps"],
        started_at=values["started_at"],
        ended_at=values["ended_at"],
        elapsed_s=values["elapsed_s"],
        consecutive_passes=values["consecutive_passes"],
        findings=values["findings"],
        interrupted=values["interrupted"],
    )


def encode_cursor(run: RunRow) -> str:
    """An opaque position in the newest-first listing: just after `run`."""
    raw = json.dumps([run.created_at, run.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str] | None:
    """The `(created_at, id)` a cursor stands for; None if it is not one of ours."""
    try:
        position = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError):
        return None
    match position:
        case [int() | float() as created_at, str() as run_id] if not isinstance(created_at, bool):
            return float(created_at), run_id
    return None
