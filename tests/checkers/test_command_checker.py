import re
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from checkers.command import CommandChecker
from loops.checking import CheckContext
from loops.model import ModelRequest, ModelResponse
from loops.processes import scrubbed_env
from loops.workflows import CheckSpec


class NoModel:
    async def complete(self, request: ModelRequest) -> ModelResponse:
        raise AssertionError("a command check must not call the model")


def make_ctx(workspace: Path, *, timeout: float = 30.0, **env: str) -> CheckContext:
    return CheckContext(
        workspace=workspace,
        summary="",
        load_diff=_diff(""),
        model=NoModel(),
        env={**scrubbed_env(), **env},
        timeout=timeout,
    )


async def test_exit_zero_passes_without_findings(tmp_path: Path) -> None:
    verdict = await CommandChecker(CheckSpec(run="echo fine")).check(make_ctx(tmp_path))

    assert verdict.passed
    [result] = verdict.results
    assert result.name == "echo fine"
    assert result.passed
    assert result.exit_code == 0
    assert result.findings == ""
    assert verdict.findings == ""


async def test_runs_in_the_workspace_with_the_context_env(tmp_path: Path) -> None:
    (tmp_path / "marker").write_text("x")
    spec = CheckSpec(run='test -f marker && test "$CHECK_FLAVOUR" = mint', name="env")

    verdict = await CommandChecker(spec).check(make_ctx(tmp_path, CHECK_FLAVOUR="mint"))

    assert verdict.passed
    assert verdict.results[0].name == "env"


async def test_failure_names_command_status_and_output(tmp_path: Path) -> None:
    spec = CheckSpec(run="echo 'assert 1 == 2' >&2; exit 3", name="unit tests")

    verdict = await CommandChecker(spec).check(make_ctx(tmp_path))

    assert not verdict.passed
    [result] = verdict.results
    assert result.exit_code == 3
    assert result.duration_s >= 0
    assert result.findings.startswith("$ echo 'assert 1 == 2' >&2; exit 3\n")
    assert "exited with status 3" in result.findings
    assert "assert 1 == 2" in result.findings
    assert verdict.findings.startswith("## unit tests failed\n$ echo")


async def test_failure_without_output_says_so(tmp_path: Path) -> None:
    verdict = await CommandChecker(CheckSpec(run="false")).check(make_ctx(tmp_path))

    assert verdict.results[0].findings == "$ false\nexited with status 1; output:\n(no output)"


async def test_timeout_fails_and_kills_the_command(tmp_path: Path) -> None:
    spec = CheckSpec(run="echo started; sleep 30", timeout_seconds=0.5)
    started = time.monotonic()

    verdict = await CommandChecker(spec).check(make_ctx(tmp_path))

    assert time.monotonic() - started < 10
    assert not verdict.passed
    [result] = verdict.results
    assert result.exit_code is None
    assert result.findings.startswith("$ echo started; sleep 30\ntimed out after 0.5s")


async def test_context_timeout_bounds_the_spec_timeout(tmp_path: Path) -> None:
    spec = CheckSpec(run="sleep 30", timeout_seconds=600)

    verdict = await CommandChecker(spec).check(make_ctx(tmp_path, timeout=0.3))

    assert "timed out after 0.3s" in verdict.results[0].findings


async def test_long_output_keeps_only_its_tail(tmp_path: Path) -> None:
    spec = CheckSpec(run=f"{sys.executable} -c \"[print('line', i) for i in range(1000)]\"; exit 1")

    verdict = await CommandChecker(spec).check(make_ctx(tmp_path))

    findings = verdict.results[0].findings
    assert "line 999" in findings
    assert "line 0\n" not in findings
    assert "earlier lines omitted" in findings
    assert len(findings.splitlines()) <= 64
    assert len(findings) < 6_500


async def test_pytest_output_keeps_first_failure_and_whole_summary(tmp_path: Path) -> None:
    failing = "\n".join(
        f"def test_fail_{i:02d}():\n    assert list(range(40)) == list(range(1, 41))\n"
        for i in range(30)
    )
    passing = "\n".join(f"def test_ok_{i}():\n    print('noise')\n" for i in range(50))
    (tmp_path / "test_sample.py").write_text(textwrap.dedent(passing + "\n" + failing))
    spec = CheckSpec(run=f"{sys.executable} -m pytest -q -p no:cacheprovider test_sample.py")
    ctx = make_ctx(tmp_path, PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    # Under CI, pytest prints every diff and summary line in full; this test is about the
    # compact output a developer's machine gets.
    for name in ("CI", "BUILD_NUMBER"):
        ctx.env.pop(name, None)

    verdict = await CommandChecker(spec).check(ctx)

    findings = verdict.results[0].findings
    assert verdict.results[0].exit_code == 1
    assert "FAILURES" in findings
    assert "test_fail_00" in findings.split("short test summary info")[0]
    assert "short test summary info" in findings
    assert "FAILED test_sample.py::test_fail_00" in findings
    assert "FAILED test_sample.py::test_fail_29" in findings
    assert "30 failed, 50 passed" in findings
    assert len(findings.splitlines()) <= 64


async def test_pytest_output_whose_summary_was_elided_keeps_first_failure_and_verdict(
    tmp_path: Path,
) -> None:
    # With CI set, pytest's summary repeats each full diff, so the capture drops the middle,
    # the summary's header included.
    failing = "\n".join(
        f"def test_fail_{i:02d}():\n    assert list(range(40)) == list(range(1, 41))\n"
        for i in range(30)
    )
    (tmp_path / "test_sample.py").write_text(failing)
    spec = CheckSpec(run=f"{sys.executable} -m pytest -q -p no:cacheprovider test_sample.py")
    ctx = make_ctx(tmp_path, PYTEST_DISABLE_PLUGIN_AUTOLOAD="1", CI="true")

    verdict = await CommandChecker(spec).check(ctx)

    findings = verdict.results[0].findings
    assert "short test summary info" not in findings
    assert "FAILURES" in findings
    assert "test_fail_00" in findings
    assert "lines omitted" in findings
    assert re.search(r"\n30 failed in [0-9.]+s$", findings)
    assert len(findings.splitlines()) <= 64
    assert len(findings) < 6_500


def _diff(text: str) -> Callable[[], Awaitable[str]]:
    async def load() -> str:
        return text

    return load
