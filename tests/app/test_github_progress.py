"""The progress comment's Markdown: every figure, the checks, the ending, what was published."""

from __future__ import annotations

from typing import Any

import pytest

from app.github_progress import MAX_COMMENT_CHARS, render_progress
from app.github_replies import MARKER, is_own_comment
from app.progress import duration
from loops.checking import CheckResult
from loops.jobs import LoopJob, RunStatus
from loops.reporting import ReportKind, RunReport
from loops.usage import Usage

RUN_ID = "3f2a9c01d4e5b6a7"
CHECKS = (
    CheckResult(name="pytest -q", passed=True, exit_code=0),
    CheckResult(name="ruff check .", passed=False, exit_code=1, findings="E501"),
    CheckResult(name="judge", passed=True, score=0.875),
)


def progress(
    kind: ReportKind = "turn_finished",
    status: RunStatus = "running",
    *,
    publish: dict[str, Any] | None = None,
    **fields: Any,
) -> RunReport:
    values: dict[str, Any] = {
        "kind": kind,
        "run_id": RUN_ID,
        "job_id": "job-1",
        "job": LoopJob(workflow="fix-tests", source="github"),
        "status": status,
        "workflow": "fix-tests",
        "turn": 2,
        "max_turns": 5,
        "usage": Usage(input_tokens=12_345, output_tokens=678, cost_usd=0.0123),
        "checks": CHECKS,
        "elapsed_s": 65.2,
        "extra": {"progress_comment_id": 7, **({"publish": publish} if publish else {})},
    }
    values.update(fields)
    return RunReport(**values)


def test_a_running_run_shows_every_figure_and_how_to_stop_it():
    body = render_progress(progress())

    assert body.startswith(f"{MARKER}\n")
    assert is_own_comment(body)
    assert f"**Loopwright run `{RUN_ID}`** · workflow `fix-tests`" in body
    assert "Status: **running** · turn 2 of 5" in body
    assert "12,345 input / 678 output tokens · $0.0123 · 1m 05s" in body
    assert body.endswith("Comment `/loop stop` to stop it.")
    assert "resume" not in body
    assert "trace" not in body


def test_each_check_of_the_latest_turn_is_marked():
    body = render_progress(progress())

    assert "- ✓ `pytest -q`\n- ✗ `ruff check .`\n- ✓ `judge` (score 0.88)" in body


def test_a_check_name_with_backticks_stays_one_code_span():
    check = CheckResult(name="echo `date`", passed=True)

    body = render_progress(progress(checks=(check,)))

    assert "- ✓ `` echo `date` ``" in body  # CommonMark strips the one space each side


def test_the_trace_link_is_shown_only_once_there_is_one():
    url = "https://opik.example/projects/p/traces?trace=abc (1)"

    with_trace = render_progress(progress(trace_url=url))
    without = render_progress(progress(trace_url=None))

    assert "[trace](https://opik.example/projects/p/traces?trace=abc%20%281%29)" in with_trace
    assert "[trace]" not in without


def test_a_queued_run_can_be_stopped():
    body = render_progress(progress("queued", "queued", turn=0, checks=(), elapsed_s=0))

    assert "Status: **queued** · turn 0 of 5" in body
    assert "· 0s" in body
    assert body.endswith("Comment `/loop stop` to stop it.")


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0, "0s"), (42.4, "42s"), (65, "1m 05s"), (3599.6, "1h 00m"), (7385, "2h 03m")],
)
def test_elapsed_time_reads_as_people_write_it(seconds: float, shown: str):
    assert duration(seconds) == shown


def test_a_passed_run_says_so_and_what_was_pushed():
    publish = {"action": "pushed", "branch": "fix/flaky", "commit": "a1b2c3d4e5f6a7b8c9d0"}

    body = render_progress(
        progress(
            "finished",
            "passed",
            reason="exit condition held 2 time(s) in a row",
            publish=publish,
        )
    )

    assert "Status: **passed**" in body
    assert "**The run passed**: exit condition held 2 time(s) in a row" in body
    assert (
        "Changes: pushed to the pull request's branch `fix/flaky` (commit `a1b2c3d4e5f6`)." in body
    )
    assert "/loop stop" not in body
    assert "/loop resume" not in body


def test_a_braked_run_says_which_brake_and_how_to_resume():
    reason = "max_turns of 5 reached (turns=5)"

    body = render_progress(progress("finished", "braked", turn=5, reason=reason))

    assert "**A brake stopped the run**: max_turns of 5 reached (turns=5)" in body
    assert body.endswith(f"Comment `/loop resume {RUN_ID}` to continue.")
    assert "Changes:" not in body  # nothing stored: nothing said


