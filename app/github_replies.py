"""The comments Loopwright answers commands with, as Markdown.

Every one starts with `MARKER`, an HTML comment GitHub does not render, so the service knows its
own comments whatever account posted them (a plain token may belong to a person's login) and
never runs a command it finds in one.
"""

from __future__ import annotations

from collections.abc import Sequence

from app.ledger import RunRow
from loops.workflow_schema import did_you_mean
from triggers.commands import USAGE

MARKER = "<!-- loopwright -->"
MAX_LISTED_WORKFLOWS = 30
MAX_STATUS_RUNS = 5
_MAX_REASON_CHARS = 300


def is_own_comment(body: str) -> bool:
    """Whether a comment was written by this service (it starts with `MARKER`)."""
    return body.lstrip().startswith(MARKER)


def _comment(author: str, text: str) -> str:
    return f"{MARKER}\n@{author} {text}"


def denied(author: str, repo: str) -> str:
    return _comment(
        author,
        f"Loopwright commands need write, maintain or admin permission on `{repo}`, "
        "and you do not have it here, so nothing was started.",
    )


def invalid(author: str, reason: str) -> str:
    text = reason if USAGE in reason else f"{reason}; {USAGE}"
    return _comment(author, f"I could not read that command: {text}")


def unknown_workflow(author: str, name: str, available: Sequence[str]) -> str:
    hint = did_you_mean(name, available)
    if not available:
        return _comment(author, f"there is no workflow `{name}`, and none are available here.")
    shown = ", ".join(f"`{n}`" for n in available[:MAX_LISTED_WORKFLOWS])
    more = f" and {len(available) - MAX_LISTED_WORKFLOWS} more" if _too_many(available) else ""
    return _comment(
        author, f"there is no workflow `{name}`{hint}. Available workflows: {shown}{more}."
    )


def broken_workflow(author: str, name: str, reason: str) -> str:
    return _comment(author, f"workflow `{name}` cannot run: {reason}")


def stopping(author: str, thread: str, stopped: Sequence[tuple[RunRow, str]]) -> str:
    """The answer to `/loop stop`; `stopped` pairs each run with its status after the cancel."""
    lines = [
        f"- run `{run.id}` ({run.workflow}): "
        + ("stopping now" if status == "running" else "cancelled before it started")
        for run, status in stopped
    ]
    return _comment(author, f"stopping the active runs of this {thread}:\n" + "\n".join(lines))


def nothing_to_stop(author: str, thread: str) -> str:
    return _comment(author, f"no run of this {thread} is queued or running; nothing to stop.")


def status(author: str, thread: str, runs: Sequence[RunRow]) -> str:
    if not runs:
        return _comment(author, f"Loopwright has no runs on this {thread} yet.")
    lines = [_status_line(run) for run in runs[:MAX_STATUS_RUNS]]
    return _comment(author, f"the latest runs on this {thread}, newest first:\n" + "\n".join(lines))


def resumed(author: str, run: RunRow, *, extra_turns: int) -> str:
    plural = "" if extra_turns == 1 else "s"
    budget = f", with {extra_turns} more turn{plural}" if extra_turns else ""
    return _comment(
        author,
        f"resuming run `{run.id}` ({run.workflow}) after turn {run.turns_done}{budget}; "
        "it is queued.",
    )


def not_resumed(author: str, reason: str) -> str:
    return _comment(author, f"nothing was resumed: {reason}")


def _status_line(run: RunRow) -> str:
    state = f"**{run.status}**" + (f" ({run.brake})" if run.brake else "")
    figures = f"turn {run.turns_done}/{run.brakes.max_turns}, ${run.cost_usd:.4f}"
    reason = run.reason.strip().replace("\n", " ")
    if len(reason) > _MAX_REASON_CHARS:
        reason = reason[: _MAX_REASON_CHARS - 1] + "…"
    return f"- run `{run.id}` {run.workflow}: {state}, {figures}" + (
        f" — {reason}" if reason else ""
    )


def _too_many(names: Sequence[str]) -> bool:
    return len(names) > MAX_LISTED_WORKFLOWS
