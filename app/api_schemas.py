"""What the REST API answers, and the resume request: pydantic models at the edge, built from
the ledger's rows.

Times are ISO 8601 in UTC; durations are seconds; money is US dollars.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from app.ledger import JobRow, RunRow
from loops.brakes import Brakes
from loops.checking import CheckResult
from loops.jobs import RunStatus, Source
from loops.records import ToolCallRecord, TurnRecord
from loops.usage import Usage
from triggers.api import WHOLE_NUMBER, WORKFLOW_NAME_PATTERN

RUN_ID_PATTERN = r"^[0-9a-f]{16}$"


class Problem(BaseModel):
    """Why a request was refused."""

    detail: str


class FieldProblem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class InvalidRequest(BaseModel):
    """Why a request was refused: a sentence, or one entry per invalid field."""

    detail: str | list[FieldProblem]


class JobAccepted(BaseModel):
    job_id: str
    run_id: str
    status: RunStatus
    created: bool = Field(description="False when the idempotency key named an existing job.")


class RunStatusOut(BaseModel):
    run_id: str
    status: RunStatus


class ResumeRequest(BaseModel):
    """Extra budget for the resumed run, added to its frozen brakes (unlimited stays so)."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    add_turns: Annotated[int, Field(ge=0, le=1_000), WHOLE_NUMBER] = 0
    add_cost_usd: Annotated[float, Field(ge=0, le=100_000)] = 0.0
    add_tokens: Annotated[int, Field(ge=0, le=10**10), WHOLE_NUMBER] = 0
    add_seconds: Annotated[float, Field(ge=0, le=30 * 86_400)] = 0.0

    def brakes(self, current: Brakes) -> Brakes:
        return current.extended(
            turns=self.add_turns,
            cost_usd=self.add_cost_usd,
            tokens=self.add_tokens,
            seconds=self.add_seconds,
        )


class UsageOut(BaseModel):
    input_tokens: int
    output_tokens: int
    total_tokens: int
    cost_usd: float
    model_calls: int
    tool_calls: int


class BrakesOut(BaseModel):
    max_turns: int
    max_steps_per_turn: int
    max_input_tokens: int | None
    max_output_tokens: int | None
    max_total_tokens: int | None
    max_cost_usd: float | None
    max_wall_seconds: float | None
    per_call_timeout_seconds: float


class RunSummary(BaseModel):
    id: str
    job_id: str
    status: RunStatus
    workflow: str
    source: Source
    created_at: dt.datetime
    started_at: dt.datetime | None
    ended_at: dt.datetime | None
    elapsed_s: float = Field(description="Wall time the loop has consumed, over all attempts.")
    turns_done: int
    usage: UsageOut
    brake: str | None = Field(description="The brake that stopped the run, if one did.")
    reason: str
    interrupted: bool = Field(description="Marked running, but its process is gone.")
    cancel_requested: bool
    attempts: int


class CheckOut(BaseModel):
    name: str
    passed: bool
    findings: str
    score: float | None
    exit_code: int | None
    duration_s: float


class ToolCallOut(BaseModel):
    name: str
    is_error: bool
    duration_s: float


class TurnOut(BaseModel):
    number: int
    passed: bool | None = Field(
        description="The checker's verdict; null if the turn was cut short."
    )
    checks: list[CheckOut]
    maker_summary: str
    tool_calls: list[ToolCallOut]
    usage: UsageOut
    steps: int
    started_at: dt.datetime | None
    ended_at: dt.datetime | None
    elapsed_s: float = Field(description="Run wall time consumed by the end of this turn.")
    consecutive_passes: int
    findings: str = Field(description="What the next turn was told to fix.")
    interrupted: str | None = Field(description="Why the turn was cut short, if it was.")


class JobOut(BaseModel):
    instruction: str
    workdir: str | None
    repo: str | None
    pr: int | None
    model: str | None
    requested_by: str | None
    idempotency_key: str | None