@pytest.mark.parametrize(
    ("status", "ending"),
    [
        ("stuck", "**The run is stuck**"),
        ("cancelled", "**The run was cancelled**"),
        ("errored", "**The run failed with an error**"),
    ],
)
def test_every_stopped_run_can_be_resumed(status: RunStatus, ending: str):
    body = render_progress(progress("finished", status, reason="why"))

    assert f"{ending}: why" in body
    assert body.endswith(f"Comment `/loop resume {RUN_ID}` to continue.")


def test_a_run_interrupted_by_a_shutdown_resumes_on_the_next_start():
    body = render_progress(progress("finished", "queued", reason="interrupted"))

    assert "it is queued again and resumes when the service next starts" in body
    assert body.endswith("Comment `/loop stop` to stop it.")


def test_a_long_reason_is_cut_and_kept_on_one_line():
    body = render_progress(progress("finished", "errored", reason="boom\n" + "x" * 5000))

    [line] = [ln for ln in body.splitlines() if ln.startswith("**The run failed")]
    assert line.startswith("**The run failed with an error**: boom xxx")
    assert line.endswith("…")
    assert len(line) < 700


@pytest.mark.parametrize(
    ("publish", "said"),
    [
        (
            {"action": "run_branch", "branch": "loopwright/run-x", "commit": "c0ffee"},
            "Changes: pushed to branch `loopwright/run-x` (commit `c0ffee`).",
        ),
        (
            {"action": "run_branch", "reason": "the pull request comes from a fork"},
            f"Changes: pushed to branch `loopwright/run-{RUN_ID}`, not to the pull request's"
            " branch: the pull request comes from a fork.",
        ),
        (
            {"action": "diff", "reason": "push refused", "diff": "+x\n"},
            "Changes: not pushed (push refused); the diff is below.",
        ),
        ({"action": "diff", "diff": ""}, "Changes: not pushed."),
        ({"action": "nothing"}, "Changes: none to publish."),
        (
            {"action": "failed", "reason": "git push timed out"},
            "Changes: publishing failed: git push timed out.",
        ),
        ({"action": "pushed"}, "Changes: pushed to the pull request's branch."),
    ],
)
def test_each_way_of_publishing_is_told(publish: dict[str, Any], said: str):
    body = render_progress(progress("finished", "passed", reason="ok", publish=publish))

    assert said in body


def test_publish_data_is_ignored_until_the_run_has_ended():
    report = progress(publish={"action": "nothing"})

    assert "Changes:" not in render_progress(report)


def test_a_diff_is_shown_collapsed_in_a_diff_fence():
    diff = "diff --git a/x.py b/x.py\n--- a/x.py\n+++ b/x.py\n@@ -1 +1 @@\n-a = 1\n+a = 2\n"
    publish = {"action": "diff", "reason": "no push access", "diff": diff}

    body = render_progress(progress("finished", "braked", reason="r", publish=publish))

    assert (
        "<details><summary>Diff (6 lines)</summary>\n\n```diff\n"
        + diff.rstrip("\n")
        + "\n```\n\n</details>"
    ) in body
    assert body.endswith(f"Comment `/loop resume {RUN_ID}` to continue.")


def test_a_diff_holding_a_fence_gets_a_longer_one():
    diff = "+```python\n+print(1)\n+```\n"

    body = render_progress(progress("finished", "passed", publish={"action": "diff", "diff": diff}))

    assert "````diff\n+```python\n+print(1)\n+```\n````" in body


def test_a_huge_diff_is_cut_so_the_comment_fits_on_github():
    lines = [f"+line {i:06d} " + "y" * 70 for i in range(20_000)]
    publish = {"action": "diff", "reason": "no push access", "diff": "\n".join(lines)}

    body = render_progress(progress("finished", "braked", reason="r", publish=publish))

    assert len(body) < MAX_COMMENT_CHARS
    assert len(body) > MAX_COMMENT_CHARS - 1_000  # as much of the diff as fits is shown
    assert "of 20000 lines)</summary>" in body
    assert "The diff was cut here to fit in this comment." in body
    assert body.count("```") == 2  # the fence is closed after the cut
    assert body.endswith(f"Comment `/loop resume {RUN_ID}` to continue.")
    shown = [ln for ln in body.splitlines() if ln.startswith("+line ")]
    assert shown == lines[: len(shown)]  # whole lines, from the start


def test_a_diff_of_one_enormous_line_is_not_shown():
    publish = {"action": "diff", "diff": "+" + "z" * 100_000}

    body = render_progress(progress("finished", "passed", publish=publish))

    assert len(body) < MAX_COMMENT_CHARS
    assert "The diff (1 line) is too long to show here." in body
    assert "zzz" not in body
