"""`loopwright regress export`: failing runs' traces become regression cases.

A trace is failing when its run did not pass (`status:braked|stuck|errored`), when its
`checks` feedback score is below 1, or when a reviewer tagged it `regression` in Opik. Opik's
query language only joins conditions with AND, so each of these is one search (with the
command's own filters added) and the results are merged by trace id.

The trace gives the recorded answers (its `llm` spans, in call order) and the outcome; the
ledger, when it still has the run, gives the exact workflow text, the job and the workspace it
started from. Each case is written to ``<dir>/<workflow>-<run id>.json`` and added to an Opik
dataset (the case summary as input, the recorded outcome as expected output).
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.checkouts import RECORD_NAME
from app.ledger import JobRow, Ledger, RunRow
from app.opik_sink import DatasetItem, OpikRegress
from app.regress_cases import (
    Answer,
    Case,
    Checks,
    JobInfo,
    RecordedCall,
    RecordedOutcome,
    StartingPoint,
    TraceInfo,
    WorkflowInfo,
    case_id,
    write_case,
)
from loops.errors import WorkflowError
from loops.tracing import uuid7
from loops.workflow_files import parse_workflow
from loops.workflows import Workflow

Json = dict[str, Any]
FAILING: dict[str, str] = {
    "status:braked": 'tags contains "status:braked"',
    "status:stuck": 'tags contains "status:stuck"',
    "status:errored": 'tags contains "status:errored"',
    "checks<1": "feedback_scores.checks < 1",
    "tagged regression": 'tags contains "regression"',
}
CONFTEST = '''"""Runs every case file here as a test that replays it (see `app.regress_pytest`)."""

from app.regress_pytest import pytest_collect_file  # noqa: F401
'''
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass(frozen=True, kw_only=True)
class ExportOptions:
    directory: Path
    dataset: str
    since: str | None = None
    workflow: str | None = None
    filter: str | None = None
    max_results: int = 500


@dataclass(frozen=True, kw_only=True)
class Exported:
    case: Case
    path: Path


def parse_duration(text: str) -> float:
    """Seconds in ``90s``, ``30m``, ``24h``, ``7d`` or ``2w``."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if match is None:
        raise ValueError(f"duration {text!r} is not a number and a unit (s, m, h, d, w)")
    return float(match[1]) * _UNITS[match[2]]


def base_filters(options: ExportOptions, now: float) -> list[str]:
    found: list[str] = []
    if options.since:
        start = dt.datetime.fromtimestamp(now - parse_duration(options.since), tz=dt.UTC)
        found.append(f'start_time >= "{start.strftime("%Y-%m-%dT%H:%M:%SZ")}"')
    if options.workflow:
        found.append(f'tags contains "workflow:{options.workflow}"')
    if options.filter:
        found.append(options.filter)
    return found


class Exporter:
    """Finds failing traces and turns them into case files and dataset items.

    Args:
        current_workflow: the workflow of that name as it is now, for runs the ledger no
            longer has (their recorded text is then unknown).
    """

    def __init__(
        self,
        *,
        opik: OpikRegress,
        ledger: Ledger | None,
        runs_dir: Path,
        current_workflow: Callable[[str], Workflow | None],
    ) -> None:
        self.opik = opik
        self.ledger = ledger
        self.runs_dir = runs_dir
        self.current_workflow = current_workflow

    def failing_traces(self, options: ExportOptions, now: float) -> list[tuple[Json, list[str]]]:
        base = base_filters(options, now)
        found: dict[str, tuple[Json, list[str]]] = {}
        for why, condition in FAILING.items():
            for trace in self.opik.search_traces(
                [*base, condition], max_results=options.max_results
            ):
                found.setdefault(trace["id"], (trace, []))[1].append(why)
        return sorted(found.values(), key=lambda item: str(item[0].get("start_time", "")))

    def export(self, options: ExportOptions, now: float) -> list[Exported]:
        done: list[Exported] = []
        for trace, why in self.failing_traces(options, now):
            case = self.case(trace, why, options)
            if case is not None:
                done.append(Exported(case=case, path=write_case(case, options.directory)))
        if done:
            conftest = options.directory / "conftest.py"
            if not conftest.exists():
                conftest.write_text(CONFTEST, encoding="utf-8")
            self.opik.add_to_dataset(options.dataset, [_dataset_item(e.case) for e in done])
        return done

    def case(self, trace: Json, why: list[str], options: ExportOptions) -> Case | None:
        metadata = trace.get("metadata") or {}
        run_id = str(metadata.get("run_id") or trace["id"])
        run, job = self._stored(run_id)
        workflow = self._workflow(trace, job)
        if workflow is None:
            return None
        cid = case_id(workflow.name, run_id)
        answers, failed = recorded_answers(self.opik.spans(trace["id"]))
        return Case(
            id=cid,
            workflow=WorkflowInfo(
                name=workflow.name,
                path=workflow.path,
                content_hash=workflow.content_hash,
                text=workflow.source,
            ),
            job=_job_info(trace, job),
            start=self._start(run, job, workflow, options.directory / f"{cid}.bundle"),
            answers=answers,
            failed_calls=failed,
            checks=_checks(workflow, trace),
            outcome=_outcome(trace, run),
            trace=TraceInfo(
                id=trace["id"],
                run_id=run_id,
                tags=list(trace.get("tags") or []),
                why=why,
                dataset=options.dataset,
                dataset_item_id=uuid7(0, seed=f"loopwright-case:{cid}"),
            ),
        )

    def _stored(self, run_id: str) -> tuple[RunRow | None, JobRow | None]:
        if self.ledger is None:
            return None, None
        run = self.ledger.get_run(run_id)
        return run, self.ledger.get_job(run.job_id) if run is not None else None

    def _workflow(self, trace: Json, job: JobRow | None) -> Workflow | None:
        if job is not None:
            try:
                return parse_workflow(job.workflow_source, job.workflow_path)
            except WorkflowError:
                pass
        name = str((trace.get("input") or {}).get("workflow") or trace.get("name") or "")
        return self.current_workflow(name)

    def _start(
        self, run: RunRow | None, job: JobRow | None, workflow: Workflow, bundle: Path
    ) -> StartingPoint:
        if workflow.workspace == "none" and (job is None or not job.workdir):
            return StartingPoint(kind="empty")
        if run is not None:
            record = self.runs_dir / run.id / RECORD_NAME
            if record.is_file():
                import json

                data = json.loads(record.read_text(encoding="utf-8"))
                return StartingPoint(
                    kind="git",
                    repository=data["clone_url"],
                    ref=data.get("ref"),
                    commit=data["base_sha"],
                )
        workdir = (run.workdir if run is not None else None) or (job.workdir if job else None)
        if workdir is None:
            return StartingPoint(kind="unknown", note="the ledger no longer has the run")
        return bundle_workdir(Path(workdir), bundle)


