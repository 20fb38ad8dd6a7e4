"""A stand-in for Opik's REST API on 127.0.0.1 that records what the Opik SDK sends.

Every write body is validated against the request models that ship in the `opik` package
(`TraceWrite`, `SpanWrite`, `FeedbackScoreBatchItem`, `DatasetItemBatch`,
`ExperimentItem`), and must carry no field those models do not declare. `hang=True` accepts
connections and never answers, as a stuck server would.

It also answers reads as Opik does: trace and span searches (NDJSON streams, newest id first,
paged by `last_retrieved_id`, filtered by the Opik query language's parsed filters for the
fields regress uses), dataset lookup and creation (404 for an unknown name), dataset item
upserts by id, and experiments with their items. `tag(trace_id, tag)` adds a tag to a stored
trace, as a reviewer does in Opik's UI.
"""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from opik.rest_api.types import (
    DatasetItemBatch,
    ExperimentItem,
    FeedbackScoreBatchItem,
    SpanWrite,
    TraceWrite,
)
from pydantic import BaseModel

from tests.support.local_http import LocalHTTP


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
    def __init__(self, *, hang: bool = False, port: int = 0) -> None:
        self.hang = hang
        self.received: list[Received] = []
        self.problems: list[str] = []
        self._released = threading.Event()
        self._lock = threading.Lock()
        self._http = LocalHTTP(self._handler(), port=port)
        self.extra_tags: dict[str, list[str]] = {}
        self.datasets: dict[str, dict[str, Any]] = {}
        self.experiments: list[dict[str, Any]] = []

    @property
    def url(self) -> str:
        return f"{self._http.origin}/api"

    def __enter__(self) -> OpikRecorder:
        self._http.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._released.set()
        self._http.stop()

    def traces(self) -> list[dict[str, Any]]:
        return [t for r in self._writes("POST", "/v1/private/traces/batch") for t in r["traces"]]

    def spans(self) -> list[dict[str, Any]]:
        return [s for r in self._writes("POST", "/v1/private/spans/batch") for s in r["spans"]]

    def scores(self) -> list[dict[str, Any]]:
        found = self._writes("PUT", "/v1/private/traces/feedback-scores")
        return [s for r in found for s in r["scores"]]

    def experiment_items(self) -> list[dict[str, Any]]:
        found = self._writes("POST", "/v1/private/experiments/items")
        return [i for r in found for i in r["experiment_items"]]

    def tag(self, trace_id: str, tag: str) -> None:
        self.extra_tags.setdefault(trace_id, []).append(tag)

    def stored_traces(self) -> list[dict[str, Any]]:
        """Traces as Opik would return them: writes merged by id, tags and scores attached."""
        merged: dict[str, dict[str, Any]] = {}
        for trace in self.traces():
            merged.setdefault(trace["id"], {}).update(trace)
        scores: dict[str, list[dict[str, Any]]] = {}
        for score in self.scores():
            found = {k: score[k] for k in ("name", "value", "reason", "source") if k in score}
            scores.setdefault(score["id"], []).append(found)
        for trace_id, trace in merged.items():
            trace["tags"] = [*trace.get("tags", []), *self.extra_tags.get(trace_id, [])]
            trace["feedback_scores"] = scores.get(trace_id, [])
        return list(merged.values())

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

    def _record(self, method: str, path: str, raw: bytes, encoding: str | None) -> Any:
        if encoding == "gzip":
            raw = gzip.decompress(raw)
        body = json.loads(raw) if raw else None
        try:
            _check(path, body)
        except AssertionError as exc:
            self.problems.append(str(exc))
        with self._lock:
            self.received.append(Received(method, path, body))
        return body

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
                encoding = self.headers.get("Content-Encoding")
                body = recorder._record(self.command, self.path, raw, encoding)
                status, payload = recorder._reply(self.command, self.path.split("?")[0], body)
                self.send_response(status)
                if payload:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = _answer

        return Handler

    def _reply(self, method: str, path: str, body: Any) -> tuple[int, bytes]:
        if path.endswith("/is-alive/ping"):
            return 200, b"{}"
        if method == "POST" and path.endswith("/v1/private/traces/search"):
            return 200, _ndjson(_page(self.stored_traces(), body))
        if method == "POST" and path.endswith("/v1/private/spans/search"):
            spans = [s for s in self.spans() if s["trace_id"] == body.get("trace_id")]
            return 200, _ndjson(_page(spans, body))
        if method == "POST" and path.endswith("/v1/private/datasets/retrieve"):
            found = self.datasets.get(body["dataset_name"])
            if found is None:
                return 404, json.dumps({"errors": ["Dataset not found"]}).encode()
            public = {"id": found["id"], "name": found["name"]}
            return 200, json.dumps({**public, "dataset_items_count": len(found["items"])}).encode()
        if method == "POST" and path.endswith("/v1/private/datasets"):
            if body["name"] in self.datasets:
                return 409, json.dumps({"errors": ["Dataset already exists"]}).encode()
            dataset_id = body.get("id") or str(uuid.uuid4())
            self.datasets[body["name"]] = {"id": dataset_id, "name": body["name"], "items": {}}
            return 201, b""
        if method == "PUT" and path.endswith("/v1/private/datasets/items"):
            dataset = self.datasets.get(body.get("dataset_name", ""))
            if dataset is None:
                return 404, json.dumps({"errors": ["Dataset not found"]}).encode()
            for item in body["items"]:
                dataset["items"][item["id"]] = item
            return 204, b""
        if method == "POST" and path.endswith("/v1/private/experiments"):
            self.experiments.append(body)
            return 201, b""
        return 204, b""


