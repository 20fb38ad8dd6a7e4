"""A stand-in for Opik's REST API on 127.0.0.1 that records what the Opik SDK sends.

Every write body is validated against the request models that ship in the `opik` package
(`TraceWrite`, `SpanWrite`, `FeedbackScoreBatchItem`), and must carry no field those models do
not declare. `hang=True` accepts connections and never answers, as a stuck server would.
"""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opik.rest_api.types import FeedbackScoreBatchItem, SpanWrite, TraceWrite
from pydantic import BaseModel


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    body: Any


def _validated(model: type[BaseModel], item: dict[str, Any]) -> dict[str, Any]:
    unknown = set(item) - set(model.model_fields)
    assert not unknown, f"{model.__name__} has no fields {sorted(unknown)}: {item}"
    model.model_validate(item)
    return item


class OpikRecorder:
    def __init__(self, *, hang: bool = False) -> None:
        self.hang = hang
        self.received: list[Received] = []
        self.problems: list[str] = []
        self._released = threading.Event()
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/api"

    def __enter__(self) -> OpikRecorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._released.set()
        self.server.shutdown()
        self.server.server_close()

    def traces(self) -> list[dict[str, Any]]:
        return [t for r in self._writes("POST", "/v1/private/traces/batch") for t in r["traces"]]

    def spans(self) -> list[dict[str, Any]]:
        return [s for r in self._writes("POST", "/v1/private/spans/batch") for s in r["spans"]]

    def scores(self) -> list[dict[str, Any]]:
        found = self._writes("PUT", "/v1/private/traces/feedback-scores")
        return [s for r in found for s in r["scores"]]

    def wait_for(self, ready: Callable[[], bool], timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            assert not self.problems, self.problems
            assert time.monotonic() < deadline, f"Opik stand-in still waiting; got {self.paths()}"
            time.sleep(0.05)
        assert not self.problems, self.problems

    def paths(self) -> list[str]:
        with self._lock:
            return [f"{r.method} {r.path}" for r in self.received]

    def _writes(self, method: str, suffix: str) -> list[Any]:
        with self._lock:
            return [r.body for r in self.received if r.method == method and r.path.endswith(suffix)]

    def _record(self, method: str, path: str, raw: bytes, encoding: str | None) -> None:
        if encoding == "gzip":
            raw = gzip.decompress(raw)
        body = json.loads(raw) if raw else None
        try:
            _check(path, body)
        except AssertionError as exc:
            self.problems.append(str(exc))
        with self._lock:
            self.received.append(Received(method, path, body))

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                if recorder.hang:
                    recorder._released.wait(60)
                    return
                recorder._record(self.command, self.path, raw, self.headers.get("Content-Encoding"))
                if self.path.endswith("/is-alive/ping"):
                    payload = b"{}"
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = do_PUT = do_PATCH = _answer

        return Handler


def _check(path: str, body: Any) -> None:
    if path.endswith("/v1/private/traces/batch") and isinstance(body, dict) and "traces" in body:
        for trace in body["traces"]:
            _validated(TraceWrite, trace)
    elif path.endswith("/v1/private/spans/batch"):
        for span in body["spans"]:
            _validated(SpanWrite, span)
    elif path.endswith("/v1/private/traces/feedback-scores"):
        for score in body["scores"]:
            _validated(FeedbackScoreBatchItem, score)


def refused_url() -> str:
    """An Opik URL on 127.0.0.1 where nothing listens: connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/api"
