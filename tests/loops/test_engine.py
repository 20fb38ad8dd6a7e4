"""The engine's state machine with scripted models and checkers: no network, no ledger."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path

import pytest

from loops.checking import CheckContext, CheckResult, Verdict
from loops.clock import SystemClock
from loops.engine import EngineDeps, RunState, run_loop
from loops.errors import ModelRequestError
from loops.events import Event, RunFinished, TurnStarted
from loops.testing import MemoryStore, ScriptedModel, reply, tool_call
from loops.tools import Toolbox
from loops.usage import Price
from loops.workflow_files import parse_workflow
from loops.workspace import Workspace

WORKFLOW = """\
---
name: demo
tools: [read_file, write_file, run, note]
brakes: {{max_turns: {turns}, max_steps_per_turn: {steps}, max_wall_seconds: {wall}}}
exit:
  checks: ["true"]
  passes: {passes}
---
Do this: {{{{ instruction }}}}
{{% if findings %}}Findings:
{{{{ findings }}}}{{% endif %}}
"""


class ScriptedChecker:
    def __init__(self, verdicts: Iterable[Verdict | float]) -> None:
        self.verdicts = list(verdicts)
        self.contexts: list[CheckContext] = []

    async def check(self, ctx: CheckContext) -> Verdict:
        self.contexts.append(ctx)
        item = self.verdicts.pop(0)
        if isinstance(item, float):
            await asyncio.sleep(item)
            return PASS
        return item


PASS = Verdict(passed=True, results=(CheckResult(name="tests", passed=True),))


def fail(findings: str) -> Verdict:
    return Verdict(
        passed=False, results=(CheckResult(name="tests", passed=False, findings=findings),)
    )


def deps(
    tmp_path: Path,
    model: ScriptedModel,
    checker: ScriptedChecker,
    *,
    turns: int = 5,
    steps: int = 10,
    passes: int = 1,
    wall: float = 600,
    events: list[Event] | None = None,
) -> tuple[EngineDeps, MemoryStore]:
    text = WORKFLOW.format(turns=turns, steps=steps, passes=passes, wall=wall)
    workflow = parse_workflow(text, "demo.md")
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    workspace = Workspace(root=work, state_file=tmp_path / "run" / "STATE.md")
    store = MemoryStore()
    return (
        EngineDeps(
            run_id="r1",
            workflow=workflow,
            brakes=workflow.brakes,
            model=model,
            model_name="scripted",
            checker=checker,
            workspace=workspace,
            toolbox=Toolbox(workspace=workspace, enabled=workflow.tools),
            store=store,
            clock=SystemClock(),
            prices=lambda _m: Price(input_per_token=1e-6, output_per_token=1e-6),
            variables={
                "instruction": "fix it",
                "repo": None,
                "pr": None,
                "source": "cli",
                "requested_by": None,
            },
            listeners=(events.append,) if events is not None else (),
        ),
        store,
    )


async def test_findings_become_the_next_instruction_until_the_exit_condition_holds(tmp_path):
    model = ScriptedModel(
        [
            reply("", tool_call("write_file", path="a.txt", content="one")),
            reply("wrote a.txt"),
            reply("", tool_call("note", text="a.txt needs two")),
            reply("fixed it"),
            reply("nothing to change"),
        ]
    )
    checker = ScriptedChecker([fail("a.txt should say two"), PASS, PASS])
    d, store = deps(tmp_path, model, checker, passes=2)
    outcome = await run_loop(d, RunState())
    assert outcome.status == "passed"
    assert outcome.turns == 3
    assert [t.number for t in store.turns] == [1, 2, 3]
    assert [t.consecutive_passes for t in store.turns] == [0, 1, 2]
    # Every turn starts from fresh context: system prompt and the rendered task only.
    openings = [r for r in model.requests if len(r.messages) == 2]
    assert len(openings) == 3
    turn2 = openings[1].messages[1].content
    assert "a.txt should say two" in turn2
    assert "Do this: fix it" in turn2
    assert "a.txt needs two" in openings[2].messages[1].content  # STATE.md reaches later turns
    assert (tmp_path / "work" / "a.txt").read_text() == "one"
    assert store.turns[0].tool_calls[0].name == "write_file"
    assert outcome.usage.model_calls == 5
    assert outcome.usage.cost_usd == pytest.approx(sum(t.usage.cost_usd for t in store.turns))
    assert checker.contexts[0].summary == "wrote a.txt"


async def test_max_turns_brake_keeps_work_and_names_the_figures(tmp_path):
    model = ScriptedModel([reply(f"try {i}") for i in range(3)])
    checker = ScriptedChecker([fail(f"error {i}") for i in range(3)])
    d, store = deps(tmp_path, model, checker, turns=3)
    outcome = await run_loop(d, RunState())
    assert outcome.status == "braked"
    assert outcome.brake == "max_turns"
    assert outcome.reason == "max_turns of 3 reached (observed=3)"
    assert len(store.turns) == 3


async def test_same_findings_three_times_is_stuck(tmp_path):
    model = ScriptedModel([reply(f"try {i}") for i in range(4)])
    findings = [
        "FAILED test_x - took 0.12s",
        "FAILED test_x - took 0.31s",
        "FAILED test_x - took 1.2s",
    ]
    checker = ScriptedChecker([fail(f) for f in findings] + [PASS])
    d, _store = deps(tmp_path, model, checker, turns=6)
    outcome = await run_loop(d, RunState())
    assert outcome.status == "stuck"
    assert outcome.turns == 3


async def test_step_limit_ends_the_turn_and_the_checker_still_runs(tmp_path):
    model = ScriptedModel([reply("", tool_call("run", command="true")) for _ in range(3)])
    checker = ScriptedChecker([PASS])
    d, store = deps(tmp_path, model, checker, steps=3)
    outcome = await run_loop(d, RunState())
    assert outcome.status == "passed"
    assert store.turns[0].steps == 3
    assert len(store.turns[0].tool_calls) == 3
    assert len(checker.contexts) == 1


async def test_cancel_during_a_tool_keeps_the_partial_turn(tmp_path):
    model = ScriptedModel([reply("", tool_call("run", command="sleep 30"))])
    d, store = deps(tmp_path, model, ScriptedChecker([]))
    task = asyncio.create_task(run_loop(d, RunState()))
    await asyncio.sleep(0.5)
    task.cancel()
    outcome = await asyncio.wait_for(task, 5)
    assert outcome.status == "cancelled"
    assert store.turns[0].interrupted == "cancelled"
    assert store.turns[0].usage.model_calls == 1
    assert store.turns[0].verdict is None


async def test_wall_time_bounds_the_checker_too(tmp_path):
    model = ScriptedModel([reply("done")])
    d, _store = deps(tmp_path, model, ScriptedChecker([30.0]), wall=0.5)
    outcome = await asyncio.wait_for(run_loop(d, RunState()), 10)
    assert outcome.status == "braked"
    assert outcome.brake == "max_wall_seconds"
    assert outcome.reason.startswith("max_wall_seconds of 0.5 reached (observed=")


async def test_a_model_that_refuses_the_request_errors_the_run(tmp_path):
    model = ScriptedModel([ModelRequestError("AuthenticationError: bad key")])
    d, store = deps(tmp_path, model, ScriptedChecker([]))
    outcome = await run_loop(d, RunState())
    assert outcome.status == "errored"
    assert "bad key" in outcome.reason
    assert store.turns[0].interrupted is not None


async def test_resume_continues_after_the_last_recorded_turn(tmp_path):
    model = ScriptedModel([reply("a"), reply("b")])
    d, store = deps(tmp_path, model, ScriptedChecker([fail("x"), fail("y")]), turns=2)
    first = await run_loop(d, RunState())
    assert first.status == "braked"
    more = d.brakes.extended(turns=1)
    model2 = ScriptedModel([reply("c")])
    d2 = EngineDeps(
        **{**d.__dict__, "brakes": more, "model": model2, "checker": ScriptedChecker([PASS])}
    )
    state = RunState.from_turns(store.turns)
    assert state.findings.endswith("y")
    second = await run_loop(d2, state)
    assert second.status == "passed"
    assert [t.number for t in store.turns] == [1, 2, 3]
    assert second.usage.model_calls == 3
    assert "y" in model2.requests[0].messages[1].content


async def test_events_describe_the_run(tmp_path):
    events: list[Event] = []
    d, _ = deps(tmp_path, ScriptedModel([reply("ok")]), ScriptedChecker([PASS]), events=events)
    await run_loop(d, RunState())
    assert isinstance(events[0], TurnStarted)
    assert isinstance(events[-1], RunFinished)
    assert events[-1].outcome.status == "passed"


JUDGED = """\
---
name: judged
tools: [read_file]
brakes: {max_turns: 2, max_total_tokens: TOKENS, max_cost_usd: null, max_wall_seconds: 60}
exit:
  judge: {model: judge-model, rubric: "Is it good?", threshold: 0.5}
