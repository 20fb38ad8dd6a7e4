"""A real OpenAI-compatible HTTP server on 127.0.0.1 that answers from a script.

It stands in for a model provider at the HTTP level, so tests exercise the real litellm path.
Each POST to `.../chat/completions` takes the next item of the script: a `Reply`, a `Failure`
(an HTTP error with headers), or a callable of the request body returning either.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.support.local_http import LocalHTTP


@dataclass
class Reply:
    content: str | None = None
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    prompt_tokens: int = 100
    completion_tokens: int = 20
    delay: float = 0.0
    gate: threading.Event | None = None  # block until set (for crash tests)


@dataclass
class Failure:
    status: int
    message: str = "scripted failure"
    headers: dict[str, str] = field(default_factory=dict)


Item = Reply | Failure | Callable[[dict[str, Any]], "Reply | Failure"]


class ScriptedOpenAIServer:
    def __init__(self, script: Iterable[Item] = ()) -> None:
        self.script: list[Item] = list(script)
        self.requests: list[dict[str, Any]] = []
        self.arrivals: list[float] = []
        """`time.monotonic()` when each of `requests` had been read, in the same order."""
        self.lock = threading.Lock()
        self.received = threading.Condition(self.lock)
        self._http = LocalHTTP(self._handler())

    @property
    def url(self) -> str:
        return f"{self._http.origin}/v1"

    def __enter__(self) -> ScriptedOpenAIServer:
        self._http.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.stop()

    def add(self, *items: Item) -> None:
        with self.lock:
            self.script.extend(items)

    def wait_for_requests(self, count: int, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        with self.received:
            while len(self.requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.received.wait(left)
        return True

    def _next(self, body: dict[str, Any]) -> Reply | Failure:
        arrived = time.monotonic()
        with self.received:
            self.requests.append(body)
            self.arrivals.append(arrived)
            self.received.notify_all()
            if not self.script:
                return Failure(500, "script exhausted")
            item = self.script.pop(0)
        return item(body) if callable(item) else item

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if not self.path.endswith("/chat/completions"):
                    self._send(404, {"error": {"message": f"no route {self.path}"}})
                    return
                item = server._next(body)
                if isinstance(item, Failure):
                    payload = {"error": {"message": item.message, "type": "scripted"}}
                    self._send(item.status, payload, item.headers)
                    return
                if item.gate is not None:
                    item.gate.wait(120)
                if item.delay:
                    time.sleep(item.delay)
                self._send(200, completion(body.get("model", "stub"), item))

            def _send(
                self, status: int, payload: Any, headers: dict[str, str] | None = None
            ) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        return Handler


_counter = iter(range(1, 10**9))


def completion(model: str, reply: Reply) -> dict[str, Any]:
    calls = [
        {
            "id": f"call_{next(_counter)}",
            "type": "function",
            "function": {"name": name, "arguments": json.dumps(args)},
        }
        for name, args in reply.tool_calls
    ]
    message: dict[str, Any] = {"role": "assistant", "content": reply.content}
    if calls:
        message["tool_calls"] = calls
    return {
        "id": f"chatcmpl-{next(_counter)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop"}
        ],
        "usage": {
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
            "total_tokens": reply.prompt_tokens + reply.completion_tokens,
        },
    }
