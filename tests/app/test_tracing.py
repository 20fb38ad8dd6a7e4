"""Runs traced to a local Opik stand-in through the real Opik SDK: the trace tree, usage and
cost on every model call, failed calls, feedback scores, redaction, content capture off, and
Opik refusing connections or never answering."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from app.ledger import Ledger
from app.opik_settings import OpikSettings
from app.runner import Runner
from app.settings import Settings
from app.tracing import Tracing, secret_values, start_tracing, trace_id
from loops.errors import ModelUnavailable
from loops.jobs import LoopJob
from loops.testing import FakeClock, ScriptedModel, reply, tool_call
from loops.workflow_files import parse_workflow
from tests.support.opik_recorder import OpikRecorder, refused_url

WORKFLOW = """\
---
name: make-done
tools: [write_file, read_file]
brakes: {max_turns: 3, max_steps_per_turn: 5}
exit:
  checks:
    - run: "true"
    - run: test -f done.txt
  passes: 1
---
{{ instruction }}
"""
API_TOKEN = "api-token-7f3a9c2e5b"
GITHUB_TOKEN = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4"
FLUSH_TIMEOUT = 2


@pytest.fixture(autouse=True)
def _opik_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OPIK_DEFAULT_FLUSH_TIMEOUT", str(FLUSH_TIMEOUT))
    monkeypatch.setenv("OPIK_SENTRY_ENABLE", "false")
    monkeypatch.setenv("OPIK_ANALYTICS_ENABLE", "false")
    monkeypatch.setenv("OPIK_CONFIG_PATH", str(tmp_path / "no-opik.config"))


def settings_for(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "var",
        model="openai/gpt-4.1-mini",
        api_token=API_TOKEN,  # type: ignore[arg-type]
    )


def opik_for(url: str) -> OpikSettings:
    return OpikSettings(
        url_override=url, project_name="loopwright-tests", default_flush_timeout=FLUSH_TIMEOUT
    )


def script() -> ScriptedModel:
    return ScriptedModel(
        [
            reply("Nothing to do, I think.", input_tokens=120, output_tokens=10, cost_usd=0.002),
            reply(
                "",
                tool_call("write_file", path="done.txt", content=f"uses {API_TOKEN}"),
                input_tokens=200,
                output_tokens=30,
                cost_usd=0.004,
            ),
            ModelUnavailable("upstream answered 503"),
            reply(f"Wrote done.txt; pushed with {GITHUB_TOKEN}", input_tokens=260, cost_usd=0.005),
        ]
    )


def run_traced(tmp_path: Path, url: str, *, content: bool = True) -> tuple[Runner, str, object]:
    settings = settings_for(tmp_path)
    workdir = tmp_path / "work"
    workdir.mkdir()
    ledger = Ledger(settings.ledger_url)
    ledger.migrate()
    tracing = start_tracing(opik_for(url), capture_content=content, secrets=secret_values(settings))
    runner = Runner(
        settings=settings, ledger=ledger, model=script(), clock=FakeClock(), tracing=tracing
    )
    job = LoopJob(
        workflow="make-done",
        source="api",
        instruction=f"Create done.txt. Token: {API_TOKEN}",
        workdir=str(workdir),
        repo="acme/widgets",
        pr=7,
        concurrency_key="github:acme/widgets#7",
    )
    _, run, _ = runner.submit(job, parse_workflow(WORKFLOW, "make-done.md"))
    return runner, run.id, run


async def test_a_run_is_one_trace_with_turn_llm_tool_and_check_spans(tmp_path: Path) -> None:
    with OpikRecorder() as opik:
        runner, run_id, _run = run_traced(tmp_path, opik.url)
        outcome = await runner.run(run_id)
        assert outcome.status == "passed", outcome.reason
        assert runner.tracing is not None
        assert runner.tracing.close()
        opik.wait_for(lambda: bool(opik.traces()) and len(opik.scores()) == 2)

        [trace] = opik.traces()
        stored = runner.ledger.get_run(run_id)
        assert stored is not None
        assert trace["id"] == trace_id(stored)
        assert trace["name"] == "make-done"
        assert trace["project_name"] == "loopwright-tests"
        assert set(trace["tags"]) == {"workflow:make-done", "source:api", "status:passed"}
        assert trace["thread_id"] == "github:acme/widgets#7"
        assert trace["metadata"]["job_id"] == stored.job_id
        assert trace["metadata"]["run_id"] == run_id
        assert (trace["metadata"]["repo"], trace["metadata"]["pr"]) == ("acme/widgets", 7)
        assert trace["metadata"]["trigger"]["source"] == "api"
        assert trace["input"]["workflow"] == "make-done"
        assert trace["output"]["status"] == "passed"

        spans = opik.spans()
        assert {s["trace_id"] for s in spans} == {trace["id"]}
        turns = sorted((s for s in spans if s["name"].startswith("turn ")), key=lambda s: s["name"])
        assert [t["name"] for t in turns] == ["turn 1", "turn 2"]
        assert all(t["type"] == "general" and t.get("parent_span_id") is None for t in turns)
        turn_of = {t["id"]: t["name"] for t in turns}

        llm = [s for s in spans if s["type"] == "llm"]
        assert len(llm) == 4  # three answers and the failed attempt the budget retried
        answered = [s for s in llm if "error_info" not in s]
        assert len(answered) == 3
        for span in answered:
            assert span["model"] == "scripted"
            assert span["provider"] == "test"
            assert span["usage"]["prompt_tokens"] > 0
            assert span["usage"]["total_tokens"] > 0
            assert span["total_estimated_cost"] > 0
        assert sorted(s["total_estimated_cost"] for s in answered) == [0.002, 0.004, 0.005]
        [failed] = [s for s in llm if "error_info" in s]
        assert failed["error_info"]["exception_type"] == "ModelUnavailable"
        assert "upstream answered 503" in failed["error_info"]["message"]
        assert failed["model"] == "openai/gpt-4.1-mini"
        assert failed["provider"] == "openai"
        assert [turn_of[s["parent_span_id"]] for s in llm].count("turn 2") == 3

        [tool] = [s for s in spans if s["type"] == "tool"]
        assert tool["name"] == "write_file"
        assert turn_of[tool["parent_span_id"]] == "turn 2"
        checks = [s for s in spans if s["metadata"].get("kind") == "check"]
        assert len(checks) == 4
        verdicts = {
            (turn_of[s["parent_span_id"]], s["name"]): s["metadata"]["verdict"] for s in checks
        }
        assert verdicts == {
            ("turn 1", "true"): "passed",
            ("turn 1", "test -f done.txt"): "failed",
            ("turn 2", "true"): "passed",
            ("turn 2", "test -f done.txt"): "passed",
        }

        scores = {s["name"]: s for s in opik.scores()}
        assert {s["id"] for s in scores.values()} == {trace["id"]}
        assert scores["passed"]["value"] == 1.0
        assert scores["checks"]["value"] == 1.0
        assert scores["checks"]["reason"] == "2 of 2 checks passed on turn 2"

        # Prompts and completions are captured, with secrets taken out.
        assert "Create done.txt" in json.dumps(trace["input"])
        assert any("Wrote done.txt" in json.dumps(s.get("output")) for s in answered)
        everything = json.dumps([r.body for r in opik.received])
        assert API_TOKEN not in everything
        assert GITHUB_TOKEN not in everything
        assert "[REDACTED]" in json.dumps(tool["input"])


async def test_content_capture_off_keeps_structure_but_no_prompts(tmp_path: Path) -> None:
    with OpikRecorder() as opik:
        runner, run_id, _ = run_traced(tmp_path, opik.url, content=False)
        outcome = await runner.run(run_id)
        assert outcome.status == "passed"
        assert runner.tracing is not None
        assert runner.tracing.close()
        opik.wait_for(lambda: bool(opik.traces()) and len(opik.spans()) == 11)

        [trace] = opik.traces()
        assert "instruction" not in trace["input"]
        llm = [s for s in opik.spans() if s["type"] == "llm"]
        assert all("messages" not in (s.get("input") or {}) for s in llm)
        assert all("text" not in (s.get("output") or {}) for s in llm)
        [tool] = [s for s in opik.spans() if s["type"] == "tool"]
        assert "arguments" not in (tool.get("input") or {})
        assert "Create done.txt" not in json.dumps([r.body for r in opik.received])


@pytest.mark.parametrize("opik_down", ["refusing", "not answering"])
async def test_opik_down_leaves_the_run_alone_and_shutdown_bounded(
    tmp_path: Path, opik_down: str
) -> None:
    with OpikRecorder(hang=True) as hung:
        url = refused_url() if opik_down == "refusing" else hung.url
        runner, run_id, _ = run_traced(tmp_path, url)
        started = time.monotonic()
        outcome = await runner.run(run_id)
        assert outcome.status == "passed", outcome.reason
        assert outcome.usage.model_calls == 3
        assert time.monotonic() - started < 5

        assert runner.tracing is not None
        closing = time.monotonic()
        runner.tracing.close()
        assert time.monotonic() - closing < FLUSH_TIMEOUT + 4


async def test_traces_written_while_opik_was_down_are_sent_when_it_returns(
    tmp_path: Path,
) -> None:
    url = refused_url()
    runner, run_id, _ = run_traced(tmp_path, url)
    outcome = await runner.run(run_id)
    assert outcome.status == "passed", outcome.reason

    port = int(url.rsplit(":", 1)[1].split("/")[0])
    with OpikRecorder(port=port) as opik:  # Opik is back, where it was
        opik.wait_for(lambda: len(opik.traces()) == 1 and len(opik.spans()) >= 3, timeout=60)
        assert runner.tracing is not None
        runner.tracing.close()

    [trace] = opik.traces()
    assert trace["name"] == "make-done"
    assert {s["type"] for s in opik.spans()} >= {"llm", "tool"}


def test_trace_links_point_at_the_configured_opik(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    ledger = Ledger(settings.ledger_url)
    ledger.migrate()
    runner = Runner(settings=settings, ledger=ledger, model=script())
    job = LoopJob(workflow="make-done", source="cli", workdir=str(tmp_path))
    _, run, _ = runner.submit(job, parse_workflow(WORKFLOW, "make-done.md"))

    link = Tracing(opik_for("http://opik.internal:5173/api"), None).link(run)

    assert link is not None
    assert link.startswith("http://opik.internal:5173/api/v1/session/redirect/projects/")
    assert f"trace_id={trace_id(run)}" in link
    assert trace_id(run) == trace_id(run)  # stable: a resumed run keeps its trace
    assert Tracing(OpikSettings(), None).link(run) is None
