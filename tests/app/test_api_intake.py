"""The short path for `POST /api/jobs`: it answers only requests the route would accept, exactly
as the route would, and hands everything else to the route with the body intact."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from starlette.types import Message, Receive, Scope, Send

from app.api_intake import IntakeShortPaths
from loops.testing import FunctionModel, reply
from tests.app.api_support import TOKEN, Api, api_app, serve


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with serve(api_app(tmp_path, FunctionModel(lambda _: reply("done")))) as api:
        yield api


class Route:
    """Stands in for the app behind the middleware: records what reaches it, answers 418."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        self.bodies.append(body)
        await send({"type": "http.response.start", "status": 418, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def call(
    api: Api,
    body: bytes,
    *,
    headers: dict[str, str] | None = None,
    method: str = "POST",
    path: str = "/api/jobs",
) -> tuple[Route, int, dict[str, Any] | None]:
    """Send one request through an `IntakeShortPaths` in front of a recording `Route`."""
    route = Route()
    middleware = IntakeShortPaths(route)
    sent = {
        "authorization": f"Bearer {TOKEN}",
        "content-type": "application/json",
        "content-length": str(len(body)),
        **(headers or {}),
    }
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "headers": [(k.encode(), v.encode()) for k, v in sent.items() if v],
        "app": api.client._transport.app,  # type: ignore[attr-defined]
    }
    chunks = [body[:10], body[10:]]

    async def receive() -> Message:
        chunk = chunks.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    answer: list[Message] = []

    async def send(message: Message) -> None:
        answer.append(message)

    await middleware(scope, receive, send)
    status = answer[0]["status"]
    payload = json.loads(answer[1]["body"]) if status != 418 else None
    return route, status, payload


def job(**fields: Any) -> bytes:
    return json.dumps({"workflow": "quick", **fields}).encode()


async def test_an_acceptable_job_is_stored_and_answered_without_the_route(api):
    route, status, payload = await call(api, job(instruction="Fix it.", idempotency_key="k1"))

    assert route.bodies == []
    assert status == 202
    assert payload is not None
    assert set(payload) == {"job_id", "run_id", "status", "created"}
    assert payload["created"] is True
    stored = api.services.ledger.get_run(payload["run_id"])
    assert stored is not None
    assert stored.job_id == payload["job_id"]

    again = await call(api, job(instruction="Fix it.", idempotency_key="k1"))
    assert again[1:] == (200, {**payload, "created": False, "status": again[2]["status"]})


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (job(), {"authorization": "Bearer wrong"}),
        (job(), {"authorization": ""}),
        (job(), {"content-type": "text/plain"}),
        (job(), {"content-type": ""}),
        (job(), {"content-length": "", "transfer-encoding": "chunked"}),
        (b"{not json", {}),
        (job(colour="red"), {}),
        (job(workflow="nope"), {}),
        (job(workflow="in-repo"), {}),
        (job(workflow="in-repo", workdir="/no/such/dir"), {}),
        (job(pr=3), {}),
    ],
    ids=[
        "wrong-token",
        "no-token",
        "not-json",
        "no-content-type",
        "chunked",
        "malformed",
        "extra-field",
        "unknown-workflow",
        "no-workdir",
        "missing-workdir",
        "pr-without-repo",
    ],
)
async def test_anything_the_route_might_refuse_reaches_the_route_with_its_body(api, body, headers):
    route, status, _ = await call(api, body, headers=headers)

    assert status == 418
    assert route.bodies == [body]


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/api/jobs"), ("POST", "/api/jobs/"), ("POST", "/api/runs")]
)
async def test_other_requests_pass_through_untouched(api, method, path):
    route, status, _ = await call(api, job(), method=method, path=path)

    assert status == 418
    assert route.bodies == [job()]


async def test_a_refusal_reads_the_same_through_the_service(api):
    # The whole app: the route answers what the short path handed it.
    response = await api.client.post(
        "/api/jobs", content=job(colour="red"), headers={"content-type": "application/json"}
    )

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "colour"]


async def test_accepted_jobs_are_counted_under_the_route(api):
    for n in range(3):
        response = await api.submit(workflow="quick", idempotency_key=f"m{n}")
        assert response.status_code == 202

    metrics = (await api.client.get("/metrics")).text

    counted = 'loopwright_http_requests_total{method="POST",route="/api/jobs",status="202"} 3.0'
    assert counted in metrics


async def test_a_failing_ledger_answers_503_logs_it_and_stores_nothing(api):
    from structlog.testing import capture_logs

    database = api.services.ledger.url.removeprefix("sqlite:///")

    def rename(old: str, new: str) -> None:
        with sqlite3.connect(database) as conn:
            conn.execute(f"ALTER TABLE {old} RENAME TO {new}")

    rename("runs", "runs_away")  # the intake writer's insert fails in the database itself
    with capture_logs() as logs:
        refused = await api.submit(workflow="quick", idempotency_key="retry-me")
    rename("runs_away", "runs")
    retried = await api.submit(workflow="quick", idempotency_key="retry-me")

    assert refused.status_code == 503
    assert refused.json() == {"detail": "the ledger is unavailable; try again later"}
    [event] = [e for e in logs if e["event"] == "api_storage_failed"]
    assert event["path"] == "/api/jobs"
    assert "no such table: runs" in event["error"]
    # Nothing of the refused request was kept: the retry with its key creates the job.
    assert retried.status_code == 202
    assert retried.json()["created"] is True


async def test_a_bug_while_accepting_is_a_logged_500_counted_under_the_route(api, monkeypatch):
    from structlog.testing import capture_logs

    import app.api_intake

    async def broken(*_args: object) -> object:
        raise RuntimeError("a bug")

    monkeypatch.setattr(app.api_intake, "accept_job", broken)
    with capture_logs() as logs:
        response = await api.submit(workflow="quick")
    metrics = (await api.client.get("/metrics")).text

    assert (response.status_code, response.json()) == (500, {"detail": "Internal Server Error"})
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["api_intake_failed"]
    counted = 'loopwright_http_requests_total{method="POST",route="/api/jobs",status="500"} 1.0'
    assert counted in metrics
