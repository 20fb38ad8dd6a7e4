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

from tests.support.openai_server import ScriptedOpenAIServer
from tests.support.service import TOKEN, free_port

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
