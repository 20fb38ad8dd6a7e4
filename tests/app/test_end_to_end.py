"""A loop through the real litellm path against a local OpenAI-compatible server."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.ledger import Ledger
from app.runner import Runner
from app.settings import Settings
from loops.jobs import LoopJob
from loops.litellm_model import LiteLLMModel
from loops.workflow_files import load_workflow
from tests.support.openai_server import Reply, ScriptedOpenAIServer
from tests.support.repos import FIXED, calc_repo, workflows_dir

pytestmark = pytest.mark.usefixtures("allow_model_requests")


def user_prompt(body: dict) -> str:
    return next(m["content"] for m in body["messages"] if m["role"] == "user")


def fix_when_told(body: dict) -> Reply:
    assert "test_add" in user_prompt(body), "the findings must reach the maker"
    return Reply(tool_calls=[("write_file", {"path": "calc.py", "content": FIXED})])


@pytest.fixture
def model_server(monkeypatch: pytest.MonkeyPatch):
    with ScriptedOpenAIServer() as server:
        monkeypatch.setenv("OPENAI_API_BASE", server.url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-local-test")
        yield server


async def test_maker_fixes_a_failing_test_through_litellm(tmp_path: Path, model_server):
    repo = calc_repo(tmp_path)
    workflow = load_workflow(workflows_dir(tmp_path) / "fix-calc.md")
    model_server.add(
        Reply(tool_calls=[("read_file", {"path": "calc.py"})]),
        Reply(content="I read calc.py; it looks fine to me."),
        fix_when_told,
        Reply(content="add() subtracted; it now adds."),
        Reply(content="Nothing left to change."),
    )
    settings = Settings(data_dir=tmp_path / "var", model="openai/local-stub")
    ledger = Ledger(settings.ledger_url)
    ledger.migrate()
    runner = Runner(settings=settings, ledger=ledger, model=LiteLLMModel())
    job = LoopJob(
        workflow="fix-calc", source="cli", instruction="Fix the failing test.", workdir=str(repo)
    )
    _, run, created = runner.submit(job, workflow)
    assert created

    outcome = await runner.run(run.id)

    assert outcome.status == "passed", outcome.reason
    assert (repo / "calc.py").read_text() == FIXED
    assert len(model_server.requests) == 5
    assert model_server.requests[0]["model"] == "local-stub"
    assert [t["function"]["name"] for t in model_server.requests[0]["tools"]] == [
        "read_file",
        "write_file",
        "list_files",
        "search",
        "run",
        "note",
    ]
    turns = ledger.turns(run.id)
    assert [t.number for t in turns] == [1, 2, 3]
    assert [t.verdict.passed for t in turns if t.verdict] == [False, True, True]
    assert "test_add" in turns[0].findings
    # Unknown price: the fallback ($10/M in, $30/M out) is charged, never zero.
    assert turns[0].usage.input_tokens == 200
    assert turns[0].usage.cost_usd == pytest.approx(2 * (100 * 10 + 20 * 30) / 1e6)
    stored = ledger.find_run(run.id)
    assert stored is not None
    assert stored.status == "passed"
    assert stored.turns_done == 3
    assert stored.cost_usd == pytest.approx(5 * (100 * 10 + 20 * 30) / 1e6)
