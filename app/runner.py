"""Turns a stored run into a running loop: loads its frozen workflow, rebuilds its state from the
ledger, wires the engine's dependencies, and records the outcome.

Used by the CLI (`run`, `runs resume`) and, later, by the service's executor.
"""

from __future__ import annotations

import asyncio
import functools
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import structlog

from app.ledger import JobRow, Ledger, RunRow
from app.pricing import PriceBook, fallback_price
from app.run_queue import RunQueue
from app.settings import Settings
from app.tracing import Tracing
from checkers.factory import build_checker
from loops.brakes import Brakes
from loops.clock import Clock, SystemClock
from loops.engine import EngineDeps, RunState, run_loop
from loops.errors import WorkflowError, WorkspaceError
from loops.events import Listener, Outcome
from loops.jobs import LoopJob
from loops.model import ModelPort
from loops.processes import scrubbed_env
from loops.records import TurnRecord
from loops.tools import Toolbox
from loops.tracing import RunTracer
from loops.workflow_files import parse_workflow
from loops.workflows import Workflow
from loops.workspace import Workspace

log = structlog.get_logger("app.runner")


def default_model() -> ModelPort:
    from loops.litellm_model import LiteLLMModel

    return LiteLLMModel()


class RunHooks(Protocol):
    """What a trigger does around the runs of its jobs (a GitHub checkout and push)."""

    async def workspace(self, run: RunRow, job: JobRow, workflow: Workflow) -> Path:
        """The run's workspace, made ready (cloned, or reused when a resumed run has one).

        Raises:
            WorkspaceError: it cannot be made; the run ends `errored` with the reason.
        """
        ...

    async def publish(
        self, run: RunRow, job: JobRow, workflow: Workflow, outcome: Outcome, root: Path
    ) -> dict[str, object] | None:
        """Do what the outcome calls for with the work in `root` (push it, or keep its diff);
        returns what was done, kept as the run's ``extra["publish"]``. Never raises for a
        failure to publish: that is part of what it returns."""
        ...


