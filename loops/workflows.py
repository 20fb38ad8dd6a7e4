"""Workflow definitions: what a loop does, with which tools, under which brakes, until when.

A workflow is a Markdown file: YAML front matter, then a Jinja2 template of the maker's task.
Parsing and validation live in `loops.workflow_files`; this module holds the frozen values the
engine runs on.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal

from loops.brakes import Brakes

ToolName = Literal["read_file", "write_file", "list_files", "search", "run", "note"]
TOOL_NAMES: tuple[ToolName, ...] = (
    "read_file",
    "write_file",
    "list_files",
    "search",
    "run",
    "note",
)
WorkspaceKind = Literal["pr", "repo", "none"]


@dataclass(frozen=True, kw_only=True)
class CheckSpec:
    run: str
    name: str = ""
    timeout_seconds: float = 600.0

    @property
    def label(self) -> str:
        return self.name or self.run


@dataclass(frozen=True, kw_only=True)
class JudgeSpec:
    rubric: str
    model: str | None = None  # None: LOOPWRIGHT_JUDGE_MODEL
    threshold: float = 0.8


@dataclass(frozen=True, kw_only=True)
class ExitCondition:
    checks: tuple[CheckSpec, ...] = ()
    judge: JudgeSpec | None = None
    passes: int = 1
    fail_fast: bool = False

    def describe(self) -> str:
        parts = [c.label for c in self.checks]
        if self.judge is not None:
            parts.append(f"judge >= {self.judge.threshold:g}")
        what = " and ".join(parts) if parts else "nothing"
        times = "once" if self.passes == 1 else f"{self.passes} times in a row"
        return f"{what} pass {times}"


@dataclass(frozen=True, kw_only=True)
class ReplyTarget:
    slack_channel: str | None = None
    github_issue: str | None = None  # "owner/name#123"


@dataclass(frozen=True, kw_only=True)
class Schedule:
    cron: str
    timezone: str = "UTC"
    repo: str | None = None
    workdir: str | None = None
    reply: ReplyTarget | None = None
    grace_seconds: int = 3600
    instruction: str = ""


@dataclass(frozen=True, kw_only=True)
class OnSuccess:
    push: bool = False


@dataclass(frozen=True, kw_only=True)
class Workflow:
    """A parsed, validated workflow. `source` is the file's full text, kept so a run can be
    re-created from exactly what it started with even after the file changes."""

    name: str
    template: str
    source: str
    path: str = ""
    description: str = ""
    model: str | None = None
    workspace: WorkspaceKind = "repo"
    tools: tuple[ToolName, ...] = TOOL_NAMES
    brakes: Brakes = field(default_factory=Brakes)
    exit: ExitCondition = field(default_factory=ExitCondition)
    schedule: Schedule | None = None
    on_success: OnSuccess = field(default_factory=OnSuccess)

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(self.source.encode()).hexdigest()[:16]

    def summary(self) -> str:
        """One line: the brakes and the exit condition."""
        b = self.brakes
        limits = [f"max_turns={b.max_turns}", f"max_steps_per_turn={b.max_steps_per_turn}"]
        for label, value in (
            ("max_total_tokens", b.max_total_tokens),
            ("max_input_tokens", b.max_input_tokens),
            ("max_output_tokens", b.max_output_tokens),
            ("max_cost_usd", b.max_cost_usd),
            ("max_wall_seconds", b.max_wall_seconds),
        ):
            if value is not None:
                limits.append(f"{label}={value:g}")
        sched = f"; schedule {self.schedule.cron} {self.schedule.timezone}" if self.schedule else ""
        return f"{self.name}: brakes {', '.join(limits)}; exit when {self.exit.describe()}{sched}"
