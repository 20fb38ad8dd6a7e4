"""The `loopwright regress export|run` commands (parsed in `app.cli`, dispatched here)."""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from app.opik_sink import ExperimentItem, OpikRegress, OpikUnavailable
from app.regress_args import DEFAULT_DIR
from app.regress_cases import Case, case_files, read_case
from app.regress_export import Exporter, ExportOptions
from app.regress_replay import CaseResult, CaseRunner
from app.settings import Settings
from app.tracing import opik_state, trace_id
from loops.errors import WorkflowError
from loops.workflow_files import load_workflows
from loops.workflows import Workflow


class RegressProblem(Exception):
    """Bad input or an unreachable Opik: printed, exit status 2."""


def cmd_regress(args: argparse.Namespace, settings: Settings) -> int:
    if args.regress_command == "export":
        return export(args, settings)
    return run(args, settings)


def current_workflows(settings: Settings) -> dict[str, Workflow]:
    try:
        found, _ = load_workflows(settings.workflows_dir)
    except WorkflowError:
        return {}
    return found


def export(args: argparse.Namespace, settings: Settings) -> int:
    from app.ledger import Ledger

    if not opik_state(settings.opik)[0]:
        raise RegressProblem("Opik is not configured: set OPIK_URL_OVERRIDE or OPIK_API_KEY")
    options = ExportOptions(
        directory=args.dir,
        dataset=args.dataset,
        since=args.since,
        workflow=args.workflow,
        filter=args.filter,
        max_results=args.limit,
    )
    workflows = current_workflows(settings)
    opik = OpikRegress(settings.opik)
    ledger = Ledger(settings.ledger_url)
    ledger.migrate()
    try:
        exporter = Exporter(
            opik=opik, ledger=ledger, runs_dir=settings.runs_dir, current_workflow=workflows.get
        )
        done = exporter.export(options, time.time())
    except ValueError as exc:
        raise RegressProblem(str(exc)) from exc
    except OpikUnavailable as exc:
        raise RegressProblem(str(exc)) from exc
    finally:
        ledger.close()
        opik.close()
    for item in done:
        case = item.case
        replay = case.replay_problem
        extra = f" (not replayable: {replay})" if replay else ""
        print(f"{item.path}: {case.outcome.status}, {', '.join(case.trace.why)}{extra}")
    print(f"{len(done)} cases exported to {str(args.dir)!r} and dataset {args.dataset!r}")
    return 0


def load_cases(paths: list[Path]) -> list[tuple[Case, Path]]:
    files = case_files(paths or [DEFAULT_DIR])
    if not files:
        raise RegressProblem(
            f"no case files in {', '.join(str(p) for p in paths or [DEFAULT_DIR])}"
        )
    try:
        return [(read_case(path), path) for path in files]
    except ValueError as exc:
        raise RegressProblem(str(exc)) from exc


def run(args: argparse.Namespace, settings: Settings) -> int:
    cases = load_cases(list(args.paths))
    if args.live:
        results = live(cases, settings, args.experiment)
    else:
        runner = CaseRunner(settings=settings)
        results = asyncio.run(_each(runner.replay, cases))
    return report(results)


def report(results: list[CaseResult]) -> int:
    for result in results:
        print(result.line(), flush=True)
    counts = {v: sum(r.verdict == v for r in results) for v in ("ok", "fixed", "regressed")}
    skipped = sum(r.verdict == "skipped" for r in results)
    passing = sum(r.status == "passed" for r in results)
    print(
        f"{len(results)} cases: {passing} pass now, {counts['fixed']} fixed, "
        f"{counts['regressed']} regressed, {skipped} skipped"
    )
    return 1 if counts["regressed"] else 0


async def _each(action: object, cases: list[tuple[Case, Path]]) -> list[CaseResult]:
    results: list[CaseResult] = []
    for case, path in cases:
        results.append(await action(case, path))  # type: ignore[operator]
    return results


def live(cases: list[tuple[Case, Path]], settings: Settings, name: str | None) -> list[CaseResult]:
    from app.runner import default_model
    from app.tracing import secret_values, start_tracing

    tracing = start_tracing(
        settings.opik, capture_content=settings.trace_content, secrets=secret_values(settings)
    )
    workflows = current_workflows(settings)
    runner = CaseRunner(
        settings=settings, model=default_model(), tracing=tracing, current_workflow=workflows.get
    )
    try:
        results = asyncio.run(_each(runner.live, cases))
    finally:
        tracing.close()
    if tracing.enabled:
        log_experiments(settings, results, name)
    return results


def log_experiments(settings: Settings, results: list[CaseResult], name: str | None) -> None:
    """One experiment per dataset the cases came from, linking each case to its new trace."""
    by_dataset: dict[str, list[ExperimentItem]] = {}
    for result in results:
        trace = result.case.trace
        if result.run is None or trace.dataset is None or trace.dataset_item_id is None:
            continue
        item = ExperimentItem(dataset_item_id=trace.dataset_item_id, trace_id=trace_id(result.run))
        by_dataset.setdefault(trace.dataset, []).append(item)
    opik = OpikRegress(settings.opik)
    try:
        for dataset, items in by_dataset.items():
            experiment = opik.log_experiment(
                dataset=dataset,
                name=name or f"regress-live-{time.strftime('%Y%m%d-%H%M%S')}",
                config={"model": settings.model, "judge_model": settings.judge_model},
                items=items,
            )
            print(f"experiment {experiment} on dataset {dataset!r}: {len(items)} cases")
    except OpikUnavailable as exc:
        print(f"experiment not logged: {exc}")
    finally:
        opik.close()
