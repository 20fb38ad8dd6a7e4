"""The real service as a subprocess: jobs through the API, kill -9 and restart, SIGTERM."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import pytest

from app.ledger import Ledger
from tests.support.openai_server import Reply, ScriptedOpenAIServer
from tests.support.repos import FIXED, calc_repo, workflows_dir
from tests.support.service import Service, free_port, service_env


def fix_when_told(body: dict) -> Reply:
    prompt = next(m["content"] for m in body["messages"] if m["role"] == "user")
    assert "test_add" in prompt
    return Reply(tool_calls=[("write_file", {"path": "calc.py", "content": FIXED})])


@pytest.fixture
def world(tmp_path: Path):
    repo = calc_repo(tmp_path)
    with ScriptedOpenAIServer() as model:
        env = service_env(tmp_path, workflows_dir(tmp_path), model.url, free_port())
        service = Service(env, tmp_path / "service.log")
        try:
            yield service, model, repo
        finally:
            if service.proc is not None and service.proc.poll() is None:
                service.proc.kill()
                service.proc.wait(10)


def submit(service: Service, repo: Path) -> str:
    with service.client() as client:
        response = client.post(
            "/api/jobs",
            json={"workflow": "fix-calc", "instruction": "fix it", "workdir": str(repo)},
        )
    assert response.status_code == 202, response.text
    return str(response.json()["run_id"])


def test_a_job_submitted_through_the_api_runs_to_passed(world):
    service, model, repo = world
    model.add(Reply(content="looked"), fix_when_told, Reply(content="fixed"), Reply(content="ok"))
    service.start()
    run_id = submit(service, repo)
    run = service.wait_status(run_id, {"passed", "braked", "errored", "stuck"})
    assert run["status"] == "passed", run
    assert [t["number"] for t in run["turns"]] == [1, 2, 3]
    assert (repo / "calc.py").read_text() == FIXED
    with service.client() as client:
        metrics = client.get("/metrics").text
    assert 'loopwright_runs{status="passed"} 1.0' in metrics
    assert "loopwright_turns_total 3.0" in metrics
    # uvicorn re-raises SIGTERM once it has shut down cleanly, as servers conventionally do.
    assert service.stop() in (0, -signal.SIGTERM)
    lines = service.log.read_text().splitlines()
    events = [json.loads(line)["event"] for line in lines if line.startswith("{")]
    assert "service_stopped" in events  # one JSON object a line


def test_kill_minus_nine_then_restart_finishes_without_repeating_a_turn(world):
    service, model, repo = world
    gate = threading.Event()
    model.add(
        Reply(content="looked"),
        Reply(content="never delivered", gate=gate),
        fix_when_told,
        Reply(content="fixed"),
        Reply(content="ok"),
    )
    service.start()
    run_id = submit(service, repo)
    try:
        assert model.wait_for_requests(2, timeout=90)
        before = service.run(run_id)["turns"]
        assert [t["number"] for t in before] == [1]
        service.stop(signal.SIGKILL)
    finally:
        gate.set()
    service.start()
    run = service.wait_status(run_id, {"passed", "braked", "errored", "stuck"})
    assert run["status"] == "passed", run
    assert [t["number"] for t in run["turns"]] == [1, 2, 3]
    assert run["turns"][0] == before[0]
    assert run["attempts"] == 2
    ledger = Ledger(f"sqlite:///{service.env['LOOPWRIGHT_DATA_DIR']}/loopwright.db")
    assert [t.number for t in ledger.turns(run_id)] == [1, 2, 3]


def test_sigterm_drains_within_the_grace_period_and_the_run_resumes(world):
    service, model, repo = world
    gate = threading.Event()
    model.add(
        Reply(content="looked"),
        Reply(content="slow answer", gate=gate),
        fix_when_told,
        Reply(content="fixed"),
        Reply(content="ok"),
    )
    service.start()
    run_id = submit(service, repo)
    try:
        assert model.wait_for_requests(2, timeout=90)
        asked = time.monotonic()
        assert service.stop(signal.SIGTERM) in (0, -signal.SIGTERM)
        stopped_in = time.monotonic() - asked
    finally:
        gate.set()
    assert stopped_in < 2 + 8  # the grace period plus uvicorn's own shutdown
    ledger = Ledger(f"sqlite:///{service.env['LOOPWRIGHT_DATA_DIR']}/loopwright.db")
    stopped = ledger.get_run(run_id)
    assert stopped is not None
    assert stopped.status == "queued"
    service.start()
    run = service.wait_status(run_id, {"passed", "braked", "errored", "stuck"})
    assert run["status"] == "passed", run
    numbers = [t["number"] for t in run["turns"]]
    assert numbers == sorted(set(numbers))
