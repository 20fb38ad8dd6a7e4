"""The REST API: submit jobs, list and inspect runs, cancel and resume them.

Every endpoint sits behind `GuardedRoute` (bearer token, body limit, refusal logs). Ledger calls
are synchronous, so they run in worker threads; waking the executor and queueing reports happen
back on the event loop, where those objects live. Submitted jobs are stored by the service's
`IntakeBatcher`, many to a transaction under load, each before its answer; the jobs that will
be accepted are taken in front of the router by `app.api_intake`, through the same functions.
"""

from __future__ import annotations

import asyncio
import math
import re
from pathlib import Path
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Body, HTTPException, Query, Request, Response, Security
from fastapi import Path as PathParam

from app.api_guard import BEARER, MAX_BODY_BYTES, GuardedRoute
from app.api_schemas import (
    RUN_ID_PATTERN,
    InvalidRequest,
    JobAccepted,
    Problem,
    ResumeRequest,
    RunDetail,
    RunPage,
    RunQuery,
    RunStatusOut,
    run_detail,
    run_summary,
)
from app.ledger import TERMINAL_STATUSES, LedgerError, RunRow, StorageError
from app.ledger_rows import decode_cursor
from app.run_queue import RunStateError
from app.runner import run_interrupted
from app.service import Services
from loops.jobs import LoopJob
from loops.workflow_schema import did_you_mean
from loops.workflows import Workflow
from triggers.api import JobRequest, to_loop_job

log = structlog.get_logger("app.api")

RunId = Annotated[str, PathParam(pattern=RUN_ID_PATTERN, description="A run's full id.")]
COMMON_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "The body or the cursor cannot be read."},
    401: {"model": Problem, "description": "Missing or wrong bearer token."},
    413: {"model": Problem, "description": f"The body is over {MAX_BODY_BYTES} bytes."},
    422: {"model": InvalidRequest, "description": "Invalid parameters or body."},
    503: {"model": Problem, "description": "No API token is configured, or the ledger is down."},
}
UNKNOWN_RUN: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No run has this id."}
}


def api_router() -> APIRouter:
    router = APIRouter(
        prefix="/api",
        tags=["api"],
        route_class=GuardedRoute,
        dependencies=[Security(BEARER)],
        responses=COMMON_ERRORS,
    )
    _add_submit(router)
    _add_reads(router)
    _add_controls(router)
    return router


def _add_submit(router: APIRouter) -> None:
    @router.post(
        "/jobs",
        status_code=202,
        summary="Submit a job: its first run is queued",
        responses={200: {"model": JobAccepted, "description": "The idempotency key was known."}},
    )
    async def submit_job(body: JobRequest, request: Request, response: Response) -> JobAccepted:
        services = _services(request)
        job, workflow = await prepare_job(services, body)
        accepted = await accept_job(services, job, workflow)
        if not accepted.created:
            response.status_code = 200
        return accepted


async def prepare_job(services: Services, body: JobRequest) -> tuple[LoopJob, Workflow]:
    """The job `body` asks for, and its workflow; raises 422 with the reason if it cannot run."""
    if body.workdir is None and not services.catalog.due():
        return _prepare_job(services, body)  # memory only: no thread needed
    return await asyncio.to_thread(_prepare_job, services, body)


async def accept_job(services: Services, job: LoopJob, workflow: Workflow) -> JobAccepted:
    """Store the job and its first run (or find them by idempotency key), then wake the
    executor and report the run queued. Raises `StorageError` if the ledger fails."""
    job_row, run, created = await services.intake.submit(job, workflow)
    if created:
        # Debug: a line per job costs a busy intake ~15% of its time (measured), and the answer
        # carries the ids; the run logs its own start and end.
        log.debug("api_job_created", job_id=job_row.id, run_id=run.id, workflow=run.workflow)
        services.executor.wake()
        if services.reports.wants(job_row.source):
            services.reports.submit(services.reports.report("queued", run, job_row))
    return JobAccepted(job_id=job_row.id, run_id=run.id, status=run.status, created=created)


def _add_reads(router: APIRouter) -> None:
    @router.get("/runs", summary="Runs, newest first")
    async def list_runs(request: Request, query: Annotated[RunQuery, Query()]) -> RunPage:
        services = _services(request)
        if query.cursor is not None:
            _check_cursor(query.cursor)
        try:
            runs, next_cursor = await asyncio.to_thread(
                services.ledger.list_runs, **query.model_dump()
            )
        except StorageError:
            raise
        except LedgerError as exc:
            raise HTTPException(400, str(exc)) from exc
        stale = _stale_after(services)
        shown = [run_summary(r, interrupted=_interrupted(r, stale_after=stale)) for r in runs]
        return RunPage(runs=shown, next_cursor=next_cursor)

    @router.get("/runs/{run_id}", summary="A run with its turns", responses=UNKNOWN_RUN)
    async def get_run(run_id: RunId, request: Request) -> RunDetail:
        return await asyncio.to_thread(_detail, _services(request), run_id)


