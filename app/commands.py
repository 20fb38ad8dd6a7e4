"""What each `loopwright` subcommand does."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.ledger import Ledger, RunRow
    from app.run_queue import Claim
    from app.runner import Runner
    from app.settings import Settings
    from loops.events import Outcome
    from loops.workflows import Workflow

STATUS_EXIT = {"passed": 0, "errored": 1, "braked": 3, "stuck": 4, "cancelled": 130}


class UsageProblem(Exception):
    """Bad input from the person at the terminal: printed, exit status 2."""


def dispatch(args: argparse.Namespace) -> int:
    handlers: dict[str, Callable[[argparse.Namespace], int]] = {
        "serve": cmd_serve,
        "run": cmd_run,
        "runs": cmd_runs,
        "workflows": cmd_workflows,
        "schedules": cmd_schedules,
        "regress": cmd_regress,
    }
    return handlers[args.command](args)


def _settings() -> Settings:
    from app.logs import configure_logging
    from app.settings import load_settings

    settings = load_settings()
    configure_logging(settings.log_format)
    return settings


def _ledger(settings: Settings) -> Ledger:
    from app.ledger import Ledger

    ledger = Ledger(settings.ledger_url)
    ledger.migrate()
    return ledger


def cmd_serve(args: argparse.Namespace) -> int:
    import structlog
    import uvicorn

    from app.service import create_app

    settings = _settings()
    host = args.host or settings.host
    port = args.port or settings.port
    app = create_app(settings)
    structlog.get_logger("app.service").info("service_listening", url=f"http://{host}:{port}")
    # uvicorn turns SIGINT/SIGTERM into a graceful shutdown: the lifespan drains the executor.
    # The stdlib loop, not uvloop: uvloop spawns subprocesses on the loop thread (~7 ms each,
    # measured), and every tool and check is a subprocess.
    uvicorn.run(
        app,
        host=host,
        port=port,
        loop="asyncio",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds) + 5,
    )
    return 0


def cmd_workflows(args: argparse.Namespace) -> int:
    from loops.workflow_files import check_paths

    paths = [Path(p) for p in args.paths] or [_settings().workflows_dir]
    workflows, problems = check_paths(paths)
    for workflow in workflows:
        print(f"ok   {workflow.path}: {workflow.summary()}")
    for problem in problems:
        print(str(problem), file=sys.stderr)
    if not workflows and not problems:
        print(f"no workflow files under {', '.join(map(str, paths))}", file=sys.stderr)
        return 1
    return 1 if problems else 0


def cmd_schedules(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from app.schedule_views import list_schedules

    if args.count < 1:
        raise UsageProblem(f"--count must be at least 1, not {args.count}")
    settings = _settings()
    list_schedules(
        settings.workflows_dir, now=datetime.now(UTC), count=args.count, as_json=args.json
    )
    return 0


def cmd_regress(args: argparse.Namespace) -> int:
    from app.regress_cli import RegressProblem, cmd_regress

    try:
        return cmd_regress(args, _settings())
    except RegressProblem as exc:
        raise UsageProblem(str(exc)) from exc


def cmd_run(args: argparse.Namespace) -> int:
    from loops.jobs import LoopJob

    settings = _settings()
    workflow = _find_workflow(settings, args.workflow)
    workdir = Path(args.workdir).resolve()
    if not workdir.is_dir():
        raise UsageProblem(f"--workdir {args.workdir!r} is not a directory")
    job = LoopJob(
        workflow=workflow.name,
        source="cli",
        instruction=args.instruction,
        workdir=str(workdir),
        model=args.model,
        requested_by=os.environ.get("USER"),
    )
    runner = _runner(settings)
    _, run, _ = runner.queue.submit_claimed(job, workflow, local_claim())
    print(f"run {run.id} · {workflow.summary()}", flush=True)
    return _foreground(runner, run)


def _find_workflow(settings: Settings, ref: str) -> Workflow:
    from loops.errors import WorkflowError
    from loops.workflow_files import load_workflow, load_workflows

    path = Path(ref)
    try:
        if ref.endswith(".md") or path.is_file():
            return load_workflow(path)
        found, problems = load_workflows(settings.workflows_dir)
    except WorkflowError as exc:
        raise UsageProblem(str(exc)) from exc
    if ref in found:
        return found[ref]
    hint = "; ".join(str(p) for p in problems if Path(p.path).stem == ref)
    known = ", ".join(sorted(found)) or "none"
    raise UsageProblem(
        hint or f"unknown workflow {ref!r} in {str(settings.workflows_dir)!r} (known: {known})"
    )


def _runner(settings: Settings, ledger: Ledger | None = None) -> Runner:
    from app.runner import Runner
    from app.tracing import secret_values, start_tracing

    ledger = ledger or _ledger(settings)
    tracing = start_tracing(
        settings.opik, capture_content=settings.trace_content, secrets=secret_values(settings)
    )
    return Runner(settings=settings, ledger=ledger, tracing=tracing)


def local_claim() -> Claim:
    import socket

    from app.run_queue import Claim

    return Claim(
        owner=f"cli:{socket.gethostname()}:{os.getpid()}",
        pid=os.getpid(),
        host=socket.gethostname(),
    )


def _foreground(runner: Runner, run: RunRow) -> int:
    """Run to the end. Ctrl-C, SIGTERM or `runs cancel` (from anywhere) cancel the loop,
    which records `cancelled`; a heartbeat tells services sharing the ledger it is alive."""
    from app.progress import ProgressPrinter

    run_id = run.id
    trace_url = runner.tracing.url_for(run) if runner.tracing is not None else None

    async def go() -> Outcome:
        task = asyncio.create_task(runner.run(run_id, listeners=(ProgressPrinter(),)))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        watcher = asyncio.create_task(_watch(runner, run_id, task))
        try:
            return await task
        finally:
            watcher.cancel()

    try:
        outcome = asyncio.run(go())
    finally:
        if runner.tracing is not None:
            runner.tracing.close()  # bounded by OPIK_DEFAULT_FLUSH_TIMEOUT
    if trace_url:
        print(f"trace {trace_url}", flush=True)
    return STATUS_EXIT.get(outcome.status, 1)


async def _watch(runner: Runner, run_id: str, task: asyncio.Task[Outcome]) -> None:
    beats = 0
    while not task.done():
        await asyncio.sleep(0.5)
        beats += 1
        if await asyncio.to_thread(runner.queue.cancel_requested, [run_id]):
            task.cancel()
            return
        if beats % 10 == 0:
            await asyncio.to_thread(runner.queue.heartbeat, [run_id])


def cmd_runs(args: argparse.Namespace) -> int:
    from app import run_views

    settings = _settings()
    ledger = _ledger(settings)
    action = args.runs_command
    if action == "list":
        return run_views.list_runs(ledger, args)
    run = ledger.find_run(args.run)
    if run is None:
        raise UsageProblem(f"no run {args.run!r}")
    if action == "show":
        from app.tracing import Tracing

        trace_url = Tracing(settings.opik, None).link(run)
        return run_views.show_run(ledger, run, as_json=args.json, trace_url=trace_url)
    if action == "cancel":
        return _cancel(ledger, run)
    return _resume(settings, ledger, run, args)


def _cancel(ledger: Ledger, run: RunRow) -> int:
    from app.run_queue import RunQueue, RunStateError
    from app.runner import process_alive

    queue = RunQueue(ledger)
    if run.status == "running" and not process_alive(run.pid, run.host):
        queue.recover(run)  # its process is gone: cancelling it is just bookkeeping
    try:
        status = queue.request_cancel(run.id)
    except RunStateError as exc:
        raise UsageProblem(str(exc)) from exc
    if status == "running":
        print(f"run {run.id}: cancel requested; process {run.pid} stops it within seconds")
    else:
        print(f"run {run.id}: cancelled")
    return 0


def _resume(settings: Settings, ledger: Ledger, run: RunRow, args: argparse.Namespace) -> int:
    from app.run_queue import RunStateError
    from app.runner import process_alive

    runner = _runner(settings, ledger)
    if run.status == "running":
        if process_alive(run.pid, run.host):
            raise UsageProblem(f"run {run.id} is still running in process {run.pid}")
        runner.queue.recover(run)
    extra = (args.add_turns, args.add_cost, args.add_tokens, args.add_seconds)
    brakes = (
        run.brakes.extended(
            turns=args.add_turns,
            cost_usd=args.add_cost,
            tokens=args.add_tokens,
            seconds=args.add_seconds,
        )
        if any(extra)
        else None
    )
    try:
        resumed = runner.queue.resume(run.id, brakes=brakes, claim=local_claim())
    except RunStateError as exc:
        raise UsageProblem(str(exc)) from exc
    print(f"resuming run {run.id} after turn {resumed.turns_done} ({run.status})", flush=True)
    return _foreground(runner, resumed)


def dump_json(value: object) -> None:
    print(json.dumps(value, indent=2, default=str))
