"""Regression cases: one file per failing run, everything needed to run it again.

A case holds the workflow (name, path, content hash and full text, so a replay runs exactly
what ran), the job, the workspace's starting point, the model's recorded answers in call
order, the checks, and the outcome the run had. `regress export` writes them from Opik traces
(and the ledger); `regress run` replays or re-runs them and compares outcomes by rank.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from loops.model import CallUsage, ModelResponse, ToolCall

SCHEMA_VERSION = 1
CASE_SUFFIX = ".json"

RANKS: Mapping[str, int] = {"passed": 3, "stuck": 2, "braked": 2, "cancelled": 1, "errored": 0}
"""How good an outcome is: a case regresses when it now ends with a lower rank."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WorkflowInfo(_Model):
    name: str
    path: str
    content_hash: str
    text: str


class JobInfo(_Model):
    source: str
    instruction: str = ""
    repo: str | None = None
    pr: int | None = None
    model: str | None = None
    requested_by: str | None = None
    job_id: str | None = None


class StartingPoint(_Model):
    """Where the workspace started.

    kinds: `git` (a repository and commit to clone), `bundle` (a git bundle of the local
    workdir's commit, kept beside the case), `empty` (a workflow without a workspace), or
    `unknown` (nothing recorded; the case cannot be replayed).
    """

    kind: Literal["git", "bundle", "empty", "unknown"]
    repository: str | None = None
    ref: str | None = None
    commit: str | None = None
    bundle: str | None = None
    note: str = ""


class RecordedCall(_Model):
    name: str
    arguments: str


class Answer(_Model):
    """One model answer as recorded (maker and judge calls share one port, in call order)."""

    purpose: str = "maker"
    text: str = ""
    tool_calls: list[RecordedCall] = Field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    model: str = ""
    provider: str = ""
    finish_reason: str = "stop"

    def response(self, number: int) -> ModelResponse:
        calls = tuple(
            ToolCall(id=f"call_{number}_{i}", name=c.name, arguments=c.arguments)
            for i, c in enumerate(self.tool_calls, 1)
        )
        usage = CallUsage(
            input_tokens=self.input_tokens, output_tokens=self.output_tokens, cost_usd=self.cost_usd
        )
        return ModelResponse(
            text=self.text,
            tool_calls=calls,
            usage=usage,
            model=self.model,
            provider=self.provider,
            finish_reason=self.finish_reason,
        )


class Checks(_Model):
    commands: list[str] = Field(default_factory=list)
    judge: bool = False
    passes: int = 1
    score: float | None = None
    reason: str = ""


class RecordedOutcome(_Model):
    status: str
    turns: int = 0
    reason: str = ""
    brake: str | None = None


class TraceInfo(_Model):
    id: str
    run_id: str
    tags: list[str] = Field(default_factory=list)
    why: list[str] = Field(default_factory=list)
    dataset: str | None = None
    dataset_item_id: str | None = None


class Case(_Model):
    schema_version: int = SCHEMA_VERSION
    id: str
    workflow: WorkflowInfo
    job: JobInfo
    start: StartingPoint
    answers: list[Answer] | None
    """None when the trace holds no content (capture was off): the case cannot be replayed."""
    failed_calls: int = 0
    checks: Checks
    outcome: RecordedOutcome
    trace: TraceInfo

    @property
    def replay_problem(self) -> str | None:
        """Why this case cannot be replayed offline, or None."""
        if self.answers is None:
            return "the trace holds no model answers (content capture was off)"
        if self.start.kind == "unknown":
            return f"the workspace's starting point is unknown ({self.start.note})"
        return None

    def summary(self) -> dict[str, Any]:
        """The case as an Opik dataset item's input."""
        return {
            "case": self.id,
            "workflow": self.workflow.name,
            "workflow_hash": self.workflow.content_hash,
            "instruction": self.job.instruction,
            "repo": self.job.repo,
            "pr": self.job.pr,
            "start": self.start.model_dump(exclude_defaults=True),
            "answers": None if self.answers is None else len(self.answers),
            "run_id": self.trace.run_id,
            "trace_id": self.trace.id,
        }


def case_id(workflow: str, run_id: str) -> str:
    return f"{_safe(workflow)}-{_safe(run_id)}"


def _safe(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", value).strip("._") or "case"


def write_case(case: Case, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{case.id}{CASE_SUFFIX}"
    text = json.dumps(case.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def read_case(path: Path) -> Case:
    """Raises `ValueError` for a file that is not a case of a known schema."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{str(path)!r} is not a readable case file: {exc}") from exc
    version = data.get("schema_version") if isinstance(data, dict) else None
    if version != SCHEMA_VERSION:
        raise ValueError(f"{str(path)!r} has schema_version {version!r}; {SCHEMA_VERSION} is known")
    return Case.model_validate(data)


def case_files(paths: Sequence[Path]) -> list[Path]:
    """The case files named, or found directly in the directories named, in name order."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.glob(f"*{CASE_SUFFIX}") if p.is_file())
        else:
            found.append(path)
    return found


def rank(status: str) -> int:
    return RANKS.get(status, 0)
