"""Bad input to the REST API: a precise 4xx, one log line with the reason, and no job."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from structlog.testing import capture_logs

from app.api_guard import MAX_BODY_BYTES
from app.ledger_schema import jobs
from loops.testing import FunctionModel, reply
from tests.app.api_support import Api, api_app, serve

UNKNOWN_RUN = "0123456789abcdef"


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with serve(api_app(tmp_path, FunctionModel(lambda _: reply("done")))) as api:
        yield api
        with api.services.ledger.transaction(write=False) as conn:
            stored = conn.execute(sa.select(sa.func.count()).select_from(jobs)).scalar_one()
        assert stored == 0, "a refused request must not create a job"


def detail_of(response: Any) -> str:
    return str(response.json()["detail"])


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"workflow": "nope"}, "unknown workflow 'nope'; known workflows: failing, in-repo, quick"),
        ({"workflow": "quik"}, "unknown workflow 'quik' (did you mean 'quick'?); known"),
        ({"workflow": "in-repo"}, "workflow 'in-repo' works in a 'repo' workspace; pass workdir"),
        (
            {"workflow": "in-repo", "repo": "octo/calc"},
            "cloning a repository needs the GitHub integration; pass workdir",
        ),
        ({"workflow": "in-repo", "workdir": "relative/dir"}, "is not an absolute path"),
        (
            {"workflow": "in-repo", "workdir": "/no/such/dir"},
            "workdir '/no/such/dir' does not exist",
        ),
    ],
)
async def test_jobs_that_cannot_run_are_refused_with_the_reason(api, body, reason):
    with capture_logs() as logs:
        response = await api.submit(**body)

    assert response.status_code == 422, response.text
    assert reason in detail_of(response)
    [event] = [e for e in logs if e["event"] == "api_request_rejected"]
    assert event["status"] == 422
    assert reason in event["reason"]


async def test_a_workdir_that_is_a_file_is_refused(api, tmp_path):
    file = tmp_path / "file.txt"
    file.write_text("x")

    response = await api.submit(workflow="in-repo", workdir=str(file))

    assert response.status_code == 422
    assert detail_of(response) == f"workdir {str(file)!r} is not a directory"


@pytest.mark.parametrize(
    ("body", "loc", "message"),
    [
        ({}, ["body", "workflow"], "Field required"),
        ({"workflow": "quick", "colour": "red"}, ["body", "colour"], "Extra inputs"),
        ({"workflow": "Quick Fix"}, ["body", "workflow"], "String should match pattern"),
        ({"workflow": "quick", "instruction": "x" * 20_001}, ["body", "instruction"], "at most"),
        ({"workflow": "quick", "instruction": "a\x00b"}, ["body", "instruction"], "NUL"),
        ({"workflow": "quick", "repo": "not-a-repo"}, ["body", "repo"], "should match pattern"),
        ({"workflow": "quick", "repo": "o/n", "pr": 0}, ["body", "pr"], "greater than or equal"),
        ({"workflow": "quick", "repo": "o/n", "pr": "7"}, ["body", "pr"], "valid integer"),
        ({"workflow": "quick", "pr": 7}, ["body"], "pr 7 needs repo ('owner/name')"),
        ({"workflow": "quick", "idempotency_key": ""}, ["body", "idempotency_key"], "at least 1"),
        ({"workflow": "quick", "model": "a b"}, ["body", "model"], "should match pattern"),
    ],
)
async def test_invalid_job_fields_are_refused_field_by_field(api, body, loc, message):
    with capture_logs() as logs:
        response = await api.client.post("/api/jobs", json=body)

    assert response.status_code == 422, response.text
    [problem] = response.json()["detail"]
    assert problem["loc"] == loc
    assert message in problem["msg"]
    [event] = [e for e in logs if e["event"] == "api_request_rejected"]
    assert event["reason"].startswith(".".join(loc))


async def test_a_body_that_is_not_json_is_refused(api):
    response = await api.client.post(
        "/api/jobs", content=b"{not json", headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"


async def test_an_oversized_body_is_refused_by_its_declared_length(api):
    body = b'{"workflow": "quick", "instruction": "' + b"x" * MAX_BODY_BYTES + b'"}'

    response = await api.client.post(
        "/api/jobs", content=body, headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 413
    assert detail_of(response) == (
        f"request body of {len(body)} bytes is over the limit of {MAX_BODY_BYTES} bytes"
    )


async def test_an_oversized_chunked_body_is_refused_while_it_streams(api):
    sent = 0

    async def chunks():
        nonlocal sent
        for _ in range(64):
            sent += 1
            yield b"x" * 65_536  # 4 MiB in all, with no declared length

    response = await api.client.post(
        "/api/jobs", content=chunks(), headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 413
    assert detail_of(response) == f"request body is over the limit of {MAX_BODY_BYTES} bytes"
    assert sent < 64, "the rest of the body is never read"


@pytest.mark.parametrize("action", ["cancel", "resume"])
async def test_unknown_and_malformed_run_ids(api, action):
    unknown = await api.client.post(f"/api/runs/{UNKNOWN_RUN}/{action}")
    malformed = await api.client.post(f"/api/runs/not-an-id/{action}")
    shown = await api.client.get(f"/api/runs/{UNKNOWN_RUN}")

    assert (unknown.status_code, detail_of(unknown)) == (404, f"no run {UNKNOWN_RUN!r}")
    assert (shown.status_code, detail_of(shown)) == (404, f"no run {UNKNOWN_RUN!r}")
    assert malformed.status_code == 422
    assert malformed.json()["detail"][0]["loc"] == ["path", "run_id"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"add_turns": -1}, "greater than or equal to 0"),
        ({"add_cost_usd": -0.5}, "greater than or equal to 0"),
        ({"add_turns": 1, "add_money": 5}, "Extra inputs are not permitted"),
        ({"add_tokens": "many"}, "valid integer"),
    ],
)
async def test_bad_resume_budgets_are_refused(api, body, message):
    response = await api.client.post(f"/api/runs/{UNKNOWN_RUN}/resume", json=body)

    assert response.status_code == 422, response.text
    assert message in response.json()["detail"][0]["msg"]
