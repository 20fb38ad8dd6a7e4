"""The executor against a real SQLite ledger: limits, per-key order, cancel, shutdown, recovery."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import time
from pathlib import Path

import pytest

import app.runner
from app.executor import Executor, ExecutorConfig
from app.ledger import Ledger
from app.reports import ReportHub
from app.run_queue import Claim
from app.runner import Runner, frozen_workflow
from app.settings import Settings
from loops.jobs import LoopJob
from loops.model import ModelRequest, ModelResponse
from loops.reporting import RunReport
from loops.testing import FunctionModel, reply, tool_call
from loops.workflow_files import parse_workflow

WORKFLOW = """\
---
name: quick
tools: [run, note]
brakes: {max_turns: 3, max_wall_seconds: 120}
exit: {checks: ["true"]}
---
{{ instruction }}
"""
FAST = ExecutorConfig(
    max_concurrent_runs=2,
    poll_seconds=0.05,
    watch_seconds=0.1,
    heartbeat_seconds=0.5,
    recover_every_seconds=0.5,
    shutdown_grace_seconds=1,
)


class Maker:
    """A model that works for `delay` seconds per call, or runs `command` when told to."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.active = 0
        self.peak = 0
        self.order: list[str] = []
        self.calls = 0

    async def __call__(self, request: ModelRequest) -> ModelResponse:
        task = request.messages[1].content.split("\n")[0]
        self.calls += 1
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            if task.startswith("run:") and len(request.messages) == 2:
                return reply("", tool_call("run", command=task.removeprefix("run:")))
            self.order.append(task)
            await asyncio.sleep(self.delay)
            return reply(f"did {task}")
        finally:
            self.active -= 1


def setup(tmp_path: Path, maker: Maker, *, name: str = "a") -> tuple[Runner, Ledger]:
    settings = Settings(data_dir=tmp_path / "var", workflows_dir=tmp_path)
    ledger = Ledger(settings.ledger_url)
    ledger.migrate()
    return Runner(settings=settings, ledger=ledger, model=FunctionModel(maker)), ledger


def submit(runner: Runner, tmp_path: Path, instruction: str, key: str | None = None) -> str:
    job = LoopJob(
        workflow="quick",
        source="api",
        instruction=instruction,
        workdir=str(tmp_path),
        concurrency_key=key,
    )
    _, run, _ = runner.submit(job, parse_workflow(WORKFLOW, "quick.md"))
    return run.id


