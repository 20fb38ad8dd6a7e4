"""What the maker is shown at the start of every turn: always a fresh context."""

from __future__ import annotations

from loops.model import Message
from loops.workflows import Workflow

SYSTEM_PROMPT = """\
You are the maker in an unattended engineering loop. Nobody will answer questions: decide, act,
and verify with the tools you have. You work inside one workspace directory; every path you pass
to a tool is relative to it.

How a turn works:
- Use the tools to inspect and change the workspace. Make focused changes that serve the task.
- When you are done for this turn, answer with a short summary of what you changed and why,
  without calling a tool. That ends the turn.
- An independent checker then grades the workspace. The run succeeds when {exit}.
  If it fails, its findings are your next instruction.
- Use `note` to record facts worth keeping across turns (what you tried, what you learned);
  each turn starts from fresh context plus those notes.

Tools available this run: {tools}.
"""


def system_message(workflow: Workflow) -> Message:
    text = SYSTEM_PROMPT.format(exit=workflow.exit.describe(), tools=", ".join(workflow.tools))
    return Message(role="system", content=text)


def task_message(
    workflow: Workflow, rendered_task: str, *, state: str, findings: str, turn: int
) -> Message:
    """The rendered task, with STATE.md and the findings appended when the template omits them."""
    parts = [rendered_task.strip()]
    if state.strip() and "state" not in workflow.template:
        parts.append(f"Notes kept in STATE.md from earlier turns:\n{state.strip()}")
    if findings.strip() and "findings" not in workflow.template:
        parts.append(f"Checker findings from the last turn:\n{findings.strip()}")
    parts.append(f"(turn {turn} of at most {workflow.brakes.max_turns})")
    return Message(role="user", content="\n\n".join(p for p in parts if p))
