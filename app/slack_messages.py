"""What the service says on Slack: a run's progress message (Block Kit with a plain-text
fallback) and the short answers to commands.

A progress message shows the run, its workflow and status, the turn, the checks of the latest
turn, tokens, cost, elapsed time and the trace link; once the run ends, how it ended and, for a
run that can go on, how to resume it. Slack's mrkdwn is escaped (`&`, `<`, `>`) wherever text
comes from a run or a user.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from app.ledger import RunRow
from app.progress import ENDINGS, figures, money
from loops.checking import CheckResult
from loops.jobs import ACTIVE_STATUSES, STOPPED_STATUSES, RunStatus
from loops.reporting import RunReport

MAX_CHECKS = 10
MAX_REASON_CHARS = 500
MAX_TEXT_CHARS = 2_900
"""Slack's limit on a section block's text is 3,000 characters."""

_ICONS: Mapping[RunStatus, str] = {
    "queued": ":hourglass_flowing_sand:",
    "running": ":arrows_counterclockwise:",
    "passed": ":white_check_mark:",
    "braked": ":octagonal_sign:",
    "stuck": ":warning:",
    "cancelled": ":no_entry_sign:",
    "errored": ":x:",
}

Blocks = list[dict[str, Any]]


def progress_message(report: RunReport) -> tuple[str, Blocks]:
    """The progress message of a run as `report` describes it: (fallback text, blocks)."""
    icon = _ICONS.get(report.status, "")
    title = (
        f"{icon} Loopwright run `{report.run_id}` · workflow `{escape(report.workflow)}` · "
        f"*{report.status}*"
    )
    turn = f"Turn {report.turn} of {report.max_turns}"
    shown = figures(report, lambda url: f"<{_link(url)}|trace>")
    checks = _checks(report.checks)
    ending = _ending(report) if report.kind == "finished" else ""
    hint = _hint(report)
    blocks: Blocks = [_section(title), _context(f"{turn} · {shown}")]
    if checks:
        blocks.append(_section("\n".join(checks)))
    if ending:
        blocks.append(_section(ending))
    if hint:
        blocks.append(_context(hint))
    passed = sum(check.passed for check in report.checks)
    fallback = (
        f"Loopwright run {report.run_id} ({report.workflow}): {report.status}, {turn.lower()}, "
        f"checks {passed}/{len(report.checks)} passed, {shown}"
        + (f". {_plain(ending)}" if ending else "")
    )
    return _cap(fallback, MAX_TEXT_CHARS), blocks


def queued(run_id: str, workflow: str) -> str:
    return (
        f"Queued run `{run_id}` of `{escape(workflow)}`. Progress follows here; "
        "`/loop stop` stops it."
    )


def already_queued(run_id: str, workflow: str) -> str:
    return f"Run `{run_id}` of `{escape(workflow)}` was queued already."


def unknown_workflow(name: str, names: Sequence[str]) -> str:
    known = ", ".join(f"`{n}`" for n in names) or "none"
    return f"There is no workflow `{escape(name)}`. Workflows: {known}."


def invalid(reason: str) -> str:
    return f"That is not a command I know: {escape(reason)}"


def refused(user: str, channel: str) -> str:
    return f"Sorry <@{user}>, Loopwright does not take commands from you in <#{channel}>."


def status(runs: Sequence[RunRow]) -> str:
    if not runs:
        return "No runs here yet."
    lines = [
        f"• `{run.id}` · `{escape(run.workflow)}` · *{run.status}*"
        + (f" · {money(run.usage.cost_usd)}" if run.usage.cost_usd else "")
        for run in runs
    ]
    return "Runs here, newest first:\n" + "\n".join(lines)


def stopping(stopped: Sequence[tuple[RunRow, str]]) -> str:
    named = ", ".join(f"`{run.id}` ({status})" for run, status in stopped)
    return f"Stopping {named}."


def nothing_to_stop() -> str:
    return "No run here is queued or running."


def resumed(run_id: str, extra_turns: int) -> str:
    more = f" with {extra_turns} more turn(s)" if extra_turns else ""
    return f"Resumed run `{run_id}`{more}."


def not_resumed(problem: str) -> str:
    return f"Nothing resumed: {escape(problem)}"


def escape(text: str) -> str:
    """`text` as literal mrkdwn: Slack reads `&`, `<` and `>` as markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _checks(checks: Sequence[CheckResult]) -> list[str]:
    lines = [
        f"{'✓' if check.passed else '✗'} `{escape(_cap(check.name, 100))}`"
        + (f" (score {check.score:.2f})" if check.score is not None else "")
        for check in checks[:MAX_CHECKS]
    ]
    if len(checks) > MAX_CHECKS:
        lines.append(f"… and {len(checks) - MAX_CHECKS} more checks")
    return lines


def _ending(report: RunReport) -> str:
    if report.status == "queued":
        return "The service stopped during this run: it resumes when the service next starts."
    reason = escape(_cap(" ".join(report.reason.split()), MAX_REASON_CHARS))
    ending = ENDINGS.get(report.status, f"The run ended as {report.status}")
    return f"*{ending}*" + (f": {reason}" if reason else ".")


def _hint(report: RunReport) -> str:
    if report.status in ACTIVE_STATUSES:
        return "`/loop stop` stops it."
    if report.kind == "finished" and report.status in STOPPED_STATUSES:
        return f"`/loop resume {report.run_id}` continues it."
    return ""


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _cap(text, MAX_TEXT_CHARS)}}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": _cap(text, MAX_TEXT_CHARS)}]}


def _plain(text: str) -> str:
    return text.replace("*", "")


def _link(url: str) -> str:
    return url.replace("|", "%7C").replace(">", "%3E").replace("<", "%3C")


def _cap(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
