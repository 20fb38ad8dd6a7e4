"""Tables and JSON for `loopwright runs list` and `runs show`."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
from typing import Any

from app.ledger import Ledger, RunRow
from app.progress import money
from app.runner import run_interrupted
from app.settings import Settings
from loops.records import TurnRecord

STALE_AFTER_SECONDS = Settings.model_fields["stale_after_seconds"].default


def list_runs(ledger: Ledger, args: argparse.Namespace) -> int:
    runs, _ = ledger.list_runs(
        status=args.status, workflow=args.workflow, source=args.source, limit=args.limit
    )
    if args.json:
        print(json.dumps([run_json(r) for r in runs], indent=2))
        return 0
    rows = [
        [
            r.id,
            shown_status(r),
            r.workflow,
            r.source,
            str(r.turns_done),
            f"{r.input_tokens + r.output_tokens:,}",
            money(r.cost_usd),
            when(r.created_at),
        ]
        for r in runs
    ]
    print(
        table(["RUN", "STATUS", "WORKFLOW", "SOURCE", "TURNS", "TOKENS", "COST", "CREATED"], rows)
    )
    return 0


def show_run(ledger: Ledger, run: RunRow, *, as_json: bool, trace_url: str | None = None) -> int:
    turns = ledger.turns(run.id)
    if as_json:
        shown = {**run_json(run), "trace_url": trace_url, "turns": [turn_json(t) for t in turns]}
        print(json.dumps(shown, indent=2))
        return 0
    print(f"run {run.id} · {run.workflow} · {shown_status(run)}")
    if run.reason:
        print(f"  {run.reason}")
    if trace_url:
        print(f"  trace {trace_url}")
    print(f"  source {run.source} · workdir {run.workdir or '-'}")
    print(
        f"  {run.turns_done} turn(s) · {run.input_tokens + run.output_tokens:,} tokens"
        f" · {money(run.cost_usd)} · {run.elapsed_s:.1f}s"
    )
    rows = [
        [
            str(t.number),
            turn_verdict(t),
            str(t.steps),
            str(len(t.tool_calls)),
            f"{t.usage.total_tokens:,}",
            money(t.usage.cost_usd),
            (t.maker_summary or "").replace("\n", " ")[:60],
        ]
        for t in turns
    ]
    if rows:
        print(table(["TURN", "VERDICT", "STEPS", "TOOLS", "TOKENS", "COST", "SUMMARY"], rows))
    return 0


def shown_status(run: RunRow) -> str:
    if run_interrupted(run, stale_after=STALE_AFTER_SECONDS):
        return "running (interrupted)"
    return run.status


def turn_verdict(turn: TurnRecord) -> str:
    if turn.verdict is None:
        return f"cut short: {turn.interrupted or '?'}"[:40]
    marks = "".join("✓" if r.passed else "✗" for r in turn.verdict.results)
    return f"{'passed' if turn.verdict.passed else 'failed'} {marks}"


def run_json(run: RunRow) -> dict[str, Any]:
    out = dataclasses.asdict(run)
    out["interrupted"] = run_interrupted(run, stale_after=STALE_AFTER_SECONDS)
    return json.loads(json.dumps(out, default=str))  # type: ignore[no-any-return]


def turn_json(turn: TurnRecord) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(turn), default=str))  # type: ignore[no-any-return]


def when(value: object) -> str:
    if isinstance(value, int | float):
        return dt.datetime.fromtimestamp(value, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value or "-")


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)
