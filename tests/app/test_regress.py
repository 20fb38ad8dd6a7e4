"""Regression cases end to end against a local Opik stand-in: runs traced through the real SDK,
`regress export` turning the failing (and reviewer-tagged) traces into case files and dataset
items, offline replay reproducing the recorded outcome, a broken change failing the replay
(through the CLI and through `pytest` collecting the case directory), and `--live` logging an
experiment."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.cli import main
from app.ledger import Ledger
from app.opik_sink import OpikRegress
from app.regress_cases import read_case, write_case
from app.regress_export import Exporter, ExportOptions, parse_duration
from app.runner import Runner
from app.tracing import secret_values, start_tracing
from loops.jobs import LoopJob
from loops.model import ModelResponse
from loops.testing import ScriptedModel, reply, tool_call
from loops.workflow_files import parse_workflow
from tests.app.test_tracing import FLUSH_TIMEOUT, opik_for, settings_for
from tests.support.openai_server import Reply, ScriptedOpenAIServer
from tests.support.opik_recorder import OpikRecorder

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = """\
---
name: fix-greeting
model: openai/gpt-4.1-mini
tools: [write_file, read_file]
brakes: {max_turns: 2, max_steps_per_turn: 5}
exit:
  checks:
    - run: grep -q hello greeting.txt
  passes: 1
