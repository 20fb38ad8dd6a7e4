import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from checkers.command import CommandChecker
from checkers.composite import CompositeChecker
from checkers.factory import build_checker
from checkers.judge import JudgeChecker
from loops.checking import CheckContext, CheckResult, Verdict
from loops.model import ModelRequest, ModelResponse
from loops.processes import scrubbed_env
from loops.workflows import CheckSpec, ExitCondition, JudgeSpec


class StubChecker:
    """Returns a fixed verdict and records when it ran."""

    def __init__(self, calls: list[str], name: str, *passed: bool) -> None:
        self.calls = calls
        self.name = name
        self.verdict = Verdict(
            passed=all(passed),
            results=tuple(
                CheckResult(name=f"{name}{i}", passed=p, findings=f"{name}{i} says no")
                for i, p in enumerate(passed)
            ),
        )

    async def check(self, ctx: CheckContext) -> Verdict:
        self.calls.append(self.name)
        await asyncio.sleep(0)
        return self.verdict


class JudgeModel:
    def __init__(self, text: str) -> None:
        self.text = text
        self.requests: list[ModelRequest] = []

    async def complete(self, request: ModelRequest) -> ModelResponse:
        self.requests.append(request)
        return ModelResponse(text=self.text, model=request.model)


def make_ctx(workspace: Path = Path("."), model: JudgeModel | None = None) -> CheckContext:
    return CheckContext(
        workspace=workspace,
        summary="done",
        load_diff=_diff("+x"),
        model=model or JudgeModel('{"score": 1}'),
        env=scrubbed_env(),
        timeout=30,
    )


async def test_all_passing_passes_with_results_in_order() -> None:
    calls: list[str] = []
    composite = CompositeChecker(
        [StubChecker(calls, "a", True), StubChecker(calls, "b", True, True)]
    )

    verdict = await composite.check(make_ctx())

    assert verdict.passed
    assert calls == ["a", "b"]
    assert [r.name for r in verdict.results] == ["a0", "b0", "b1"]
    assert verdict.findings == ""


async def test_one_failure_fails_but_every_checker_runs() -> None:
    calls: list[str] = []
    composite = CompositeChecker(
        [
            StubChecker(calls, "a", False),
            StubChecker(calls, "b", True),
            StubChecker(calls, "c", True, False),
        ]
    )

    verdict = await composite.check(make_ctx())

    assert not verdict.passed
    assert calls == ["a", "b", "c"]
    assert [(r.name, r.passed) for r in verdict.results] == [
        ("a0", False),
        ("b0", True),
        ("c0", True),
        ("c1", False),
    ]
    assert verdict.findings == "## a0 failed\na0 says no\n\n## c1 failed\nc1 says no"


async def test_fail_fast_stops_after_the_first_failure() -> None:
    calls: list[str] = []
    composite = CompositeChecker(
        [StubChecker(calls, "a", True), StubChecker(calls, "b", False), StubChecker(calls, "c")],
        fail_fast=True,
    )

    verdict = await composite.check(make_ctx())

    assert not verdict.passed
    assert calls == ["a", "b"]
    assert [r.name for r in verdict.results] == ["a0", "b0"]


async def test_fail_fast_runs_everything_when_all_pass() -> None:
    calls: list[str] = []
    composite = CompositeChecker(
        [StubChecker(calls, "a", True), StubChecker(calls, "b", True)], fail_fast=True
    )

    assert (await composite.check(make_ctx())).passed
    assert calls == ["a", "b"]


async def test_no_checkers_never_passes() -> None:
    verdict = await CompositeChecker([]).check(make_ctx())

    assert not verdict.passed
    assert "no checks are configured" in verdict.findings


async def test_build_checker_runs_commands_in_order_then_the_judge(tmp_path: Path) -> None:
    exit_condition = ExitCondition(
        checks=(CheckSpec(run="true", name="lint"), CheckSpec(run="exit 4")),
        judge=JudgeSpec(rubric="Be good.", threshold=0.5),
    )
    model = JudgeModel('{"score": 0.9, "findings": "good"}')

    checker = build_checker(exit_condition, default_judge_model="judge/default")
    verdict = await checker.check(make_ctx(tmp_path, model))

    assert not verdict.passed
    assert [(r.name, r.passed) for r in verdict.results] == [
        ("lint", True),
        ("exit 4", False),
        ("judge", True),
    ]
    assert [r.model for r in model.requests] == ["judge/default"]
    assert verdict.findings.startswith("## exit 4 failed\n$ exit 4\nexited with status 4")


async def test_build_checker_prefers_the_specs_judge_model_and_fail_fast() -> None:
    exit_condition = ExitCondition(
        checks=(CheckSpec(run="pytest -q"),),
        judge=JudgeSpec(rubric="r", model="judge/special"),
        fail_fast=True,
    )

    checker = build_checker(exit_condition, default_judge_model="judge/default")

    assert isinstance(checker, CompositeChecker)
    assert checker.fail_fast
    command, judge = checker.checkers
    assert isinstance(command, CommandChecker)
    assert command.spec.run == "pytest -q"
    assert isinstance(judge, JudgeChecker)
    assert judge.model == "judge/special"


async def test_build_checker_without_judge_skips_the_model(tmp_path: Path) -> None:
    model = JudgeModel("unused")
    checker = build_checker(
        ExitCondition(checks=(CheckSpec(run="true"),)), default_judge_model="judge/default"
    )

    verdict = await checker.check(make_ctx(tmp_path, model))

    assert verdict.passed
    assert model.requests == []


def _diff(text: str) -> Callable[[], Awaitable[str]]:
    async def load() -> str:
        return text

    return load
