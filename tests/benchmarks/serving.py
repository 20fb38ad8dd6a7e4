"""What the HTTP benchmarks share: server processes started the way `loopwright serve` runs,
the bare FastAPI baseline beside them, the executor held busy, and the load generator.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.benchmarks.report import Row, median
from tests.support.openai_server import ScriptedOpenAIServer
from tests.support.service import TOKEN, free_port, service_env

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


def wait_healthy(proc: subprocess.Popen[bytes], url: str, log: Path, started: float) -> float:
    """Seconds from `started` (monotonic) until `url/healthz` answers 200, polled every 10 ms."""
    timeout = 60.0
    with httpx.Client(timeout=0.5) as client:
        while time.monotonic() - started < timeout:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args!r} exited: {log.read_text()[-2000:]}")
            try:
                if client.get(f"{url}/healthz").status_code == 200:
                    return time.monotonic() - started
            except httpx.TransportError:
                pass
            time.sleep(0.01)
    raise RuntimeError(f"{proc.args!r} did not answer /healthz: {log.read_text()[-2000:]}")


@contextmanager
def server(
    argv: Sequence[str], env: dict[str, str], port: int, log: Path
) -> Iterator[tuple[str, float]]:
    """A server process listening on `port`: yields its URL and the seconds it took to answer."""
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield url, wait_healthy(proc, url, log, started)
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def bare(stack: ExitStack, root: Path, loop: str = "asyncio") -> str:
    """The bare FastAPI baseline (`bare_service`) on `loop`, running until `stack` closes."""
    port = free_port()
    argv = [PYTHON, "-m", "tests.benchmarks.bare_service", str(port), loop]
    url, _ = stack.enter_context(server(argv, dict(os.environ), port, root / f"bare-{loop}.log"))
    return url


def hold_executor(url: str, model: ScriptedOpenAIServer, workflow: str) -> None:
    """Queue a blocker run of `workflow` through the API and wait until it holds the service's
    only run slot at the model (whose answer the caller holds back)."""
    job = {"workflow": workflow, "instruction": "Hold the slot.", "idempotency_key": "hold"}
    headers = {"authorization": f"Bearer {TOKEN}"}
    response = httpx.post(f"{url}/api/jobs", json=job, headers=headers, timeout=10)
    if response.status_code != 202:
        raise RuntimeError(f"blocker job refused: {response.status_code} {response.text}")
    if not model.wait_for_requests(1, timeout=120):
        raise RuntimeError("the blocker run never called the model")


def load(url: str, *args: str, expect: str | None = None, requests: int) -> dict[str, Any]:
    """Run `load_generator` against `url` with `args`; its JSON result. With `expect`, every
    measured request must have answered with that status."""
    argv = [PYTHON, "-m", "tests.benchmarks.load_generator", url, *args]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed: {done.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    if expect is not None and result["statuses"] != {expect: requests}:
        raise RuntimeError(f"{url}: expected {requests} × {expect}, got {result['statuses']}")
    return result


def one_turn_workflow(name: str) -> str:
    """A workflow file that needs no workspace: one maker call, a check that passes."""
    return f"""\
---
name: {name}
workspace: none
tools: []
brakes: {{max_turns: 1, max_wall_seconds: 600}}
exit: {{checks: ["true"]}}
---
{{{{ instruction }}}}
"""


def bench_env(
    root: Path, model_url: str, workflow: str, *, slots: int | None = 1
) -> dict[str, str]:
    """`loopwright serve`'s environment under `root`, with `one_turn_workflow(workflow)` as its
    only workflow and `slots` run slots (None: the default)."""
    workflows = root / "workflows"
    workflows.mkdir(parents=True, exist_ok=True)
    (workflows / f"{workflow}.md").write_text(one_turn_workflow(workflow), encoding="utf-8")
    env = service_env(root, workflows, model_url, free_port())
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    if slots is not None:
        env["LOOPWRIGHT_MAX_CONCURRENT_RUNS"] = str(slots)
    return env


def stat(results: list[dict[str, Any]], key: str) -> float:
    """The median of `key` over load-generator results (one per round)."""
    return median([float(r[key]) for r in results])


def load_rows(
    label: str, variant: str, results: list[dict[str, Any]], note: str, target: str = ""
) -> list[Row]:
    """Throughput, p50 and p99 rows of one variant; `target` prefixes the p99's note."""
    cpu = stat(results, "client_cpu_per_s")
    return [
        Row(
            benchmark=label,
            variant=f"{variant} throughput",
            value=stat(results, "rps"),
            unit="req/s",
            note=f"{note}; load generator used {cpu:.2f} CPU-s/s",
        ),
        Row(benchmark=label, variant=f"{variant} p50", value=stat(results, "p50_ms"), unit="ms"),
        Row(
            benchmark=label,
            variant=f"{variant} p99",
            value=stat(results, "p99_ms"),
            unit="ms",
            note=f"{target}max {stat(results, 'max_ms'):.1f} ms",
        ),
    ]