class RunDetail(RunSummary):
    job: JobOut | None
    brakes: BrakesOut
    workdir: str | None
    consecutive_passes: int
    last_findings: str
    trace_url: str | None
    turns: list[TurnOut]


class RunQuery(BaseModel):
    """The filters and page of `GET /api/runs`; an unknown parameter is refused, not ignored."""

    model_config = ConfigDict(extra="forbid")

    status: RunStatus | None = None
    workflow: Annotated[str, Field(pattern=WORKFLOW_NAME_PATTERN)] | None = None
    source: Source | None = None
    limit: Annotated[int, Field(ge=1, le=200)] = 50
    cursor: Annotated[str, Field(max_length=200)] | None = Field(
        default=None, description="A previous page's `next_cursor`."
    )


class RunPage(BaseModel):
    runs: list[RunSummary]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null at the end."
    )


def run_summary(run: RunRow, *, interrupted: bool) -> RunSummary:
    return RunSummary(**_summary_fields(run, interrupted=interrupted))


def run_detail(
    run: RunRow,
    job: JobRow | None,
    turns: list[TurnRecord],
    *,
    interrupted: bool,
    trace_url: str | None,
) -> RunDetail:
    return RunDetail(
        **_summary_fields(run, interrupted=interrupted),
        job=None if job is None else _job_out(job),
        brakes=BrakesOut(**dataclasses.asdict(run.brakes)),
        workdir=run.workdir,
        consecutive_passes=run.consecutive_passes,
        last_findings=run.last_findings,
        trace_url=trace_url,
        turns=[_turn_out(t) for t in turns],
    )


def _summary_fields(run: RunRow, *, interrupted: bool) -> dict[str, Any]:
    return {
        "id": run.id,
        "job_id": run.job_id,
        "status": run.status,
        "workflow": run.workflow,
        "source": run.source,
        "created_at": when(run.created_at),
        "started_at": when(run.started_at),
        "ended_at": when(run.ended_at),
        "elapsed_s": run.elapsed_s,
        "turns_done": run.turns_done,
        "usage": usage_out(run.usage),
        "brake": run.brake,
        "reason": run.reason,
        "interrupted": interrupted,
        "cancel_requested": run.cancel_requested,
        "attempts": run.attempts,
    }


def _job_out(job: JobRow) -> JobOut:
    return JobOut(
        instruction=job.instruction,
        workdir=job.workdir,
        repo=job.repo,
        pr=job.pr,
        model=job.model,
        requested_by=job.requested_by,
        idempotency_key=job.idempotency_key,
    )


def _turn_out(turn: TurnRecord) -> TurnOut:
    results = turn.verdict.results if turn.verdict else ()
    return TurnOut(
        number=turn.number,
        passed=None if turn.verdict is None else turn.verdict.passed,
        checks=[_check_out(r) for r in results],
        maker_summary=turn.maker_summary,
        tool_calls=[_tool_call_out(c) for c in turn.tool_calls],
        usage=usage_out(turn.usage),
        steps=turn.steps,
        started_at=when(turn.started_at),
        ended_at=when(turn.ended_at),
        elapsed_s=turn.elapsed_s,
        consecutive_passes=turn.consecutive_passes,
        findings=turn.findings,
        interrupted=turn.interrupted,
    )


def _check_out(result: CheckResult) -> CheckOut:
    return CheckOut(
        name=result.name,
        passed=result.passed,
        findings=result.findings,
        score=result.score,
        exit_code=result.exit_code,
        duration_s=result.duration_s,
    )


def _tool_call_out(call: ToolCallRecord) -> ToolCallOut:
    return ToolCallOut(name=call.name, is_error=call.is_error, duration_s=call.duration_s)


def when(timestamp: float | None) -> dt.datetime | None:
    if not timestamp:
        return None
    return dt.datetime.fromtimestamp(timestamp, tz=dt.UTC)


def usage_out(usage: Usage) -> UsageOut:
    return UsageOut(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        total_tokens=usage.total_tokens,
        cost_usd=usage.cost_usd,
        model_calls=usage.model_calls,
        tool_calls=usage.tool_calls,
    )