@dataclass(kw_only=True)
class Runner:
    """Runs stored runs.

    Attributes:
        hooks: by job source, what prepares the workspace of a job that names no workdir and
            publishes its work when the run ends.
    """

    settings: Settings
    ledger: Ledger
    model: ModelPort = field(default_factory=default_model)
    clock: Clock = field(default_factory=SystemClock)
    hooks: dict[str, RunHooks] = field(default_factory=dict)
    tracing: Tracing | None = None

    def __post_init__(self) -> None:
        self.queue = RunQueue(self.ledger)
        lookup = getattr(self.model, "price", None)
        self.prices = PriceBook(
            lookup,
            fallback_price(
                self.settings.fallback_input_usd_per_mtok,
                self.settings.fallback_output_usd_per_mtok,
            ),
        )

    def submit(self, job: LoopJob, workflow: Workflow) -> tuple[JobRow, RunRow, bool]:
        """Store the job and its queued run; brakes and exit condition are frozen from here on."""
        return self.ledger.create_job(job, workflow=workflow)

    def run_dir(self, run_id: str) -> Path:
        return self.settings.runs_dir / run_id

    async def run(
        self,
        run_id: str,
        *,
        listeners: tuple[Listener, ...] = (),
        stop: asyncio.Event | None = None,
        run: RunRow | None = None,
        job: JobRow | None = None,
    ) -> Outcome:
        """Run a claimed run (status `running`, owned by this process) until it ends.

        The outcome is recorded: a run interrupted by a shutdown goes back to `queued`.

        Args:
            run: the run as claimed, if the caller has it (else it is read by `run_id`).
            job: the run's job, likewise.
        """
        claimed = (
            (run, job)
            if run is not None and job is not None
            else await asyncio.to_thread(self._load, run_id, run)
        )
        run, job = claimed
        structlog.contextvars.bind_contextvars(run_id=run.id, job_id=job.id)
        try:
            outcome, ran = await self._execute(run, job, listeners, stop)
            # Recorded first, so a cancel shows as soon as the loop has stopped; publishing
            # (a push can take seconds) follows, before the run's final report.
            await asyncio.to_thread(self._record, run.id, outcome)
            if ran is not None and outcome.status != "queued":
                await self._publish(run, job, outcome, *ran)
            return outcome
        finally:
            structlog.contextvars.unbind_contextvars("run_id", "job_id", "turn")

    async def _execute(
        self,
        run: RunRow,
        job: JobRow,
        listeners: tuple[Listener, ...],
        stop: asyncio.Event | None,
    ) -> tuple[Outcome, tuple[Workflow, Path] | None]:
        """The loop's outcome, and the workflow and workspace it ran in (None if it never
        started)."""
        try:
            workflow = frozen_workflow(job.workflow_source, job.workflow_path)
            root = await self._hooked_workspace(run, job, workflow)
            workspace, turns = await asyncio.to_thread(self._prepare, run, job, workflow, root)
        except (WorkflowError, WorkspaceError) as exc:
            log.warning("run_not_startable", reason=str(exc))
            failed = _failed(run, f"cannot start: {exc}")
            tracer = self._tracer(run, job, job.model or self.settings.model)
            if tracer is not None:
                tracer.finish(failed)
            return failed, None
        await self._load_model()
        deps = self._deps(run, job, workflow, workspace, listeners, stop)
        log.info("loop_started", workflow=workflow.name, model=deps.model_name)
        return await run_loop(deps, RunState.from_turns(turns)), (workflow, workspace.root)

    async def _load_model(self) -> None:
        """Let the model adapter load its library (litellm: seconds) in a worker thread, before
        the loop's first price lookup or call would load it on the event loop."""
        load = getattr(self.model, "load", None)
        if load is None:
            return
        try:
            await load()
        except Exception as exc:  # the first call fails the same way, where errors are mapped
            log.warning("model_load_failed", error=f"{type(exc).__name__}: {exc}"[:300])

    async def _hooked_workspace(self, run: RunRow, job: JobRow, workflow: Workflow) -> Path | None:
        hooks = self.hooks.get(job.source)
        if hooks is None or job.workdir or workflow.workspace == "none":
            return None
        return await hooks.workspace(run, job, workflow)

    async def _publish(
        self, run: RunRow, job: JobRow, outcome: Outcome, workflow: Workflow, root: Path
    ) -> None:
        hooks = self.hooks.get(job.source)
        if hooks is None or job.workdir or workflow.workspace == "none":
            return
        try:
            published = await hooks.publish(run, job, workflow, outcome, root)
        except Exception:  # the outcome is recorded: a bug here must not turn it into an error
            log.exception("publish_crashed")
            published = {"action": "failed", "reason": "internal error; see the service log"}
        if published is not None:
            await asyncio.to_thread(self.ledger.update_extra, run.id, publish=published)

    def _prepare(
        self, run: RunRow, job: JobRow, workflow: Workflow, root: Path | None = None
    ) -> tuple[Workspace, list[TurnRecord]]:
        """In a worker thread (it makes directories and writes): the run's workspace (`root`,
        when a hook made it), recorded in the ledger, and the turns it has done so far."""
        workspace = self._workspace(run, job, workflow, root)
        workdir = str(workspace.root)
        if run.workdir != workdir:
            self.ledger.set_workdir(run.id, workdir)
        # Every stored turn sets `turns_done`, so a run at 0 has none to read.
        return workspace, self.ledger.turns(run.id) if run.turns_done else []

    def _record(self, run_id: str, outcome: Outcome) -> None:
        if outcome.status == "queued":
            self.queue.requeue(run_id, reason=outcome.reason)
        else:
            self.ledger.finish_run(
                run_id, status=outcome.status, reason=outcome.reason, brake=outcome.brake
            )

    def _load(self, run_id: str, run: RunRow | None) -> tuple[RunRow, JobRow]:
        if run is None:
            run = self.ledger.find_run(run_id)
            if run is None:
                raise LookupError(f"no run {run_id!r}")
        job = self.ledger.get_job(run.job_id)
        assert job is not None, f"run {run_id!r} has no job"
        return run, job

    def _workspace(
        self, run: RunRow, job: JobRow, workflow: Workflow, made: Path | None = None
    ) -> Workspace:
        run_dir = self.run_dir(run.id)
        run_dir.mkdir(parents=True, exist_ok=True)
        if made is not None:
            root = made
        elif run.workdir:
            root = Path(run.workdir)
        elif job.workdir:
            root = Path(job.workdir)
        elif workflow.workspace == "none":
            root = run_dir / "workspace"
            root.mkdir(exist_ok=True)
        else:
            raise WorkspaceError(
                f"workflow {workflow.name!r} needs a workspace ({workflow.workspace!r}) "
                "but the job names no workdir"
            )
        if not root.is_dir():
            raise WorkspaceError(f"workdir {str(root)!r} is not a directory")
        return Workspace(root=root.resolve(), state_file=run_dir / "STATE.md")

    def _deps(
        self,
        run: RunRow,
        job: JobRow,
        workflow: Workflow,
        workspace: Workspace,
        listeners: tuple[Listener, ...],
        stop: asyncio.Event | None,
    ) -> EngineDeps:
        env = scrubbed_env()
        judge_model = (
            workflow.exit.judge.model if workflow.exit.judge else None
        ) or self.settings.judge_model
        model_name = job.model or workflow.model or self.settings.model
        model = self.model
        # Traced under the metering: every attempt, retried and failed ones too, is a span.
        tracer = self._tracer(run, job, model_name)
        if tracer is not None:
            model, listeners = tracer.model(model), (*listeners, tracer)
        return EngineDeps(
            run_id=run.id,
            workflow=workflow,
            brakes=run.brakes,
            model=model,
            model_name=model_name,
            checker=build_checker(workflow.exit, default_judge_model=judge_model),
            workspace=workspace,
            toolbox=Toolbox(
                workspace=workspace,
                enabled=workflow.tools,
                command_timeout=self.settings.tool_timeout_seconds,
                env=env,
            ),
            store=self.ledger,
            clock=self.clock,
            prices=self.prices,
            variables={
                "instruction": job.instruction,
                "repo": job.repo,
                "pr": job.pr,
                "source": job.source,
                "requested_by": job.requested_by,
            },
            check_env=env,
            listeners=listeners,
            stop=stop,
        )

    def _tracer(self, run: RunRow, job: JobRow, model_name: str) -> RunTracer | None:
        if self.tracing is None:
            return None
        return self.tracing.tracer(run, job, clock=self.clock, prices=self.prices, model=model_name)