async def wait_for(ledger: Ledger, run_ids: list[str], statuses: set[str], timeout: float = 20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = [ledger.get_run(r) for r in run_ids]
        if all(r is not None and r.status in statuses for r in runs):
            return runs
        await asyncio.sleep(0.05)
    raise AssertionError(f"runs did not reach {statuses}: {[ledger.get_run(r) for r in run_ids]}")


async def test_global_limit_is_never_exceeded(tmp_path):
    maker = Maker(delay=0.2)
    runner, ledger = setup(tmp_path, maker)
    ids = [submit(runner, tmp_path, f"job {i}") for i in range(6)]
    executor = Executor(runner=runner, config=FAST)
    await executor.start()
    try:
        runs = await wait_for(ledger, ids, {"passed"})
    finally:
        await executor.shutdown()
    assert maker.peak == 2
    assert all(r.status == "passed" for r in runs)


async def test_claims_in_small_batches_still_fill_every_free_slot_at_once(tmp_path):
    maker = Maker(delay=0.5)
    runner, ledger = setup(tmp_path, maker)
    ids = [submit(runner, tmp_path, f"job {i}") for i in range(10)]
    # No polling meanwhile: the start-up fill alone must start all eight.
    config = dataclasses.replace(FAST, max_concurrent_runs=8, claim_batch=3, poll_seconds=30)
    executor = Executor(runner=runner, config=config)
    await executor.start()
    try:
        runs = await wait_for(ledger, ids, {"passed"})
    finally:
        await executor.shutdown()
    assert maker.peak == 8
    assert all(r.status == "passed" for r in runs)


async def test_runs_get_their_claimed_rows_and_one_parse_of_their_workflow(tmp_path, monkeypatch):
    runner, ledger = setup(tmp_path, Maker())
    ids = [submit(runner, tmp_path, f"job {i}") for i in range(4)]
    reads: list[str] = []
    parses: list[str] = []
    parse = app.runner.parse_workflow
    monkeypatch.setattr(ledger, "get_job", lambda job_id: reads.append(job_id))
    monkeypatch.setattr(ledger, "find_run", lambda run_id: reads.append(run_id))
    monkeypatch.setattr(
        app.runner, "parse_workflow", lambda text, path: parses.append(path) or parse(text, path)
    )
    frozen_workflow.cache_clear()
    executor = Executor(runner=runner, config=FAST)
    await executor.start()
    try:
        runs = await wait_for(ledger, ids, {"passed", "errored"})
    finally:
        await executor.shutdown()
    assert [r.status for r in runs] == ["passed"] * 4, [r.reason for r in runs]
    assert reads == []  # the claim read each run and its job; nothing read them again
    assert parses == ["quick.md"]
    assert {r.workdir for r in runs} == {str(tmp_path.resolve())}


async def test_runs_claimed_while_shutting_down_go_back_to_the_queue(tmp_path, monkeypatch):
    runner, ledger = setup(tmp_path, Maker())
    run_id = submit(runner, tmp_path, "late")
    executor = Executor(runner=runner, config=FAST)
    claim_next = runner.queue.claim_next
    stopping = []

    def claim_during_shutdown(*args, **kwargs):
        claimed = claim_next(*args, **kwargs)
        stopping.append(asyncio.run_coroutine_threadsafe(executor.shutdown(), loop))
        time.sleep(0.2)  # the shutdown has begun by the time the claim returns
        return claimed

    loop = asyncio.get_running_loop()
    monkeypatch.setattr(runner.queue, "claim_next", claim_during_shutdown)
    await executor.start()
    while not stopping:
        await asyncio.sleep(0.01)
    await asyncio.wrap_future(stopping[0])
    run = ledger.get_run(run_id)
    assert (run.status, run.reason) == ("queued", "interrupted: the service is stopping")
    assert executor.tasks == {}


async def test_one_run_per_concurrency_key_in_arrival_order(tmp_path):
    maker = Maker(delay=0.1)
    runner, ledger = setup(tmp_path, maker)
    ids = [submit(runner, tmp_path, f"pr {i}", key="repo:o/r#1") for i in range(3)]
    ids.append(submit(runner, tmp_path, "other", key="repo:o/r#2"))
    executor = Executor(runner=runner, config=FAST)
    await executor.start()
    try:
        await wait_for(ledger, ids, {"passed"})
    finally:
        await executor.shutdown()
    same_key = [t for t in maker.order if t.startswith("pr")]
    assert same_key == ["pr 0", "pr 1", "pr 2"]
    assert maker.peak == 2  # the other key ran alongside, never two of one key


async def test_a_second_running_run_with_the_same_key_is_refused_by_the_database(tmp_path):
    runner, ledger = setup(tmp_path, Maker())
    first = submit(runner, tmp_path, "one", key="k")
    second = submit(runner, tmp_path, "two", key="k")
    claim = Claim(owner="x", pid=os.getpid(), host="h")
    assert runner.queue.claim(first, claim)
    assert not runner.queue.claim(second, claim)
    assert ledger.get_run(second).status == "queued"


async def test_cancel_request_from_anywhere_stops_a_running_tool_within_two_seconds(tmp_path):
    runner, ledger = setup(tmp_path, Maker())
    pidfile = tmp_path / "sleep.pid"
    run_id = submit(runner, tmp_path, f"run:sh -c 'echo $$ > {pidfile}; exec sleep 60'")
    executor = Executor(runner=runner, config=FAST)
    await executor.start()
    try:
        for _ in range(200):
            if pidfile.exists() and pidfile.read_text().strip():
                break
            await asyncio.sleep(0.05)
        sleeper = int(pidfile.read_text())
        asked = time.monotonic()
        # Another process (the API, the CLI) only writes the request to the ledger.
        assert runner.queue.request_cancel(run_id) == "running"
        await wait_for(ledger, [run_id], {"cancelled"}, timeout=5)
        took = time.monotonic() - asked
    finally:
        await executor.shutdown()
    assert took < 2.0
    assert not _alive(sleeper)
    (turn,) = ledger.turns(run_id)
    assert turn.interrupted == "cancelled"


async def test_graceful_shutdown_requeues_and_the_next_start_finishes_it(tmp_path):
    maker = Maker(delay=3.0)
    runner, ledger = setup(tmp_path, maker)
    run_id = submit(runner, tmp_path, "slow work")
    executor = Executor(runner=runner, config=FAST)
    await executor.start()
    await wait_for(ledger, [run_id], {"running"})
    await asyncio.sleep(0.3)
    started = time.monotonic()
    await executor.shutdown()
    assert time.monotonic() - started < FAST.shutdown_grace_seconds + 3
    run = ledger.get_run(run_id)
    assert run.status == "queued"
    assert [t.interrupted for t in ledger.turns(run_id)] == [
        "interrupted by a shutdown; it resumes on the next start"
    ]

    maker.delay = 0.0
    again = Executor(runner=runner, config=FAST)
    await again.start()
    try:
        (run,) = await wait_for(ledger, [run_id], {"passed"})
    finally:
        await again.shutdown()
    assert [t.number for t in ledger.turns(run_id)] == [1, 2]


async def test_two_processes_recover_a_crashed_run_exactly_once(tmp_path):
    maker = Maker(delay=0.1)
    runner_a, ledger = setup(tmp_path, maker)
    run_id = submit(runner_a, tmp_path, "orphan")
    dead = subprocess.Popen(["true"])
    dead.wait()
    assert runner_a.queue.claim(run_id, Claim(owner="gone", pid=dead.pid, host=os.uname().nodename))
    runner_b, _ = setup(tmp_path, maker)
    a = Executor(runner=runner_a, config=FAST)
    b = Executor(runner=runner_b, config=FAST)
    await asyncio.gather(a.start(), b.start())
    try:
        (run,) = await wait_for(ledger, [run_id], {"passed"})
    finally:
        await asyncio.gather(a.shutdown(), b.shutdown())
    assert maker.order == ["orphan"]
    assert run.attempts == 2
    assert [t.number for t in ledger.turns(run_id)] == [1]


async def test_reporting_failures_are_retried_and_never_fail_the_run(tmp_path):
    class Flaky:
        def __init__(self) -> None:
            self.calls = 0
            self.seen: list[RunReport] = []

        async def report(self, report: RunReport) -> None:
            self.calls += 1
            if self.calls % 2:
                raise ConnectionError("chat service down")
            self.seen.append(report)

    flaky = Flaky()
    runner, ledger = setup(tmp_path, Maker())
    hub = ReportHub({"api": flaky}, base_delay=0.01)
    hub.start()
    run_id = submit(runner, tmp_path, "reported")
    executor = Executor(runner=runner, config=FAST, reports=hub)
    await executor.start()
    try:
        (run,) = await wait_for(ledger, [run_id], {"passed"})
    finally:
        await executor.shutdown()
        await hub.stop()
    assert run.status == "passed"
    assert [r.kind for r in flaky.seen] == ["started", "turn_finished", "finished"]
    assert flaky.seen[-1].status == "passed"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rpartition(")")[2].split()[0] != "Z"


@pytest.fixture(autouse=True)
def _quiet_logs():
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