def bundle_workdir(workdir: Path, bundle: Path) -> StartingPoint:
    """The workdir's checked-out commit, kept as a git bundle beside the case."""
    try:
        head = _git(workdir, "rev-parse", "HEAD")
        bundle.parent.mkdir(parents=True, exist_ok=True)
        _git(workdir, "bundle", "create", str(bundle.resolve()), "HEAD")
    except (OSError, subprocess.CalledProcessError) as exc:
        return StartingPoint(
            kind="unknown", note=f"workdir {str(workdir)!r} is not a git repository ({exc})"
        )
    return StartingPoint(kind="bundle", bundle=bundle.name, commit=head)


def _git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        [shutil.which("git") or "git", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.stdout.strip()


def recorded_answers(spans: Sequence[Json]) -> tuple[list[Answer] | None, int]:
    """The answered `llm` spans as answers, in call order, and how many calls failed.

    None when a call's prompt was not captured: without content there is nothing to replay.
    """
    llm = sorted(
        (s for s in spans if s.get("type") == "llm"),
        key=lambda s: (str(s.get("start_time", "")), str(s.get("end_time", ""))),
    )
    answered = [s for s in llm if not s.get("error_info")]
    failed = len(llm) - len(answered)
    if any("messages" not in (s.get("input") or {}) for s in answered):
        return None, failed
    return [_answer(s) for s in answered], failed


def _answer(span: Json) -> Answer:
    output = span.get("output") or {}
    metadata = span.get("metadata") or {}
    usage = span.get("usage") or {}
    names = output.get("tool_calls") or []
    arguments = output.get("arguments") or ["{}"] * len(names)
    return Answer(
        purpose=str(metadata.get("purpose", "maker")),
        text=str(output.get("text") or ""),
        tool_calls=[
            RecordedCall(name=n, arguments=a) for n, a in zip(names, arguments, strict=False)
        ],
        input_tokens=int(usage.get("prompt_tokens", 0)),
        output_tokens=int(usage.get("completion_tokens", 0)),
        cost_usd=span.get("total_estimated_cost"),
        model=str(span.get("model") or ""),
        provider=str(span.get("provider") or ""),
        finish_reason=str(metadata.get("finish_reason", "stop")),
    )


def _job_info(trace: Json, job: JobRow | None) -> JobInfo:
    if job is not None:
        return JobInfo(
            source=job.source,
            instruction=job.instruction,
            repo=job.repo,
            pr=job.pr,
            model=job.model,
            requested_by=job.requested_by,
            job_id=job.id,
        )
    given = trace.get("input") or {}
    return JobInfo(
        source=str(given.get("source", "cli")),
        instruction=str(given.get("instruction", "")),
        repo=given.get("repo"),
        pr=given.get("pr"),
        model=given.get("model"),
        requested_by=given.get("requested_by"),
        job_id=(trace.get("metadata") or {}).get("job_id"),
    )


def _checks(workflow: Workflow, trace: Json) -> Checks:
    scores = {s.get("name"): s for s in trace.get("feedback_scores") or []}
    checks = scores.get("checks") or {}
    return Checks(
        commands=[c.run for c in workflow.exit.checks],
        judge=workflow.exit.judge is not None,
        passes=workflow.exit.passes,
        score=checks.get("value"),
        reason=str(checks.get("reason") or ""),
    )


def _outcome(trace: Json, run: RunRow | None) -> RecordedOutcome:
    output = trace.get("output") or {}
    if "status" in output:
        return RecordedOutcome(
            status=str(output["status"]),
            turns=int(output.get("turns") or 0),
            reason=str(output.get("reason") or ""),
            brake=output.get("brake"),
        )
    if run is not None:
        return RecordedOutcome(
            status=run.status, turns=run.turns_done, reason=run.reason, brake=run.brake
        )
    status = next((t[7:] for t in trace.get("tags") or [] if t.startswith("status:")), "errored")
    return RecordedOutcome(status=status)


def _dataset_item(case: Case) -> DatasetItem:
    assert case.trace.dataset_item_id is not None
    return DatasetItem(
        id=case.trace.dataset_item_id,
        trace_id=case.trace.id,
        input=case.summary(),
        expected_output=case.outcome.model_dump(),
    )
