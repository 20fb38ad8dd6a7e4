"""`loopwright schedules`: each scheduled workflow of the workflows dir with its next fire times.

Reads the files as the service would load them; imports neither the service nor litellm, so it
answers at once.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from loops.workflow_files import load_workflows
from loops.workflows import Schedule, Workflow
from triggers.cron import next_fire_times


def list_schedules(directory: Path, *, now: datetime, count: int, as_json: bool) -> None:
    """Print the schedules; files that do not load are named on stderr (the service keeps
    the last good version of a file it had loaded)."""
    found, problems = load_workflows(directory)
    for problem in problems:
        print(f"invalid, not listed: {problem}", file=sys.stderr)
    scheduled = [w for _, w in sorted(found.items()) if w.schedule is not None]
    views = [_view(w, now, count) for w in scheduled]
    if as_json:
        print(json.dumps(views, indent=2))
    for view in [] if as_json else views:
        print(_line(view))
        for fire in view["next"]:
            print(f"    {fire}")
    if not scheduled:
        print(f"no scheduled workflows in {str(directory)!r}", file=sys.stderr)


def _view(workflow: Workflow, now: datetime, count: int) -> dict[str, Any]:
    schedule = workflow.schedule
    assert schedule is not None
    return {
        "workflow": workflow.name,
        "cron": schedule.cron,
        "timezone": schedule.timezone,
        "target": _target(schedule),
        "reply": _reply(schedule),
        "grace_seconds": schedule.grace_seconds,
        "next": [t.isoformat() for t in next_fire_times(schedule, now, count)],
    }


def _target(schedule: Schedule) -> str:
    return f"repo {schedule.repo}" if schedule.repo else f"workdir {schedule.workdir}"


def _reply(schedule: Schedule) -> str:
    reply = schedule.reply
    if reply is None:
        return "none"
    parts = [f"slack {reply.slack_channel}"] if reply.slack_channel else []
    parts += [f"github {reply.github_issue}"] if reply.github_issue else []
    return ", ".join(parts) or "none"


def _line(view: dict[str, Any]) -> str:
    return (
        f"{view['workflow']}  {view['cron']!r} {view['timezone']}  {view['target']}  "
        f"reply {view['reply']}  grace {view['grace_seconds']}s"
    )