---
{{ instruction }}
"""


def judged_deps(
    tmp_path: Path, model: ScriptedModel, tokens: int
) -> tuple[EngineDeps, MemoryStore]:
    from checkers.factory import build_checker

    d, store = deps(tmp_path, model, ScriptedChecker([]))
    workflow = parse_workflow(JUDGED.replace("TOKENS", str(tokens)), "judged.md")
    checker = build_checker(workflow.exit, default_judge_model="unused")
    return EngineDeps(
        **{**d.__dict__, "workflow": workflow, "brakes": workflow.brakes, "checker": checker}
    ), store


async def test_the_judge_is_metered_against_the_runs_brakes(tmp_path):
    model = ScriptedModel(
        [
            reply("did it", input_tokens=500, output_tokens=50),
            reply('{"score": 0.9, "findings": "good"}', input_tokens=700, output_tokens=30),
        ]
    )
    d, store = judged_deps(tmp_path, model, tokens=100_000)
    outcome = await run_loop(d, RunState())
    assert outcome.status == "passed"
    judge_request = model.requests[1]
    assert (judge_request.model, judge_request.purpose) == ("judge-model", "judge")
    assert outcome.usage.total_tokens == 1280
    assert store.turns[0].usage.model_calls == 2


async def test_a_judge_call_that_cannot_fit_brakes_the_run(tmp_path):
    from loops.budget import estimate_tokens
    from loops.model import CallUsage, ModelResponse
    from loops.testing import FunctionModel

    limit = 5_000

    def maker_uses_all_but_ten_tokens(request):
        spent = estimate_tokens(request)
        usage = CallUsage(input_tokens=spent, output_tokens=limit - 10 - spent)
        return ModelResponse(text="did it", usage=usage)

    model = FunctionModel(maker_uses_all_but_ten_tokens)
    d, store = judged_deps(tmp_path, model, tokens=limit)  # type: ignore[arg-type]
    outcome = await run_loop(d, RunState())
    assert outcome.status == "braked"
    assert outcome.brake == "max_total_tokens"
    assert len(model.requests) == 1  # the judge was never called
    assert outcome.usage.total_tokens == limit - 10
    assert store.turns[0].interrupted.startswith("max_total_tokens of 5000 reached")