def _add_controls(router: APIRouter) -> None:
    @router.post(
        "/runs/{run_id}/cancel",
        summary="Cancel a run: a queued one at once, a running one within seconds",
        responses={
            **UNKNOWN_RUN,
            202: {"model": RunStatusOut, "description": "Running: its process is stopping it."},
            409: {"model": Problem, "description": "The run has already ended."},
        },
    )
    async def cancel_run(run_id: RunId, request: Request, response: Response) -> RunStatusOut:
        services = _services(request)
        run = await asyncio.to_thread(_require_run, services, run_id)
        if run.status in TERMINAL_STATUSES:
            raise HTTPException(409, f"run {run.id} has already ended ({run.status})")
        if _interrupted(run, stale_after=_stale_after(services)):
            # Its process is gone, so nobody would act on a cancel flag: requeue it, then cancel.
            await asyncio.to_thread(services.queue.recover, run)
        try:
            status = await services.executor.cancel(run.id)
        except RunStateError as exc:
            raise HTTPException(409, str(exc)) from exc
        log.info("api_cancel_requested", run_id=run.id, status=status)
        response.status_code = 202 if status == "running" else 200
        return RunStatusOut.model_validate({"run_id": run.id, "status": status})

    @router.post(
        "/runs/{run_id}/resume",
        summary="Queue a stopped run again, optionally with more budget",
        responses={
            **UNKNOWN_RUN,
            409: {"model": Problem, "description": "It passed, or it is queued or running."},
        },
    )
    async def resume_run(
        run_id: RunId,
        request: Request,
        extra: Annotated[ResumeRequest | None, Body()] = None,
    ) -> RunStatusOut:
        services = _services(request)
        budget = extra or ResumeRequest()
        await asyncio.to_thread(_resume, services, run_id, budget)
        log.info("api_run_resumed", run_id=run_id)
        services.executor.wake()
        return RunStatusOut(run_id=run_id, status="queued")


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _stale_after(services: Services) -> float:
    return services.executor.config.stale_after_seconds


def _interrupted(run: RunRow, *, stale_after: float) -> bool:
    return run_interrupted(run, stale_after=stale_after)


def _require_run(services: Services, run_id: str) -> RunRow:
    run = services.ledger.get_run(run_id)
    if run is None:
        raise HTTPException(404, f"no run {run_id!r}")
    return run


def _detail(services: Services, run_id: str) -> RunDetail:
    run = _require_run(services, run_id)
    job = services.ledger.get_job(run.job_id)
    turns = services.ledger.turns(run.id)
    stale = _stale_after(services)
    trace_url = services.tracing.link(run) if services.tracing is not None else None
    return run_detail(
        run, job, turns, interrupted=_interrupted(run, stale_after=stale), trace_url=trace_url
    )


def _check_cursor(cursor: str) -> None:
    # Only cursors this API handed out are accepted, so nothing odd reaches the database.
    position = decode_cursor(cursor)
    valid = (
        position is not None
        and math.isfinite(position[0])
        and re.fullmatch(RUN_ID_PATTERN, position[1]) is not None
    )
    if not valid:
        raise HTTPException(400, f"invalid cursor {cursor!r}: pass a previous page's next_cursor")


def _resume(services: Services, run_id: str, budget: ResumeRequest) -> None:
    run = _require_run(services, run_id)
    if run.status == "passed":
        raise HTTPException(409, f"run {run.id} passed; there is nothing to resume")
    if run.status == "queued":
        raise HTTPException(409, f"run {run.id} is queued already")
    brakes = budget.brakes(run.brakes)
    if run.status == "running":
        if not _interrupted(run, stale_after=_stale_after(services)):
            raise HTTPException(
                409, f"run {run.id} is still running (process {run.pid} on {run.host})"
            )
        if not services.queue.recover(run, brakes=brakes):
            raise HTTPException(409, f"run {run.id} changed while resuming it; try again")
        return
    try:
        services.queue.resume(run.id, brakes=brakes)
    except RunStateError as exc:
        raise HTTPException(409, str(exc)) from exc


def _prepare_job(services: Services, body: JobRequest) -> tuple[LoopJob, Workflow]:
    """The job `body` asks for, and its workflow; raises 422 with the reason if it cannot run."""
    workflow = services.catalog.get(body.workflow)
    if workflow is None:
        names = services.catalog.names()
        known = f"known workflows: {', '.join(names)}" if names else "no workflows are loaded"
        hint = did_you_mean(body.workflow, names)
        raise HTTPException(422, f"unknown workflow {body.workflow!r}{hint}; {known}")
    return to_loop_job(body, workdir=_workdir(body, workflow)), workflow


def _workdir(body: JobRequest, workflow: Workflow) -> str | None:
    if body.workdir is None:
        if workflow.workspace == "none":
            return None
        if body.repo is not None:
            raise HTTPException(
                422, "cloning a repository needs the GitHub integration; pass workdir"
            )
        raise HTTPException(
            422,
            f"workflow {workflow.name!r} works in a {workflow.workspace!r} workspace; "
            "pass workdir (a directory on the service host)",
        )
    shown = body.workdir if len(body.workdir) <= 200 else body.workdir[:200] + "…"
    path = Path(body.workdir)
    if not path.is_absolute():
        raise HTTPException(422, f"workdir {shown!r} is not an absolute path")
    try:
        resolved = path.resolve(strict=True)
        is_dir = resolved.is_dir()
    except FileNotFoundError as exc:
        raise HTTPException(422, f"workdir {shown!r} does not exist") from exc
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop
        raise HTTPException(422, f"workdir {shown!r} cannot be used: {exc}") from exc
    if not is_dir:
        raise HTTPException(422, f"workdir {shown!r} is not a directory")
    return str(resolved)
