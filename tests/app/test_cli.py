"""`loopwright` as a user runs it: real subprocesses, a real ledger, a local model server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from app.cli import main
from app.ledger import Ledger
from tests.support.openai_server import Reply, ScriptedOpenAIServer
from tests.support.repos import FIXED, calc_repo, workflows_dir

LOOPWRIGHT = str(Path(sys.executable).parent / "loopwright")


def fix_when_told(body: dict) -> Reply:
    prompt = next(m["content"] for m in body["messages"] if m["role"] == "user")
    assert "test_add" in prompt
    return Reply(tool_calls=[("write_file", {"path": "calc.py", "content": FIXED})])


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("LOOPWRIGHT_", "OPENAI_"))}
    return {
        **base,
        "LOOPWRIGHT_DATA_DIR": str(tmp_path / "var"),
        "LOOPWRIGHT_WORKFLOWS_DIR": str(workflows_dir(tmp_path)),
        "LOOPWRIGHT_MODEL": "openai/local-stub",
        "OPENAI_API_KEY": "sk-local-test",
    }


def cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LOOPWRIGHT, *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def ledger_of(env: dict[str, str]) -> Ledger:
    return Ledger(f"sqlite:///{env['LOOPWRIGHT_DATA_DIR']}/loopwright.db")


def test_run_passes_with_live_progress_then_runs_list_and_show(tmp_path, env):
    repo = calc_repo(tmp_path)
    script = [
        Reply(content="I looked; nothing to do."),
        fix_when_told,
        Reply(content="fixed add()"),
        Reply(content="still fine"),
    ]
    with ScriptedOpenAIServer(script) as server:
        env["OPENAI_API_BASE"] = server.url
        done = cli(env, "run", "fix-calc", "--workdir", str(repo), "--instruction", "fix it")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "turn 1/6" in out
    assert "turn 3/6" in out
    assert "✗ pytest" in out
    assert "✓ pytest" in out
    assert "passed: exit condition held 2 time(s) in a row" in out
    assert "tokens" in out
    assert "$" in out

    listed = json.loads(cli(env, "runs", "list", "--json").stdout)
    assert [r["status"] for r in listed] == ["passed"]
    shown = json.loads(cli(env, "runs", "show", listed[0]["id"][:6], "--json").stdout)
    assert [t["number"] for t in shown["turns"]] == [1, 2, 3]
    assert shown["turns"][1]["tool_calls"][0]["name"] == "write_file"
    table = cli(env, "runs", "show", listed[0]["id"]).stdout
    assert "passed ✓" in table
    assert "failed ✗" in table


def test_kill_minus_nine_mid_loop_then_resume_finishes(tmp_path, env):
    repo = calc_repo(tmp_path)
    gate = threading.Event()
    script = [
        Reply(content="I looked; nothing to do."),
        Reply(content="never delivered", gate=gate),
        fix_when_told,
        Reply(content="fixed add()"),
        Reply(content="still fine"),
    ]
    with ScriptedOpenAIServer(script) as server:
        env["OPENAI_API_BASE"] = server.url
        proc = subprocess.Popen(
            [LOOPWRIGHT, "run", "fix-calc", "--workdir", str(repo)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.wait_for_requests(2, timeout=90), "the second turn never started"
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        finally:
            gate.set()
            proc.kill()
        ledger = ledger_of(env)
        (run,) = ledger.list_runs()[0]
        assert run.status == "running"
        before = ledger.turns(run.id)
        assert [t.number for t in before] == [1]

        listed = cli(env, "runs", "list").stdout
        assert "running (interrupted)" in listed
        resumed = cli(env, "runs", "resume", run.id)

    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming run" in resumed.stdout
    after = ledger.turns(run.id)
    assert [t.number for t in after] == [1, 2, 3]
    assert after[0] == before[0]  # the committed turn was not executed again
    assert (repo / "calc.py").read_text() == FIXED
    final = ledger.find_run(run.id)
    assert final is not None
    assert final.status == "passed"
    assert final.attempts == 2


def test_resume_with_more_budget_after_a_brake(tmp_path, env):
    repo = calc_repo(tmp_path)
    wf = Path(env["LOOPWRIGHT_WORKFLOWS_DIR"]) / "fix-calc.md"
    wf.write_text(wf.read_text().replace("max_turns: 6", "max_turns: 1"))
    script = [Reply(content="I looked."), fix_when_told, Reply(content="ok"), Reply(content="ok")]
    with ScriptedOpenAIServer(script) as server:
        env["OPENAI_API_BASE"] = server.url
        braked = cli(env, "run", "fix-calc", "--workdir", str(repo))
        assert braked.returncode == 3, braked.stdout + braked.stderr
        assert "max_turns of 1 reached (observed=1)" in braked.stdout
        run_id = json.loads(cli(env, "runs", "list", "--json").stdout)[0]["id"]
        resumed = cli(env, "runs", "resume", run_id, "--add-turns", "2")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert json.loads(cli(env, "runs", "show", run_id, "--json").stdout)["turns_done"] == 3


def test_cancel_a_foreground_run_with_sigint_keeps_its_work(tmp_path, env):
    repo = calc_repo(tmp_path)
    gate = threading.Event()
    script = [
        Reply(tool_calls=[("write_file", {"path": "notes.txt", "content": "x"})]),
        Reply(content="blocked", gate=gate),
    ]
    with ScriptedOpenAIServer(script) as server:
        env["OPENAI_API_BASE"] = server.url
        proc = subprocess.Popen(
            [LOOPWRIGHT, "run", "fix-calc", "--workdir", str(repo)],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.wait_for_requests(2, timeout=90)
            proc.send_signal(signal.SIGINT)
            out, _ = proc.communicate(timeout=30)
        finally:
            gate.set()
            proc.kill()
    assert proc.returncode == 130
    assert "cancelled" in out
    run = ledger_of(env).list_runs()[0][0]
    assert run.status == "cancelled"
    assert (repo / "notes.txt").read_text() == "x"
    (turn,) = ledger_of(env).turns(run.id)
    assert turn.interrupted == "cancelled"
    assert turn.usage.model_calls == 1


def test_unknown_workflow_is_a_usage_error(env, monkeypatch, capsys):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main(["run", "nope"]) == 2
    assert "unknown workflow 'nope'" in capsys.readouterr().err


def test_workflows_check_reports_file_line_reason(tmp_path, capsys):
    good = tmp_path / "good.md"
    good.write_text("---\nname: good\nexit: {checks: [make test]}\n---\nDo {{ instruction }}\n")
    bad = tmp_path / "bad.md"
    bad.write_text("---\nname: bad\ntools: [read_file, teleport]\nexit: {checks: [x]}\n---\nhi\n")
    assert main(["workflows", "check", str(good)]) == 0
    assert "good: brakes max_turns=6" in capsys.readouterr().out
    assert main(["workflows", "check", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert f"{bad}:3: " in captured.err
    assert "teleport" in captured.err
    assert "ok" in captured.out


def test_shipped_workflows_check_clean(capsys):
    root = Path(__file__).resolve().parents[2] / "workflows"
    assert main(["workflows", "check", str(root)]) == 0
    out = capsys.readouterr().out
    for name in ("fix-tests", "lint-fix", "review", "nightly-deps"):
        assert f"{name}: brakes" in out