@functools.lru_cache(maxsize=64)
def frozen_workflow(source: str, path: str) -> Workflow:
    """A job's workflow, parsed once per distinct text (YAML and Jinja cost ~1.4 ms a parse).

    Sharing one value between runs is safe: a `Workflow` is frozen.
    """
    return parse_workflow(source, path)


def resumed_brakes(ledger: Ledger, run: RunRow) -> tuple[Brakes | None, int]:
    """The brakes a run resumed from a chat command gets, and the turns they add.

    A braked run gets another round of its workflow's own budget (nothing a comment or message
    says can change it); any other run resumes with the brakes it had (None, 0).
    """
    if run.status != "braked":
        return None, 0
    job = ledger.get_job(run.job_id)
    if job is None:
        return None, 0
    base = frozen_workflow(job.workflow_source, job.workflow_path).brakes
    brakes = run.brakes.extended(
        turns=base.max_turns,
        cost_usd=base.max_cost_usd or 0.0,
        tokens=base.max_total_tokens or 0,
        seconds=base.max_wall_seconds or 0.0,
    )
    return brakes, base.max_turns


def _failed(run: RunRow, reason: str) -> Outcome:
    return Outcome(
        run_id=run.id,
        status="errored",
        reason=reason,
        turns=run.turns_done,
        usage=run.usage,
        elapsed_s=run.elapsed_s,
    )


def run_interrupted(run: RunRow, *, stale_after: float, now: float | None = None) -> bool:
    """Marked `running`, but its process is gone: dead on this host, or silent for longer than
    `stale_after` seconds (the same test the executor's stale-run recovery applies)."""
    if run.status != "running":
        return False
    cutoff = (time.time() if now is None else now) - stale_after
    silent = run.heartbeat_at is None or run.heartbeat_at < cutoff
    return silent or not process_alive(run.pid, run.host)


def process_alive(pid: int | None, host: str | None) -> bool:
    """Whether a run's recorded process still lives (only knowable on the same host)."""
    if pid is None:
        return False
    if host is not None and host != socket.gethostname():
        return True  # cannot tell from here; assume it does
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _not_zombie(pid)


def _not_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] != "Z"
