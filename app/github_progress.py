"""The progress comment of a run on GitHub, as Markdown: one per run, edited in place.

While the run is queued or running it shows the run, its workflow, status, turn, the checks of
the latest turn, usage, elapsed time, the trace link and how to stop it. Once the run ends it
says how, what was published (read from the run's stored `publish` data) and, for a run that
can go on, how to resume it. The whole comment always fits GitHub's limit on a comment's size:
a long diff is cut to what fits, and the comment says so.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from app.github_replies import MARKER
from app.progress import ENDINGS, figures
from loops.checking import CheckResult
from loops.jobs import ACTIVE_STATUSES, STOPPED_STATUSES
from loops.reporting import RunReport

MAX_COMMENT_CHARS = 65_536
"""GitHub refuses a comment body longer than this."""
_SAFETY_CHARS = 256  # headroom under the limit, for counting differences at GitHub's end
MAX_REASON_CHARS = 600
MAX_CHECKS = 25
MAX_CHECK_NAME_CHARS = 120
MAX_PUBLISH_REASON_CHARS = 300

_BACKTICKS = re.compile(r"`+")
_DIFF_FRAME_CHARS = 200  # the diff block's own text around the lines: summary, fence, cut note


def render_progress(report: RunReport) -> str:
    """The progress comment for a run as `report` describes it (checks: `report.checks`)."""
    lines = [
        MARKER,
        f"**Loopwright run {_code(report.run_id)}** · workflow {_code(report.workflow)}",
        "",
        f"Status: **{report.status}** · turn {report.turn} of {report.max_turns}",
        *_checks(report.checks),
        "",
        figures(report, lambda url: f"[trace]({_link(url)})"),
    ]
    publish = _publish(report)
    if report.kind == "finished":
        lines += ["", _ending(report)]
    if publish:
        lines += ["", _published(publish, report.run_id)]
    body = "\n".join(lines)
    hint = _hint(report)
    diff = _diff(publish)
    if diff:
        room = MAX_COMMENT_CHARS - _SAFETY_CHARS - len(body) - len(hint) - 4
        body += "\n\n" + _diff_block(diff, room)
    return f"{body}\n\n{hint}" if hint else body


def _checks(checks: Sequence[CheckResult]) -> list[str]:
    lines = [_check(check) for check in checks[:MAX_CHECKS]]
    if len(checks) > MAX_CHECKS:
        lines.append(f"- … and {len(checks) - MAX_CHECKS} more checks")
    return lines


def _check(check: CheckResult) -> str:
    mark = "✓" if check.passed else "✗"
    score = f" (score {check.score:.2f})" if check.score is not None else ""
    return f"- {mark} {_code(_cap(check.name, MAX_CHECK_NAME_CHARS))}{score}"


def _ending(report: RunReport) -> str:
    if report.status == "queued":
        return (
            "The service stopped during this run: it is queued again and resumes when the "
            "service next starts."
        )
    reason = _cap(" ".join(report.reason.split()), MAX_REASON_CHARS)
    ending = ENDINGS.get(report.status, f"The run ended as {report.status}")
    return f"**{ending}**" + (f": {reason}" if reason else ".")


def _publish(report: RunReport) -> Mapping[str, object]:
    """What the run published, once it has ended (stored by the publisher in the run's extra)."""
    publish = report.extra.get("publish") if report.kind == "finished" else None
    return publish if isinstance(publish, Mapping) else {}


def _published(publish: Mapping[str, object], run_id: str) -> str:
    action = publish.get("action")
    named = publish.get("branch") or (f"loopwright/run-{run_id}" if action == "run_branch" else "")
    branch = f" {_code(str(named))}" if named else ""
    commit = publish.get("commit")
    at = f" (commit {_code(str(commit)[:12])})" if commit else ""
    reason = _cap(" ".join(str(publish.get("reason") or "").split()), MAX_PUBLISH_REASON_CHARS)
    because = f": {reason}" if reason else ""
    below = "; the diff is below" if _diff(publish) else ""
    match action:
        case "pushed":
            text = f"pushed to the pull request's branch{branch}{at}."
        case "run_branch":
            text = f"pushed to branch{branch}{at}" + (
                f", not to the pull request's branch{because}." if reason else "."
            )
        case "diff":
            text = "not pushed" + (f" ({reason})" if reason else "") + f"{below}."
        case "nothing":
            text = "none to publish."
        case "failed":
            text = f"publishing failed{because}."
        case _:
            text = f"publishing ended as {_code(str(action))}{because}."
    return f"Changes: {text}"


def _diff(publish: Mapping[str, object]) -> str:
    diff = publish.get("diff")
    return diff if isinstance(diff, str) and diff.strip() else ""


def _diff_block(diff: str, room: int) -> str:
    """`diff` in a collapsed block of at most `room` characters, cut at a line when too long."""
    fence = "`" * max(3, _longest_backtick_run(diff) + 1)
    lines = diff.rstrip("\n").split("\n")
    total = len(lines)
    kept = _fit(lines, room - _DIFF_FRAME_CHARS - 2 * len(fence))
    if kept == 0:
        return f"The diff ({_lines(total)}) is too long to show here."
    counted = _lines(total) if kept == total else f"first {kept} of {_lines(total)}"
    note = "" if kept == total else "The diff was cut here to fit in this comment.\n\n"
    return (
        f"<details><summary>Diff ({counted})</summary>\n\n{fence}diff\n"
        + "\n".join(lines[:kept])
        + f"\n{fence}\n\n{note}</details>"
    )


def _fit(lines: Sequence[str], budget: int) -> int:
    """How many leading lines fit in `budget` characters, newlines included."""
    used = 0
    for index, line in enumerate(lines):
        used += len(line) + 1
        if used > budget:
            return index
    return len(lines)


def _lines(count: int) -> str:
    return f"{count} line" if count == 1 else f"{count} lines"


def _hint(report: RunReport) -> str:
    if report.status in ACTIVE_STATUSES:
        return "Comment `/loop stop` to stop it."
    if report.kind == "finished" and report.status in STOPPED_STATUSES:
        return f"Comment `/loop resume {report.run_id}` to continue."
    return ""


def _code(text: str) -> str:
    """`text` as an inline code span, whatever backticks it holds (CommonMark's rule)."""
    flat = " ".join(text.split())
    ticks = "`" * (_longest_backtick_run(flat) + 1)
    pad = " " if flat.startswith("`") or flat.endswith("`") else ""
    return f"{ticks}{pad}{flat}{pad}{ticks}"


def _longest_backtick_run(text: str) -> int:
    return max((len(run) for run in _BACKTICKS.findall(text)), default=0)


def _cap(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _link(url: str) -> str:
    # Spaces and parentheses would end a Markdown link destination early.
    return url.replace(" ", "%20").replace("(", "%28").replace(")", "%29")
