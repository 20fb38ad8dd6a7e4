"""Start `loopwright serve` as a real subprocess on 127.0.0.1 and talk to it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

LOOPWRIGHT = str(Path(sys.executable).parent / "loopwright")
TOKEN = "test-token-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def service_env(tmp_path: Path, workflows: Path, model_url: str, port: int) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("LOOPWRIGHT_", "OPENAI_"))}
    return {
        **base,
        "LOOPWRIGHT_DATA_DIR": str(tmp_path / "var"),
        "LOOPWRIGHT_WORKFLOWS_DIR": str(workflows),
        "LOOPWRIGHT_MODEL": "openai/local-stub",
        "LOOPWRIGHT_API_TOKEN": TOKEN,
        "LOOPWRIGHT_PORT": str(port),
        "LOOPWRIGHT_SHUTDOWN_GRACE_SECONDS": "2",
        "OPENAI_API_BASE": model_url,
        "OPENAI_API_KEY": "sk-local-test",
    }


class Service:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.url = f"http://127.0.0.1:{env['LOOPWRIGHT_PORT']}"
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> float:
        """Start and wait for /healthz; returns seconds from spawn to the first 200."""
        started = time.monotonic()
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [LOOPWRIGHT, "serve"], env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        while time.monotonic() - started < timeout:
            if self.proc.poll() is not None:
                raise AssertionError(f"service exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=0.5).status_code == 200:
                    return time.monotonic() - started
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"service did not come up: {self.log.read_text()[-3000:]}")

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"authorization": f"Bearer {TOKEN}"}, timeout=10
        )

    def run(self, run_id: str) -> dict[str, Any]:
        with self.client() as client:
            response = client.get(f"/api/runs/{run_id}")
            response.raise_for_status()
            return dict(response.json())

    def wait_status(self, run_id: str, statuses: set[str], timeout: float = 90) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.run(run_id)
            if run["status"] in statuses:
                return run
            time.sleep(0.1)
        raise AssertionError(f"run {run_id} stayed {self.run(run_id)['status']}")

    def stop(self, sig: int | None = None, timeout: float = 30) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            if sig is None:
                self.proc.terminate()
            else:
                self.proc.send_signal(sig)
        return self.proc.wait(timeout)
