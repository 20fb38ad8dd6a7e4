"""`loopwright regress run`: run regression cases again and compare their outcomes.

`replay` drives today's engine, tools and checkers with the recorded model answers (a
`ScriptedModel`, so it is offline and deterministic); `live` calls the current model with the
current workflow of the same name. Each case runs in a scratch directory of its own: the
workspace is materialized from the case's starting point and the run is kept in a throwaway
ledger, so the real ledger never sees it.

A case regresses when its new outcome ranks lower than the recorded one (passed > stuck,
braked > cancelled > errored), or when the harness now breaks (an internal error) on answers
it handled before. Running out of recorded answers ends the run `errored`: a regression unless
the recorded run errored too.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, cast, get_args

from app.ledger import Ledger, RunRow
from app.regress_cases import Case, rank
from app.run_queue import Claim
from app.runner import Runner
from app.settings import Settings
from app.tracing import Tracing
from loops.errors import WorkflowError
from loops.events import Outcome
from loops.jobs import LoopJob, Source
from loops.model import ModelPort
from loops.testing import ScriptedModel
from loops.workflow_files import parse_workflow
from loops.workflows import Workflow

Mode = Literal["replay", "live"]
Verdict = Literal["ok", "fixed", "regressed", "skipped"]
OUT_OF_ANSWERS = "ran out of scripted answers"


class StartError(Exception):
    """A case's workspace could not be materialized."""


@dataclass(frozen=True, kw_only=True)
class CaseResult:
    case: Case
    verdict: Verdict
    status: str | None = None
    turns: int = 0
    reason: str = ""
    note: str = ""
    run: RunRow | None = None

    @property
    def regressed(self) -> bool:
        return self.verdict == "regressed"

    def line(self) -> str:
        recorded = self.case.outcome
        head = f"{self.verdict.upper():<9} {self.case.id}: recorded {recorded.status}"
        if self.status is None:
            return f"{head}; {self.note}"
        text = f"{head} ({recorded.turns} turns), now {self.status} ({self.turns} turns)"
        return f"{text}; {self.note}" if self.note else text


def judge(case: Case, outcome: Outcome) -> CaseResult:
    """Compare a new outcome with the recorded one."""
    old = case.outcome
    out_of_answers = OUT_OF_ANSWERS in outcome.reason
    broke = outcome.reason.startswith("internal error") and not out_of_answers
    notes: list[str] = []
    verdict: Verdict = "ok"
    if rank(outcome.status) < rank(old.status):
        verdict = "regressed"
        notes.append(f"worse than recorded: {outcome.reason}")
    elif broke and not old.reason.startswith("internal error"):
        verdict = "regressed"
        notes.append(f"the harness broke on answers it handled before: {outcome.reason}")
    elif rank(outcome.status) > rank(old.status):
        verdict = "fixed"
    if out_of_answers and verdict != "regressed":
        notes.append("the recorded answers ran out")
    return CaseResult(
        case=case,
        verdict=verdict,
        status=outcome.status,
        turns=outcome.turns,
        reason=outcome.reason,
        note="; ".join(notes),
    )


def materialize(case: Case, case_dir: Path, root: Path) -> Path:
    """The case's starting workspace, made fresh under `root`."""
    start = case.start
    workspace = root / "workspace"
    if start.kind == "empty":
        workspace.mkdir(parents=True)
        return workspace
    if start.kind == "bundle" and start.bundle:
        source = str((case_dir / start.bundle).resolve())
    elif start.kind == "git" and start.repository:
        source = start.repository
    else:
        raise StartError(f"no starting point to materialize ({start.kind}: {start.note})")
    try:
        _git(root, "clone", "--quiet", "--no-checkout", "--", source, workspace.name)
        _git(workspace, "checkout", "--quiet", "--detach", start.commit or "HEAD")
    except subprocess.CalledProcessError as exc:
        tail = (exc.stderr or "").strip()[-300:]
        raise StartError(f"cannot check out {start.commit!r} of {source!r}: {tail}") from exc
    return workspace


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(
        [shutil.which("git") or "git", "-c", "advice.detachedHead=false", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )


@dataclass(kw_only=True)
class CaseRunner:
    """Runs cases in scratch directories.

    Args:
        settings: the caller's settings: the model, judge model, prices and tool timeout
            (its data dir and database are never used).
        model: for `live`, the model port (for `replay` each case gets its recorded answers).
        tracing: for `live`, where the new runs are traced (their links go in the experiment).
        current_workflow: for `live`, the workflow of a name as it is now.
    """

    settings: Settings
    model: ModelPort | None = None
    tracing: Tracing | None = None
    current_workflow: Callable[[str], Workflow | None] = lambda name: None
    keep: bool = False

    async def replay(self, case: Case, case_path: Path) -> CaseResult:
        problem = case.replay_problem
        if problem is not None:
            return CaseResult(case=case, verdict="skipped", note=f"cannot replay: {problem}")
        assert case.answers is not None
        script = ScriptedModel(a.response(i) for i, a in enumerate(case.answers, 1))
        result = await self._run(case, case_path, script, self._recorded(case))
        if result.status is None or not script.remaining:
            return result
        unused = f"{script.remaining} recorded answers unused"
        return replace(result, note=f"{result.note}; {unused}" if result.note else unused)

    async def live(self, case: Case, case_path: Path) -> CaseResult:
        assert self.model is not None, "live runs need a model port"
        workflow = self.current_workflow(case.workflow.name) or self._recorded(case)
        return await self._run(case, case_path, self.model, workflow)

    def _recorded(self, case: Case) -> Workflow:
        return parse_workflow(case.workflow.text, case.workflow.path)

    async def _run(
        self, case: Case, case_path: Path, model: ModelPort, workflow: Workflow
    ) -> CaseResult:
        scratch = Path(tempfile.mkdtemp(prefix=f"loopwright-regress-{case.id[:40]}-"))
        try:
            try:
                workspace = materialize(case, case_path.parent, scratch)
            except StartError as exc:
                return CaseResult(case=case, verdict="skipped", note=f"cannot start: {exc}")
            outcome, run = await self._loop(case, workflow, model, scratch, workspace)
            return replace(judge(case, outcome), run=run)
        except WorkflowError as exc:
            return CaseResult(case=case, verdict="regressed", note=f"workflow rejected: {exc}")
        finally:
            if not self.keep:
                shutil.rmtree(scratch, ignore_errors=True)

    async def _loop(
        self, case: Case, workflow: Workflow, model: ModelPort, scratch: Path, workspace: Path
    ) -> tuple[Outcome, RunRow]:
        settings = self.settings.model_copy(
            update={"data_dir": scratch / "var", "database_url": None}
        )
        ledger = Ledger(settings.ledger_url)
        ledger.migrate()
        try:
            runner = Runner(settings=settings, ledger=ledger, model=model, tracing=self.tracing)
            job = LoopJob(
                workflow=workflow.name,
                source=_source(case.job.source),
                instruction=case.job.instruction,
                workdir=str(workspace),
                repo=case.job.repo,
                pr=case.job.pr,
                model=case.job.model,
                requested_by=case.job.requested_by,
            )
            host = socket.gethostname()
            claim = Claim(owner=f"regress:{host}:{os.getpid()}", pid=os.getpid(), host=host)
            _, run, _ = runner.queue.submit_claimed(job, workflow, claim)
            outcome = await runner.run(run.id)
            return outcome, ledger.get_run(run.id) or run
        finally:
            ledger.close()


def _source(value: str) -> Source:
    return cast(Source, value) if value in get_args(Source) else "cli"