---
{{ instruction }}
"""


@pytest.fixture(autouse=True)
def _opik_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OPIK_DEFAULT_FLUSH_TIMEOUT", str(FLUSH_TIMEOUT))
    monkeypatch.setenv("OPIK_SENTRY_ENABLE", "false")
    monkeypatch.setenv("OPIK_ANALYTICS_ENABLE", "false")
    monkeypatch.setenv("OPIK_CONFIG_PATH", str(tmp_path / "no-opik.config"))
    monkeypatch.setenv("LOOPWRIGHT_DATA_DIR", str(tmp_path / "cli-var"))
    monkeypatch.setenv("LOOPWRIGHT_WORKFLOWS_DIR", str(tmp_path / "workflows"))


def git_workdir(path: Path) -> str:
    path.mkdir()
    (path / "greeting.txt").write_text("bye\n")
    for args in (
        ["init", "-q", "-b", "main"],
        ["add", "."],
        ["-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "start"],
    ):
        subprocess.run(["git", *args], cwd=path, check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True)
    return head.stdout.strip()


FAILING = [  # writes the wrong text, then gives up: braked after two failing turns
    reply("", tool_call("write_file", path="greeting.txt", content="hi\n"), cost_usd=0.001),
    reply("Changed the greeting.", cost_usd=0.001),
    reply("I cannot see what else to do.", cost_usd=0.001),
]
PASSING = [
    reply("", tool_call("write_file", path="greeting.txt", content="hello\n"), cost_usd=0.001),
    reply("Greeting fixed.", cost_usd=0.001),
]


async def traced_run(
    tmp_path: Path, url: str, name: str, script: list[ModelResponse]
) -> tuple[str, str]:
    """Runs the workflow in a fresh git workdir, traced; returns the run id and start commit."""
    settings = settings_for(tmp_path)
    workdir = tmp_path / name
    head = git_workdir(workdir)
    ledger = Ledger(settings.ledger_url)
    ledger.migrate()
    tracing = start_tracing(opik_for(url), capture_content=True, secrets=secret_values(settings))
    runner = Runner(settings=settings, ledger=ledger, model=ScriptedModel(script), tracing=tracing)  # type: ignore[arg-type]
    job = LoopJob(
        workflow="fix-greeting",
        source="api",
        instruction="Make greeting.txt say hello.",
        workdir=str(workdir),
    )
    _, run, _ = runner.submit(job, parse_workflow(WORKFLOW, "workflows/fix-greeting.md"))
    await runner.run(run.id)
    assert tracing.close()
    ledger.close()
    return run.id, head


def export(tmp_path: Path, url: str, **options: str) -> list[Path]:
    settings = settings_for(tmp_path)
    ledger = Ledger(settings.ledger_url)
    opik = OpikRegress(opik_for(url))
    exporter = Exporter(
        opik=opik, ledger=ledger, runs_dir=settings.runs_dir, current_workflow=lambda _: None
    )
    chosen = ExportOptions(directory=tmp_path / "regressions", dataset="regress-tests", **options)
    try:
        done = exporter.export(chosen, now=time.time())
    finally:
        opik.close()
        ledger.close()
    return [d.path for d in done]


@pytest.fixture
async def exported(tmp_path: Path) -> tuple[OpikRecorder, list[Path], dict[str, str]]:
    with OpikRecorder() as opik:
        failing, head = await traced_run(tmp_path, opik.url, "failing", FAILING)
        passing, _ = await traced_run(tmp_path, opik.url, "passing", PASSING)
        await traced_run(tmp_path, opik.url, "untagged", PASSING)  # passed: not exported
        opik.wait_for(lambda: len(opik.stored_traces()) == 3 and len(opik.scores()) == 6)
        passing_trace = next(
            t["id"] for t in opik.stored_traces() if t["metadata"]["run_id"] == passing
        )
        opik.tag(passing_trace, "regression")  # a reviewer marks a passing run as bad
        paths = export(tmp_path, opik.url, since="1h")
        yield opik, paths, {"failing": failing, "passing": passing, "head": head}


async def test_export_writes_failing_and_tagged_runs_as_cases_and_dataset_items(
    tmp_path: Path, exported: tuple[OpikRecorder, list[Path], dict[str, str]]
) -> None:
    opik, paths, runs = exported
    names = sorted(p.name for p in paths)
    assert names == sorted(f"fix-greeting-{runs[k]}.json" for k in ("failing", "passing"))
    assert (tmp_path / "regressions" / "conftest.py").is_file()

    case = read_case(tmp_path / "regressions" / f"fix-greeting-{runs['failing']}.json")
    assert case.workflow.name == "fix-greeting"
    assert case.workflow.text == WORKFLOW
    assert case.workflow.content_hash == parse_workflow(WORKFLOW).content_hash
    assert case.job.instruction == "Make greeting.txt say hello."
    assert case.job.source == "api"
    assert case.start.kind == "bundle"
    assert case.start.commit == runs["head"]
    assert (tmp_path / "regressions" / str(case.start.bundle)).is_file()
    assert case.answers is not None
    assert [a.text for a in case.answers] == [
        "",
        "Changed the greeting.",
        "I cannot see what else to do.",
    ]
    [call] = case.answers[0].tool_calls
    assert (call.name, json.loads(call.arguments)) == (
        "write_file",
        {"path": "greeting.txt", "content": "hi\n"},
    )
    assert case.answers[0].input_tokens == 100
    assert case.checks.commands == ["grep -q hello greeting.txt"]
    assert case.checks.score == 0.0
    assert (case.outcome.status, case.outcome.turns) == ("braked", 2)
    assert set(case.trace.why) == {"status:braked", "checks<1"}

    tagged = read_case(tmp_path / "regressions" / f"fix-greeting-{runs['passing']}.json")
    assert tagged.outcome.status == "passed"
    assert tagged.trace.why == ["tagged regression"]

    items = opik.datasets["regress-tests"]["items"]
    assert set(items) == {case.trace.dataset_item_id, tagged.trace.dataset_item_id}
    item = items[case.trace.dataset_item_id]
    assert item["trace_id"] == case.trace.id
    assert item["data"]["input"]["case"] == case.id
    assert item["data"]["expected_output"]["status"] == "braked"
    assert not opik.problems


async def test_replay_reproduces_the_recorded_outcome(
    tmp_path: Path,
    exported: tuple[OpikRecorder, list[Path], dict[str, str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = await asyncio.to_thread(
        main, ["regress", "run", "--replay", str(tmp_path / "regressions")]
    )

    out = capsys.readouterr().out
    assert code == 0, out
    assert f"OK        fix-greeting-{exported[2]['failing']}: recorded braked (2 turns)" in out
    assert "now braked (2 turns)" in out
    assert "now passed (1 turns)" in out
    assert "2 cases: 1 pass now, 0 fixed, 0 regressed, 0 skipped" in out


async def test_replay_fails_when_answers_no_longer_match_or_a_check_now_fails(
    tmp_path: Path,
    exported: tuple[OpikRecorder, list[Path], dict[str, str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, _, runs = exported
    directory = tmp_path / "regressions"
    failing = read_case(directory / f"fix-greeting-{runs['failing']}.json")
    assert failing.answers is not None
    write_case(failing.model_copy(update={"answers": failing.answers[:2]}), directory)
    passing = read_case(directory / f"fix-greeting-{runs['passing']}.json")
    stricter = passing.workflow.text.replace("grep -q hello", "grep -q 'hello, world'")
    workflow = passing.workflow.model_copy(update={"text": stricter})
    write_case(passing.model_copy(update={"workflow": workflow}), directory)

    code = await asyncio.to_thread(main, ["regress", "run", str(directory)])

    out = capsys.readouterr().out
    assert code == 1, out
    assert f"REGRESSED fix-greeting-{runs['failing']}: recorded braked" in out
    assert "now errored" in out
    assert "ran out of scripted answers" in out
    assert f"REGRESSED fix-greeting-{runs['passing']}: recorded passed" in out
    assert "0 pass now, 0 fixed, 2 regressed" in out


def run_pytest(directory: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:opik", "-p", "no:cacheprovider", "-q"],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_pytest_collects_the_case_directory_as_replay_tests(
    tmp_path: Path, exported: tuple[OpikRecorder, list[Path], dict[str, str]]
) -> None:
    directory = tmp_path / "regressions"
    good = run_pytest(directory)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "2 passed" in good.stdout

    case_path = directory / f"fix-greeting-{exported[2]['failing']}.json"
    case = read_case(case_path)
    assert case.answers is not None
    write_case(case.model_copy(update={"answers": case.answers[:1]}), directory)
    bad = run_pytest(directory)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "1 failed, 1 passed" in bad.stdout
    assert "REGRESSED" in bad.stdout


async def test_a_case_without_recorded_content_is_reported_not_replayable(
    tmp_path: Path,
    exported: tuple[OpikRecorder, list[Path], dict[str, str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "regressions" / f"fix-greeting-{exported[2]['failing']}.json"
    case = read_case(path)
    write_case(case.model_copy(update={"answers": None}), path.parent)

    code = await asyncio.to_thread(main, ["regress", "run", "--replay", str(path)])

    out = capsys.readouterr().out
    assert code == 0, out
    assert "SKIPPED" in out
    assert "content capture was off" in out


async def test_live_reruns_with_the_current_model_and_logs_an_experiment(
    tmp_path: Path,
    exported: tuple[OpikRecorder, list[Path], dict[str, str]],
    allow_model_requests: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    opik, _, runs = exported
    path = tmp_path / "regressions" / f"fix-greeting-{runs['failing']}.json"
    fixed = [
        Reply(tool_calls=[("write_file", {"path": "greeting.txt", "content": "hello\n"})]),
        Reply(content="Now it says hello."),
    ]
    with ScriptedOpenAIServer(fixed) as model:
        monkeypatch.setenv("OPENAI_API_BASE", model.url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-local")
        monkeypatch.setenv("OPIK_URL_OVERRIDE", opik.url)
        monkeypatch.setenv("OPIK_PROJECT_NAME", "loopwright-tests")
        code = await asyncio.to_thread(
            main, ["regress", "run", "--live", "--experiment", "nightly", str(path)]
        )

    out = capsys.readouterr().out
    assert code == 0, out
    assert f"FIXED     fix-greeting-{runs['failing']}: recorded braked" in out
    assert "now passed (1 turns)" in out
    assert "1 cases: 1 pass now, 1 fixed, 0 regressed" in out
    [experiment] = opik.experiments
    assert (experiment["name"], experiment["dataset_name"]) == ("nightly", "regress-tests")
    opik.wait_for(lambda: len(opik.experiment_items()) == 1)
    [item] = opik.experiment_items()
    case = read_case(path)
    assert item["dataset_item_id"] == case.trace.dataset_item_id
    assert item["experiment_id"] == experiment["id"]
    new_trace = next(t for t in opik.stored_traces() if t["id"] == item["trace_id"])
    assert {s["name"]: s["value"] for s in new_trace["feedback_scores"]}["passed"] == 1.0


def test_durations() -> None:
    assert parse_duration("90s") == 90
    assert parse_duration("24h") == 86400
    assert parse_duration("2w") == 14 * 86400
    with pytest.raises(ValueError, match="'soon' is not a number and a unit"):
        parse_duration("soon")
