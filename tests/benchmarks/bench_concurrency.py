"""500 concurrent runs in one process: memory per run, event-loop lag and wall time.

The executor (500 slots, SQLite ledger in a temporary directory) runs 500 queued jobs against a
model that takes 1 s per call and answers with a final text at once; each run is one maker
call, then its exit check, a real `true` subprocess, passes. The baseline is the same 500 model
calls alone: 500 tasks awaiting the same model double, so the difference is the engine's share.

Each variant runs in a fresh child process (`python -m tests.benchmarks.bench_concurrency
VARIANT`), so none inherits another's memory. The baseline and the executor run on the stdlib
event loop, as `loopwright serve` does; the executor runs once more on uvloop, as a comparison
row: uvloop spawns subprocesses on the loop thread, so every check's spawn shows as lag there.

Memory is the child's resident set (VmRSS, sampled every 100 ms by a thread that does not
depend on the event loop): before the runs start, after imports and set-up, and at peak. Lag is
measured by a task that sleeps 10 ms in a loop and records how late it wakes.
The check subprocesses' own memory is not counted.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import structlog

from app.executor import Executor, ExecutorConfig
from app.ledger import Ledger
from app.runner import Runner
from app.settings import Settings
from loops.jobs import LoopJob
from loops.model import Message, ModelRequest, ModelResponse
from loops.testing import FunctionModel, reply
from loops.workflow_files import parse_workflow
from tests.benchmarks.report import Row, percentile

NAME = "concurrency"
RUNS = 500
MODEL_SECONDS = 1.0
PROBE_SECONDS = 0.010
SAMPLE_SECONDS = 0.100
TIMEOUT_SECONDS = 300.0
TARGET_LAG_P99_MS = 50.0
REPO = Path(__file__).resolve().parents[2]
VARIANTS = {
    "baseline": "model calls alone",
    "engine": "loopwright executor",
    "engine-uvloop": "executor on uvloop (comparison)",
}
WORKFLOW = """\
---
name: bench-concurrency
workspace: none
tools: []
brakes: {max_turns: 1, max_wall_seconds: 600}
exit: {checks: ["true"]}
---
{{ instruction }}
"""


class SlowModel:
    """The model double: every call takes `MODEL_SECONDS`; counts how many are in flight."""

    def __init__(self) -> None:
        self.active = 0
        self.peak = 0
        self.calls = 0
        self.first = self.last = 0.0  # when the first and the last call started

    async def __call__(self, request: ModelRequest) -> ModelResponse:
        self.last = time.perf_counter()
        self.first = self.first or self.last
        self.calls += 1
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            await asyncio.sleep(MODEL_SECONDS)
        finally:
            self.active -= 1
        return reply("Hello.")


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


@contextmanager
def rss_peak() -> Iterator[list[int]]:
    """Samples the resident set every `SAMPLE_SECONDS` from a thread; yields the samples."""
    samples = [rss_bytes()]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(SAMPLE_SECONDS):
            samples.append(rss_bytes())

    sampler = threading.Thread(target=sample, name="rss-sampler", daemon=True)
    sampler.start()
    try:
        yield samples
    finally:
        stop.set()
        sampler.join()
        samples.append(rss_bytes())


async def lag_probe(lags: list[float], stop: asyncio.Event) -> None:
    """Sleeps `PROBE_SECONDS` in a loop; records how much later than asked each wake-up is."""
    while not stop.is_set():
        started = time.perf_counter()
        await asyncio.sleep(PROBE_SECONDS)
        lags.append(time.perf_counter() - started - PROBE_SECONDS)


async def observe(work: Callable[[], Awaitable[None]]) -> dict[str, Any]:
    """Runs `work` with the lag probe and the memory sampler going; returns what they saw."""
    gc.collect()
    before = rss_bytes()
    lags: list[float] = []
    stop = asyncio.Event()
    with rss_peak() as samples:
        probe = asyncio.create_task(lag_probe(lags, stop))
        started = time.perf_counter()
        try:
            await work()
        finally:
            wall = time.perf_counter() - started
            stop.set()
            await probe
    return {
        "rss_before": before,
        "rss_peak": max(samples),
        "wall_s": wall,
        "lag_p50_ms": percentile(lags, 0.50) * 1000,
        "lag_p99_ms": percentile(lags, 0.99) * 1000,
        "lag_max_ms": max(lags) * 1000,
    }


async def baseline() -> dict[str, Any]:
    slow = SlowModel()
    model = FunctionModel(slow)
    request = ModelRequest(model="scripted", messages=(Message(role="user", content="Hi."),))

    async def calls() -> None:
        await asyncio.gather(*(model.complete(request) for _ in range(RUNS)))

    result = await observe(calls)
    return {**result, **_calls(slow)}


def _calls(slow: SlowModel) -> dict[str, Any]:
    return {
        "model_calls": slow.calls,
        "peak_in_flight": slow.peak,
        "spread_s": slow.last - slow.first,
    }


async def _wait_passed(runner: Runner) -> None:
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        counts = await asyncio.to_thread(runner.queue.counts)
        if counts.get("passed", 0) == RUNS:
            return
        ended = sum(n for status, n in counts.items() if status not in ("queued", "running"))
        if ended > counts.get("passed", 0):
            raise RuntimeError(f"runs ended other than passed: {counts}")
        await asyncio.sleep(SAMPLE_SECONDS)
    raise RuntimeError(f"runs did not all pass within {TIMEOUT_SECONDS:g} s: {counts}")


def _runner(root: Path, slow: SlowModel) -> Runner:
    settings = Settings(data_dir=root / "var", workflows_dir=root)
    ledger = Ledger(settings.ledger_url)
    ledger.migrate()
    runner = Runner(settings=settings, ledger=ledger, model=FunctionModel(slow))
    workflow = parse_workflow(WORKFLOW, "bench-concurrency.md")
    for number in range(RUNS):
        job = LoopJob(workflow=workflow.name, source="api", instruction=f"Say hello ({number}).")
        runner.submit(job, workflow)
    return runner


async def engine(root: Path) -> dict[str, Any]:
    slow = SlowModel()
    runner = _runner(root, slow)
    executor = Executor(runner=runner, config=ExecutorConfig(max_concurrent_runs=RUNS))

    async def runs() -> None:
        await executor.start()
        await _wait_passed(runner)

    try:
        result = await observe(runs)
    finally:
        await executor.shutdown()
        runner.ledger.close()
    return {**result, **_calls(slow)}


def quiet_logs() -> None:
    """Warnings and errors only, on stderr: stdout carries the child's JSON answer."""
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )


