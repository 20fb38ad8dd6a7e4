"""The REST API against the real service: ledger, executor and workflows, a scripted model."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from structlog.testing import capture_logs

from app.ledger_schema import jobs, runs
from app.run_queue import Claim
from loops.jobs import LoopJob
from loops.reporting import RunReport
from loops.testing import FunctionModel, ScriptedModel, reply, tool_call
from tests.app.api_support import TOKEN, Api, api_app, serve


def done(_request: Any) -> Any:
    return reply("nothing to change")


def count(api: Api, table: sa.Table) -> int:
    with api.services.ledger.transaction(write=False) as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def group_alive(pgid: int) -> bool:
    """Whether any process of the group lives (zombies waiting for a reaper do not count)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def dead_pid() -> int:
    proc = subprocess.run(["true"], check=True)
    assert proc.returncode == 0
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


class RecordingReporter:
    def __init__(self) -> None:
        self.reports: list[RunReport] = []

    async def report(self, report: RunReport) -> None:
        self.reports.append(report)


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with serve(api_app(tmp_path, FunctionModel(done))) as api:
        yield api


async def test_a_job_runs_until_it_passes_and_its_run_shows_turns_and_usage(tmp_path):
    model = ScriptedModel([reply("", tool_call("run", command="echo hi")), reply("ran echo")])
    reporter = RecordingReporter()
    async with serve(api_app(tmp_path, model, reporters={"api": reporter})) as api:
        response = await api.submit(workflow="quick", instruction="Say hi.", requested_by="ci")

        assert response.status_code == 202, response.text
        accepted = response.json()
        assert accepted["created"] is True
        assert accepted["status"] == "queued"
        # Stored before the answer: the ledger has it whatever the executor does next.
        job = api.services.ledger.get_job(accepted["job_id"])
        assert job is not None
        assert job.source == "api"
        assert job.requested_by == "ci"

        detail = await api.wait_for(accepted["run_id"], "passed", "errored", "braked")

    assert detail["status"] == "passed", detail["reason"]
    assert detail["job_id"] == accepted["job_id"]
    assert detail["source"] == "api"
    assert detail["job"]["instruction"] == "Say hi."
    assert detail["turns_done"] == 1
    assert detail["usage"]["input_tokens"] == 200
    assert detail["usage"]["total_tokens"] == 240
    assert detail["usage"]["cost_usd"] > 0
    assert detail["started_at"] is not None
    assert detail["ended_at"] is not None
    assert detail["trace_url"] is None
    assert detail["interrupted"] is False
    [turn] = detail["turns"]
    assert turn["number"] == 1
    assert turn["passed"] is True
    assert turn["maker_summary"] == "ran echo"
    assert turn["checks"] == [
        {
            "name": "true",
            "passed": True,
            "findings": "",
            "score": None,
            "exit_code": 0,
            "duration_s": turn["checks"][0]["duration_s"],
        }
    ]
    assert [(c["name"], c["is_error"]) for c in turn["tool_calls"]] == [("run", False)]
    assert turn["usage"]["model_calls"] == 2
    assert turn["steps"] == 2
    assert turn["interrupted"] is None
    assert reporter.reports[0].kind == "queued"
    assert reporter.reports[0].run_id == accepted["run_id"]


async def test_a_known_idempotency_key_returns_the_same_job_and_run(api):
    first = await api.submit(workflow="quick", idempotency_key="deploy-42")
    again = await api.submit(workflow="quick", idempotency_key="deploy-42", instruction="other")

    assert first.status_code == 202
    assert again.status_code == 200, again.text
    assert again.json()["created"] is False
    assert (again.json()["job_id"], again.json()["run_id"]) == (
        first.json()["job_id"],
        first.json()["run_id"],
    )
    assert count(api, jobs) == 1
    assert count(api, runs) == 1


async def test_a_hundred_concurrent_submissions_with_one_key_make_one_job_and_one_run(tmp_path):
    model = ScriptedModel([reply("done")])  # a second run would find no answer and error
    async with serve(api_app(tmp_path, model)) as api:
        responses = await asyncio.gather(
            *(api.submit(workflow="quick", idempotency_key="same") for _ in range(100))
        )

        codes = sorted(r.status_code for r in responses)
        assert codes == [200] * 99 + [202], {r.status_code: r.text for r in responses}
        assert len({(r.json()["job_id"], r.json()["run_id"]) for r in responses}) == 1
        assert count(api, jobs) == 1
        assert count(api, runs) == 1
        detail = await api.wait_for(responses[0].json()["run_id"], "passed", "errored")
        assert detail["status"] == "passed"


