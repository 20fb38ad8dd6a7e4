"""Job intake: `POST /api/jobs` on the real service, next to a bare FastAPI endpoint.

Both servers run as subprocesses the way `loopwright serve` runs (uvicorn, one worker, the
stdlib event loop and httptools, no access log), and are loaded from a third process,
`load_generator`, with 32 keep-alive connections, each request with its own idempotency key.
The bare endpoint also runs on uvloop, as a comparison row: the service left uvloop because it
blocks the loop while spawning subprocesses, and the target is taken against the bare endpoint
served the same way as the service. The real service does everything an accepted job costs:
bearer check, body limit, validation, the workflow lookup, the durable SQLite insert (WAL,
synchronous=FULL) before the answer, the request metrics and the executor's wake-up. Jobs are
stored by the intake writer process (`app.intake_process`); concurrent jobs share a transaction
and its commit, but no job is answered before the commit that stores it.

The executor must not compete for the CPU while intake is measured, yet it must stay the real
one. So the service gets a single run slot (`LOOPWRIGHT_MAX_CONCURRENT_RUNS=1`), and before the
measurement one "blocker" job takes it: its model call goes to a local OpenAI-compatible server
that holds the answer until the end. Every measured job is then queued and stays queued; the
dispatcher still wakes on each one and finds no free slot, as in a busy service. The blocker's
model call also pays litellm's one-time import (seconds) before anything is timed.

Also here, since it starts the service anyway: seconds from spawning `loopwright serve` to its
first 200 on `/healthz`.
"""

from __future__ import annotations

import tempfile
import threading
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from app.ledger import Ledger
from app.run_queue import RunQueue
from tests.benchmarks.report import Row, median
from tests.benchmarks.serving import bare, bench_env, hold_executor, load, load_rows, server, stat
from tests.support.openai_server import Reply, ScriptedOpenAIServer
from tests.support.service import LOOPWRIGHT, TOKEN

NAME = "intake"
CONCURRENCY = 32
REQUESTS = 3000
WARMUP = 200
ROUNDS = 5  # interleaved service / bare rounds; each figure is the median over rounds (on a
# shared 2-core machine either variant may catch a slow second; five keep one such from moving it)
STARTS = 5
TARGET_RATIO = 0.5
TARGET_START_SECONDS = 1.5
WORKFLOW_NAME = "bench-intake"
LABEL = f"{NAME} POST /api/jobs ×{CONCURRENCY}"


def _service_env(root: Path, model_url: str) -> dict[str, str]:
    return bench_env(root, model_url, WORKFLOW_NAME)


def _serve(env: dict[str, str]) -> tuple[list[str], dict[str, str], int]:
    return [LOOPWRIGHT, "serve"], env, int(env["LOOPWRIGHT_PORT"])


def _start_seconds(env: dict[str, str], log: Path) -> list[float]:
    """Spawn to first healthy answer, `STARTS` times, after one unmeasured start that creates
    the ledger and warms the page cache (so every sample is a restart on an existing ledger)."""
    samples = []
    for attempt in range(STARTS + 1):
        with server(*_serve(env), log) as (_url, seconds):
            if attempt:
                samples.append(seconds)
    return samples


def _load(url: str, key_prefix: str) -> dict[str, Any]:
    return load(
        f"{url}/api/jobs",
        f"--token={TOKEN}",
        f"--workflow={WORKFLOW_NAME}",
        f"--key-prefix={key_prefix}",
        f"--concurrency={CONCURRENCY}",
        f"--requests={REQUESTS}",
        f"--warmup={WARMUP}",
        requests=REQUESTS,
    )


def _check_statuses(variant: str, result: dict[str, Any], expected: str) -> None:
    if result["statuses"] != {expected: REQUESTS}:
        raise RuntimeError(f"{variant}: expected {REQUESTS} × {expected}, got {result['statuses']}")


def _stored(env: dict[str, str]) -> dict[str, int]:
    """Runs in the service's ledger by status, read once the service has stopped."""
    ledger = Ledger(f"sqlite:///{Path(env['LOOPWRIGHT_DATA_DIR']) / 'loopwright.db'}")
    try:
        return RunQueue(ledger).counts()
    finally:
        ledger.close()


def _check_stored(env: dict[str, str]) -> None:
    """Every accepted job is in the ledger, and none of them ran meanwhile."""
    counts = _stored(env)
    accepted = ROUNDS * (REQUESTS + WARMUP)
    if sum(counts.values()) != accepted + 1 or counts.get("queued", 0) < accepted:
        raise RuntimeError(f"expected {accepted} queued runs and the blocker, found {counts}")


def _measure(root: Path) -> tuple[list[float], dict[str, list[dict[str, Any]]]]:
    gate = threading.Event()
    results: dict[str, list[dict[str, Any]]] = {"service": [], "bare": [], "bare-uvloop": []}
    with ScriptedOpenAIServer([Reply(content="held", gate=gate)]) as model, ExitStack() as stack:
        stack.callback(gate.set)  # after the servers stop: frees the model server's thread
        env = _service_env(root, model.url)
        starts = _start_seconds(env, root / "service.log")
        url, _ = stack.enter_context(server(*_serve(env), root / "service.log"))
        bare_urls = {
            "bare": bare(stack, root, "asyncio"),
            "bare-uvloop": bare(stack, root, "uvloop"),
        }
        hold_executor(url, model, WORKFLOW_NAME)
        for number in range(ROUNDS):
            service = _load(url, key_prefix=f"round{number}")
            _check_statuses("service", service, "202")
            results["service"].append(service)
            for variant, bare_url in bare_urls.items():
                answered = _load(bare_url, key_prefix=f"round{number}")
                _check_statuses(variant, answered, "202")
                results[variant].append(answered)
    _check_stored(env)
    return starts, results


def _rows(starts: list[float], results: dict[str, list[dict[str, Any]]]) -> list[Row]:
    service_rps = stat(results["service"], "rps")
    ratio = service_rps / stat(results["bare"], "rps")
    uvloop_ratio = service_rps / stat(results["bare-uvloop"], "rps")
    start = median(starts)
    counts = f"median of {ROUNDS} rounds of {REQUESTS} after {WARMUP} warm-up"
    return [
        Row(
            benchmark=f"{NAME} start-up",
            variant="loopwright serve: spawn → first 200 /healthz",
            value=start,
            unit="s",
            note=f"target < {TARGET_START_SECONDS:g} s: "
            f"{'met' if start < TARGET_START_SECONDS else 'MISSED'} (median of {STARTS})",
        ),
        *load_rows(
            LABEL,
            "bare FastAPI 202",
            results["bare"],
            f"baseline, stores nothing, stdlib loop as served; {counts}",
        ),
        *load_rows(
            LABEL,
            "bare FastAPI 202 on uvloop",
            results["bare-uvloop"],
            f"comparison only, stores nothing; {counts}",
        ),
        *load_rows(
            LABEL,
            "loopwright intake",
            results["service"],
            f"SQLite, stored before the answer (intake writer process); {counts}",
        ),
        Row(
            benchmark=LABEL,
            variant="intake ÷ bare throughput",
            value=ratio,
            unit="×",
            note=f"target ≥ {TARGET_RATIO:g}: {'met' if ratio >= TARGET_RATIO else 'MISSED'}",
        ),
        Row(
            benchmark=LABEL,
            variant="intake ÷ bare on uvloop throughput",
            value=uvloop_ratio,
            unit="×",
            note="comparison only: the service does not run on uvloop",
        ),
    ]


def run() -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="loopwright-bench-intake-") as tmp:
        return _rows(*_measure(Path(tmp)))