def child(variant: str) -> dict[str, Any]:
    import uvloop

    quiet_logs()
    run_on = uvloop.run if variant.endswith("uvloop") else asyncio.run
    if variant == "baseline":
        return run_on(baseline())
    with tempfile.TemporaryDirectory(prefix="loopwright-bench-concurrency-") as tmp:
        return run_on(engine(Path(tmp)))


def _measure(variant: str) -> dict[str, Any]:
    argv = [sys.executable, "-m", "tests.benchmarks.bench_concurrency", variant]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    done = subprocess.run(
        argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=TIMEOUT_SECONDS + 60
    )
    if done.returncode != 0:
        raise RuntimeError(f"{variant} child failed: {done.stderr.strip()[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _mib(n: float) -> float:
    return n / (1 << 20)


def _variant_rows(variant: str, result: dict[str, Any]) -> list[Row]:
    label = f"{NAME} {RUNS} runs, model {MODEL_SECONDS:g} s/call"
    name = VARIANTS[variant]
    grown = result["rss_peak"] - result["rss_before"]
    lag_p99 = result["lag_p99_ms"]
    verdict = "met" if lag_p99 < TARGET_LAG_P99_MS else "MISSED"
    target = {
        "engine": f"target < {TARGET_LAG_P99_MS:g} ms: {verdict}; ",
        "engine-uvloop": "comparison only, not how the service runs; ",
    }.get(variant, "")
    ended = "all calls answered" if variant == "baseline" else "executor start → all passed"
    return [
        Row(
            benchmark=label,
            variant=f"{name}: RSS before → peak",
            value=f"{_mib(result['rss_before']):.1f} → {_mib(result['rss_peak']):.1f}",
            unit="MiB",
            note=f"at most {result['peak_in_flight']} of {result['model_calls']} model calls "
            "in flight at once",
        ),
        Row(
            benchmark=label,
            variant=f"{name}: memory per run",
            value=grown / RUNS / 1024,
            unit="KiB",
            note=f"(peak − before) ÷ {RUNS}; "
            f"{grown / max(result['peak_in_flight'], 1) / 1024:.1f} KiB per run in flight at peak",
        ),
        Row(
            benchmark=label,
            variant=f"{name}: event-loop lag p50",
            value=result["lag_p50_ms"],
            unit="ms",
            note=f"overshoot of a {PROBE_SECONDS * 1000:g} ms sleep",
        ),
        Row(
            benchmark=label,
            variant=f"{name}: event-loop lag p99",
            value=lag_p99,
            unit="ms",
            note=f"{target}max {result['lag_max_ms']:.1f} ms",
        ),
        Row(
            benchmark=label,
            variant=f"{name}: wall time",
            value=result["wall_s"],
            unit="s",
            note=f"{ended}; model calls started over {result['spread_s']:.2f} s",
        ),
    ]


def _share_row(results: dict[str, dict[str, Any]]) -> Row:
    base, ours = results["baseline"], results["engine"]
    grown = (ours["rss_peak"] - ours["rss_before"]) - (base["rss_peak"] - base["rss_before"])
    return Row(
        benchmark=f"{NAME} {RUNS} runs, model {MODEL_SECONDS:g} s/call",
        variant="engine's share of memory per run",
        value=grown / RUNS / 1024,
        unit="KiB",
        note=f"{VARIANTS['engine']} − {VARIANTS['baseline']}, per run",
    )


def run() -> list[Row]:
    results = {variant: _measure(variant) for variant in VARIANTS}
    rows = [row for variant, result in results.items() for row in _variant_rows(variant, result)]
    return [*rows, _share_row(results)]


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in VARIANTS:
        sys.exit(f"usage: python -m tests.benchmarks.bench_concurrency {{{','.join(VARIANTS)}}}")
    print(json.dumps(child(sys.argv[1])))