async def test_runs_are_listed_newest_first_filtered_and_paged(api):
    run_ids = []
    for workflow in ("quick", "failing", "quick", "failing", "quick"):
        response = await api.submit(workflow=workflow)
        run_ids.append(response.json()["run_id"])
    _, cli_run, _ = await asyncio.to_thread(
        api.services.runner.submit,
        LoopJob(workflow="quick", source="cli"),
        api.services.catalog.get("quick"),
    )
    api.services.executor.wake()
    run_ids.append(cli_run.id)
    for run_id in run_ids:
        await api.wait_for(run_id, "passed", "braked", "errored")

    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 4} if cursor is None else {"limit": 4, "cursor": cursor}
        page = (await api.client.get("/api/runs", params=params)).json()
        seen += [r["id"] for r in page["runs"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert pages == 2
    stored = [api.services.ledger.get_run(i) for i in run_ids]
    newest_first = sorted(stored, key=lambda r: (r.created_at, r.id), reverse=True)
    assert seen == [r.id for r in newest_first]

    async def ids(**params: Any) -> set[str]:
        response = await api.client.get("/api/runs", params=params)
        assert response.status_code == 200, response.text
        return {r["id"] for r in response.json()["runs"]}

    assert await ids(status="braked") == {run_ids[1], run_ids[3]}
    assert await ids(workflow="quick") == {run_ids[0], run_ids[2], run_ids[4], cli_run.id}
    assert await ids(source="cli") == {cli_run.id}
    assert await ids(status="passed", source="api") == {run_ids[0], run_ids[2], run_ids[4]}
    assert await ids(status="running") == set()
    braked = await api.run(run_ids[1])
    assert braked["brake"] == "max_turns"
    assert braked["turns"][0]["passed"] is False
    assert braked["turns"][0]["checks"][0]["name"] == "false"


@pytest.mark.parametrize(
    ("params", "status", "reason"),
    [
        ({"status": "lost"}, 422, "Input should be 'queued', 'running'"),
        ({"source": "email"}, 422, "Input should be 'cli', 'api'"),
        ({"limit": 0}, 422, "greater than or equal to 1"),
        ({"limit": 201}, 422, "less than or equal to 200"),
        ({"workflow": "Not A Name"}, 422, "String should match pattern"),
        ({"cursor": "bm9wZQ"}, 400, "invalid cursor 'bm9wZQ': pass a previous page's next_cursor"),
        ({"cursor": "%%%"}, 400, "invalid cursor '%%%'"),
    ],
)
async def test_bad_listing_parameters_are_refused(api, params, status, reason):
    response = await api.client.get("/api/runs", params=params)

    assert response.status_code == status, response.text
    assert reason in str(response.json()["detail"])


async def test_cancelling_a_running_run_kills_its_tool_within_two_seconds(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    # `exec` makes the shell the sleep itself, so the group has one process to look for.
    model = ScriptedModel([reply("", tool_call("run", command="echo $$ > pgid; exec sleep 60"))])
    async with serve(api_app(tmp_path, model)) as api:
        run_id = (await api.submit(workflow="in-repo", workdir=str(work))).json()["run_id"]
        async with asyncio.timeout(10):
            while not (work / "pgid").exists() or not (work / "pgid").read_text().strip():
                await asyncio.sleep(0.05)
        pgid = int((work / "pgid").read_text())
        assert group_alive(pgid)
        still = await api.client.post(f"/api/runs/{run_id}/resume")
        assert still.status_code == 409
        assert f"run {run_id} is still running (process {os.getpid()}" in still.json()["detail"]

        started = time.monotonic()
        response = await api.client.post(f"/api/runs/{run_id}/cancel")
        assert response.status_code in (200, 202), response.text
        assert response.json()["run_id"] == run_id
        detail = await api.wait_for(run_id, "cancelled", timeout=2.0)
        assert time.monotonic() - started < 2.0

        assert not group_alive(pgid)
        assert detail["reason"] == "cancelled"
        [turn] = detail["turns"]
        assert turn["passed"] is None
        assert turn["interrupted"]
        again = await api.client.post(f"/api/runs/{run_id}/cancel")
        assert again.status_code == 409
        assert again.json()["detail"] == f"run {run_id} has already ended (cancelled)"


async def test_cancelling_a_queued_run_ends_it_at_once(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    model = ScriptedModel([reply("", tool_call("run", command="exec sleep 60"))])
    async with serve(api_app(tmp_path, model)) as api:
        first = (await api.submit(workflow="in-repo", workdir=str(work))).json()["run_id"]
        await api.wait_for(first, "running")
        # Same directory, same concurrency key: the second waits for the first.
        second = (await api.submit(workflow="in-repo", workdir=str(work))).json()["run_id"]
        assert (await api.run(second))["status"] == "queued"

        response = await api.client.post(f"/api/runs/{second}/cancel")

        assert response.status_code == 200, response.text
        assert response.json() == {"run_id": second, "status": "cancelled"}
        assert (await api.run(second))["status"] == "cancelled"
        assert (await api.client.post(f"/api/runs/{first}/cancel")).status_code == 202
        await api.wait_for(first, "cancelled", timeout=2.0)
    assert model.remaining == 0


async def test_a_braked_run_resumed_with_more_turns_passes(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    model = ScriptedModel(
        [
            reply("I looked around."),
            reply("", tool_call("write_file", path="done.txt", content="ok")),
            reply("wrote done.txt"),
        ]
    )
    async with serve(api_app(tmp_path, model)) as api:
        run_id = (await api.submit(workflow="in-repo", workdir=str(work))).json()["run_id"]
        braked = await api.wait_for(run_id, "braked", "passed", "errored")
        assert braked["status"] == "braked", braked["reason"]
        assert braked["brake"] == "max_turns"

        response = await api.client.post(f"/api/runs/{run_id}/resume", json={"add_turns": 1})

        assert response.status_code == 200, response.text
        assert response.json() == {"run_id": run_id, "status": "queued"}
        detail = await api.wait_for(run_id, "passed", "braked", "errored")
        assert detail["status"] == "passed", detail["reason"]
        assert detail["brakes"]["max_turns"] == 2
        assert [t["passed"] for t in detail["turns"]] == [False, True]
        assert detail["attempts"] == 2
        again = await api.client.post(f"/api/runs/{run_id}/resume")
        assert again.status_code == 409
        assert again.json()["detail"] == f"run {run_id} passed; there is nothing to resume"


async def _interrupted_run(api: Api) -> str:
    """A run marked running by a process on this host that has since died."""
    _, run, _ = await asyncio.to_thread(
        api.services.runner.submit,
        LoopJob(workflow="quick", source="api"),
        api.services.catalog.get("quick"),
    )
    claim = Claim(owner="gone", pid=dead_pid(), host=socket.gethostname())
    # Claimed before the executor could: its dispatcher only wakes when told, or every 0.1 s.
    assert await asyncio.to_thread(api.services.queue.claim, run.id, claim)
    return run.id


async def test_an_interrupted_run_is_recovered_then_resumed_with_its_extra_budget(api):
    run_id = await _interrupted_run(api)
    shown = await api.run(run_id)
    assert shown["status"] == "running"
    assert shown["interrupted"] is True

    response = await api.client.post(
        f"/api/runs/{run_id}/resume", json={"add_cost_usd": 1.5, "add_seconds": 60}
    )

    assert response.status_code == 200, response.text
    detail = await api.wait_for(run_id, "passed", "errored")
    assert detail["status"] == "passed"
    assert detail["brakes"]["max_cost_usd"] == pytest.approx(3.5)
    assert detail["brakes"]["max_wall_seconds"] == pytest.approx(180)


async def test_cancelling_an_interrupted_run_ends_it_at_once(api):
    run_id = await _interrupted_run(api)

    response = await api.client.post(f"/api/runs/{run_id}/cancel")

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"


async def test_requests_without_the_right_token_are_refused_and_logged(api):
    with capture_logs() as logs:
        missing = await api.client.get("/api/runs", headers={"Authorization": ""})
        basic = await api.client.get("/api/runs", headers={"Authorization": f"Basic {TOKEN}"})
        wrong = await api.client.post(
            "/api/jobs", json={"workflow": "quick"}, headers={"Authorization": "Bearer nope"}
        )

    assert (missing.status_code, missing.json()) == (401, {"detail": "missing bearer token"})
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    assert (basic.status_code, basic.json()) == (401, {"detail": "missing bearer token"})
    assert (wrong.status_code, wrong.json()) == (401, {"detail": "wrong bearer token"})
    assert wrong.headers["WWW-Authenticate"] == "Bearer"
    rejected = [e for e in logs if e["event"] == "api_request_rejected"]
    assert [(e["status"], e["reason"]) for e in rejected] == [
        (401, "missing bearer token"),
        (401, "missing bearer token"),
        (401, "wrong bearer token"),
    ]
    assert all(TOKEN not in str(e) for e in logs)
    assert count(api, jobs) == 0


async def test_the_api_is_off_without_a_configured_token(tmp_path):
    async with serve(api_app(tmp_path, FunctionModel(done), token=None)) as api:
        response = await api.submit(workflow="quick")
        listing = await api.client.get("/api/runs")
        health = await api.client.get("/healthz")

        assert response.status_code == 503
        assert response.json() == {"detail": "the API is disabled: LOOPWRIGHT_API_TOKEN is not set"}
        assert listing.status_code == 503
        assert health.status_code == 200
        assert count(api, jobs) == 0
