"""A real HTTP server on 127.0.0.1 that stands in for the Slack Web API and `response_url`s.

Web API methods live under `/api/<method>` and want `Authorization: Bearer <token>`; they answer
as Slack does (HTTP 200 with `ok`, `error`). Implemented: `auth.test`, `chat.postMessage`
(channels and threads, each message given a fresh `ts`), `chat.update`, `chat.postEphemeral`.
`/response/<id>` takes posts to a slash command's `response_url` and counts them. Every request is
recorded; `rate_limit(path, times, retry_after)` makes the next calls answer 429.
"""

from __future__ import annotations

import itertools
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.support.local_http import LocalHTTP

BOT_USER = "U0LOOPBOT"
BOT_ID = "B0LOOPBOT"
TOKEN = "xoxb-test-token"


@dataclass
class Message:
    channel: str
    ts: str
    thread_ts: str
    text: str
    blocks: list[dict[str, Any]]
    updates: list[str] = field(default_factory=list)
    """The texts it had before, oldest first."""


@dataclass(frozen=True)
class Recorded:
    path: str
    body: dict[str, Any]
    authorization: str


class FakeSlack:
    """The stand-in server; use as a context manager, then point the service at `api_url`."""

    def __init__(self, *, token: str = TOKEN) -> None:
        self.token = token
        self.lock = threading.RLock()
        self.messages: dict[tuple[str, str], Message] = {}
        self.ephemeral: list[dict[str, Any]] = []
        self.responses: dict[str, list[dict[str, Any]]] = {}
        self.requests: list[Recorded] = []
        self._limits: dict[str, tuple[int, int]] = {}
        self._ts = itertools.count(1)
        self._http = LocalHTTP(self._handler())

    @property
    def url(self) -> str:
        return self._http.origin

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"

    def response_url(self, name: str) -> str:
        return f"{self.url}/response/{name}"

    def __enter__(self) -> FakeSlack:
        self._http.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.stop()

    def rate_limit(self, path: str, *, times: int, retry_after: int = 0) -> None:
        with self.lock:
            self._limits[path] = (times, retry_after)

    def in_thread(self, channel: str, thread_ts: str) -> list[Message]:
        with self.lock:
            return [
                m
                for m in self.messages.values()
                if m.channel == channel and m.thread_ts == thread_ts
            ]

    def calls(self, path: str) -> list[Recorded]:
        with self.lock:
            return [r for r in self.requests if r.path == path]

    # -- serving ------------------------------------------------------------------------------

    def _answer(
        self, path: str, body: dict[str, Any], auth: str
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        with self.lock:
            self.requests.append(Recorded(path, body, auth))
            times, retry_after = self._limits.get(path, (0, 0))
            if times:
                self._limits[path] = (times - 1, retry_after)
                return 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(retry_after)}
            if path.startswith("/response/"):
                self.responses.setdefault(path.removeprefix("/response/"), []).append(body)
                return 200, {"ok": True}, {}
            if auth != f"Bearer {self.token}":
                return 200, {"ok": False, "error": "invalid_auth"}, {}
            return 200, self._method(path.removeprefix("/api/"), body), {}

    def _method(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        if method == "auth.test":
            return {"ok": True, "user_id": BOT_USER, "bot_id": BOT_ID}
        if method == "chat.postMessage":
            ts = f"1700000000.{next(self._ts):06d}"
            channel = str(body["channel"])
            self.messages[(channel, ts)] = Message(
                channel, ts, str(body.get("thread_ts", "")), body["text"], body.get("blocks", [])
            )
            return {"ok": True, "channel": channel, "ts": ts}
        if method == "chat.update":
            found = self.messages.get((str(body["channel"]), str(body["ts"])))
            if found is None:
                return {"ok": False, "error": "message_not_found"}
            found.updates.append(found.text)
            found.text, found.blocks = body["text"], body.get("blocks", [])
            return {"ok": True, "ts": found.ts}
        if method == "chat.postEphemeral":
            self.ephemeral.append(body)
            return {"ok": True, "message_ts": "1700000000.999999"}
        return {"ok": False, "error": "unknown_method"}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                body = json.loads(raw) if raw else {}
                auth = self.headers.get("authorization", "")
                status, answer, headers = server._answer(self.path, body, auth)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return

        return Handler
