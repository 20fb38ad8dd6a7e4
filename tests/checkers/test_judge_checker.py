import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from checkers.judge import JudgeChecker, extract_json_object
from loops.checking import CheckContext
from loops.errors import BrakeTripped, ModelUnavailable
from loops.model import CallUsage, ModelRequest, ModelResponse
from loops.workflows import JudgeSpec

RUBRIC = "The new endpoint validates its input and has tests."


class FakeModel:
    """Answers each request with the next queued text, or raises the next queued exception."""

    def __init__(self, *answers: str | BaseException, delay: float = 0.0) -> None:
        self.answers = list(answers)
        self.delay = delay
        self.requests: list[ModelRequest] = []

    async def complete(self, request: ModelRequest) -> ModelResponse:
        self.requests.append(request)
        if self.delay:
            await asyncio.sleep(self.delay)
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return ModelResponse(
            text=answer,
            model=request.model,
            usage=CallUsage(input_tokens=120, output_tokens=30, cost_usd=0.0004),
        )


def make_ctx(
    model: FakeModel, *, summary: str = "", diff: str = "", timeout: float = 30.0
) -> CheckContext:
    return CheckContext(
        workspace=Path("."),
        summary=summary,
        load_diff=_diff(diff),
        model=model,
        env={},
        timeout=timeout,
        turn=2,
    )


def judge(threshold: float = 0.8) -> JudgeChecker:
    return JudgeChecker(JudgeSpec(rubric=RUBRIC, threshold=threshold), "judge/model-a")


async def test_score_at_threshold_passes_with_one_json_request() -> None:
    model = FakeModel('{"score": 0.8, "findings": "Input is validated; tests cover it."}')
    ctx = make_ctx(model, summary="Added POST /items", diff="+def create_item(): ...")

    verdict = await judge().check(ctx)

    assert verdict.passed
    [result] = verdict.results
    assert result.name == "judge"
    assert result.score == 0.8
    assert result.findings == "Input is validated; tests cover it."
    assert result.exit_code is None
    [request] = model.requests
    assert request.model == "judge/model-a"
    assert request.purpose == "judge"
    assert request.response_format == "json"
    assert request.tools == ()
    system, user = request.messages
    assert system.role == "system"
    assert "strict" in system.content
    assert "rubric" in system.content
    assert user.role == "user"
    assert RUBRIC in user.content
    assert "Added POST /items" in user.content
    assert "+def create_item(): ..." in user.content


async def test_empty_summary_and_diff_are_named_for_the_judge() -> None:
    model = FakeModel('{"score": 0}')

    await judge().check(make_ctx(model))

    user = model.requests[0].messages[1].content
    assert "(the maker gave no summary)" in user
    assert "(no changes in the workspace)" in user


async def test_score_below_threshold_fails_with_the_judges_findings() -> None:
    model = FakeModel('{"score": 0.55, "findings": "No test for empty names.", "passed": true}')

    verdict = await judge().check(make_ctx(model))

    assert not verdict.passed
    [result] = verdict.results
    assert result.score == 0.55
    assert result.findings == "score 0.55 is below the threshold of 0.8:\nNo test for empty names."
    assert verdict.findings.startswith("## judge failed\nscore 0.55 is below")


async def test_fenced_json_is_accepted() -> None:
    model = FakeModel('```json\n{"score": 0.9, "findings": "ok"}\n```')

    verdict = await judge().check(make_ctx(model))

    assert verdict.passed
    assert verdict.results[0].score == 0.9


async def test_prose_around_the_json_object_is_ignored() -> None:
    answer = (
        "Looking at the diff {briefly}, here is my grade:\n"
        '{"score": 0.3, "findings": ["no validation", "no tests"]}\n'
        'Hope this helps! {"score": 1}'
    )

    verdict = await judge().check(make_ctx(FakeModel(answer)))

    [result] = verdict.results
    assert not result.passed
    assert result.score == 0.3
    assert result.findings.endswith(":\n- no validation\n- no tests")


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("I think it is fine.", "no JSON object found"),
        ("", "the answer is empty"),
        ('{"findings": "fine"}', "score: Field required"),
        ('{"score": "0.9"}', "score: Input should be a valid number"),
        ('{"score": true}', "score: Input should be a valid number"),
        ('{"score": 0.9, "findings": 3}', "findings: Input should be a valid string"),
    ],
)
async def test_malformed_answer_is_a_failing_result(answer: str, reason: str) -> None:
    verdict = await judge().check(make_ctx(FakeModel(answer)))

    assert not verdict.passed
    [result] = verdict.results
    assert result.score is None
    assert result.findings.startswith(f"judge answered malformed JSON: {reason}")
    assert "finish_reason='stop'" in result.findings


async def test_malformed_answer_quotes_its_beginning() -> None:
    verdict = await judge().check(make_ctx(FakeModel("Sure! " + "x" * 500)))

    findings = verdict.results[0].findings
    assert "answer began 'Sure! xxx" in findings
    assert "x" * 300 not in findings


@pytest.mark.parametrize("score", ["1.5", "-0.1"])
async def test_score_out_of_range_is_a_failing_result(score: str) -> None:
    verdict = await judge(threshold=0.0).check(make_ctx(FakeModel(f'{{"score": {score}}}')))

    assert not verdict.passed
    assert verdict.results[0].findings.startswith(
        f"judge answered malformed JSON: score {score} is outside 0..1"
    )


async def test_model_error_is_a_failing_result() -> None:
    model = FakeModel(ModelUnavailable("503 from provider"))

    verdict = await judge().check(make_ctx(model))

    assert not verdict.passed
    assert verdict.results[0].findings == "judge model failed: ModelUnavailable: 503 from provider"


async def test_no_answer_within_the_check_timeout_is_a_failing_result() -> None:
    model = FakeModel('{"score": 1}', delay=5)

    verdict = await judge().check(make_ctx(model, timeout=0.1))

    assert not verdict.passed
    assert verdict.results[0].findings == "judge model failed: no answer within 0.1s"


async def test_tripped_brake_propagates() -> None:
    model = FakeModel(BrakeTripped("max_cost_usd", 2.0, 2.01))

    with pytest.raises(BrakeTripped, match="max_cost_usd of 2 reached"):
        await judge().check(make_ctx(model))


async def test_cancellation_propagates() -> None:
    model = FakeModel(asyncio.CancelledError())

    with pytest.raises(asyncio.CancelledError):
        await judge().check(make_ctx(model))


def test_extract_json_object_prefers_a_fenced_block_over_prose() -> None:
    text = 'Grade (see {below}):\n```\n{"score": 0.7}\n```\nand {"score": 0.1}'

    assert extract_json_object(text) == {"score": 0.7}


def _diff(text: str) -> Callable[[], Awaitable[str]]:
    async def load() -> str:
        return text

    return load