def _page(items: list[dict[str, Any]], request: dict[str, Any]) -> list[dict[str, Any]]:
    """Newest id first, after `last_retrieved_id`, matching every filter, up to `limit`."""
    last = request.get("last_retrieved_id")
    kept = [i for i in items if all(_matches(i, f) for f in request.get("filters") or [])]
    kept = sorted((i for i in kept if last is None or i["id"] < last), key=lambda i: i["id"])
    return kept[::-1][: request.get("limit") or 100]


def _matches(item: dict[str, Any], condition: dict[str, Any]) -> bool:
    field, op, key, value = (condition[k] for k in ("field", "operator", "key", "value"))
    if field == "tags" and op == "contains":
        return value in (item.get("tags") or [])
    if field == "feedback_scores":
        scores = {s["name"]: s["value"] for s in item.get("feedback_scores") or []}
        if key not in scores:
            return False
        return _compare(scores[key], op, float(value))
    if field == "start_time" and op in (">=", ">", "<", "<="):
        return _compare(item["start_time"][:19], op, value.rstrip("Z")[:19])
    if field == "metadata" and op == "=":
        return str((item.get("metadata") or {}).get(key)) == value
    raise AssertionError(f"the Opik stand-in does not evaluate filter {condition}")


def _compare(left: Any, op: str, right: Any) -> bool:
    ops = {
        "<": left < right,
        "<=": left <= right,
        ">": left > right,
        ">=": left >= right,
        "=": left == right,
    }
    return ops[op]


def _ndjson(items: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(i).encode() + b"\n" for i in items)


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
    elif path.endswith("/v1/private/datasets/items"):
        _validated(DatasetItemBatch, body)
    elif path.endswith("/v1/private/experiments"):
        # The SDK ships no model of this request: check what the REST client documents.
        assert {"id", "dataset_name"} <= set(body), f"experiment without id or dataset: {body}"
    elif path.endswith("/v1/private/experiments/items"):
        for item in body["experiment_items"]:
            _validated(ExperimentItem, item)


def refused_url() -> str:
    """An Opik URL on 127.0.0.1 where nothing listens: connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/api"
