"""The Slack trigger: slash-command answer latency next to a bare endpoint, at concurrency 32.

`loopwright serve` runs as a subprocess with its Slack trigger on (a signing secret; no bot
token, so progress would go through `response_url`, to `FakeSlack` served from this process).
Each request is a `/loop bench-slack …` slash command form with its own `trigger_id`, signed
for real with slack_sdk's `SignatureVerifier` at the time the round's requests are built (well
inside the 5-minute window). The `load_generator` process sends them over 32 keep-alive
connections, in rounds interleaved with the same bytes sent to a bare FastAPI
`POST /webhooks/slack/commands` that answers 200 and reads nothing (`bare_service`).

A 200 from the service costs the command path as it is: the body read, the v0 signature check,
the form decoding, the allow-lists, the grammar, the workflow lookup, the job and its queued run
stored durably in the ledger (SQLite, by the intake writer process) before the answer that
names the run, the executor's wake-up and the queued report. The runs stay queued behind a
"blocker" run holding the only executor slot (its model call waits at a local model server
until the end), so the load measures the answer, not the runs. Every answer is checked to name
a run, and every job to be stored.
"""

from __future__ import annotations

import json
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from app.ledger import Ledger
from app.ledger_schema import jobs
from tests.app.slack_support import SECRET, signed_headers, slash_form
from tests.benchmarks.report import Row
from tests.benchmarks.serving import bare, bench_env, hold_executor, load, load_rows, server, stat
from tests.support.openai_server import Reply, ScriptedOpenAIServer
from tests.support.service import LOOPWRIGHT
from tests.support.slack_server import FakeSlack

NAME = "slack"
CONCURRENCY = 32
REQUESTS = 2000
WARMUP = 200
ROUNDS = 3
TARGET_P99_MS = 100.0
WORKFLOW_NAME = "bench-slack"


def _write_requests(path: Path, count: int, prefix: str, response_url: str) -> None:
    with path.open("w", encoding="utf-8") as out:
        for number in range(count):
            body = slash_form(
                f"{WORKFLOW_NAME} Say hello.",
                response_url=response_url,
                trigger_id=f"{prefix}.{number}",
            )
            out.write(json.dumps({"headers": signed_headers(body), "body": body.decode()}) + "\n")


def _load(url: str, requests: Path) -> dict[str, Any]:
    return load(
        f"{url}/webhooks/slack/commands",
        f"--requests-file={requests}",
        f"--concurrency={CONCURRENCY}",
        f"--requests={REQUESTS}",
        f"--warmup={WARMUP}",
        expect="200",
        requests=REQUESTS,
    )


def _service_env(root: Path, model_url: str, slack: FakeSlack) -> dict[str, str]:
    env = bench_env(root, model_url, WORKFLOW_NAME)
    env.update(
        {
            "LOOPWRIGHT_SLACK__SIGNING_SECRET": SECRET,
            "LOOPWRIGHT_SLACK__API_URL": slack.api_url,
        }
    )
    return env


def _check_answer(url: str, slack: FakeSlack) -> None:
    body = slash_form(f"{WORKFLOW_NAME} check", response_url=slack.response_url("check"))
    answer = httpx.post(
        f"{url}/webhooks/slack/commands", content=body, headers=signed_headers(body), timeout=10
    ).json()
    if not answer.get("text", "").startswith("Queued run `"):
        raise RuntimeError(f"the answer names no run: {answer}")


def _measure(root: Path) -> dict[str, list[dict[str, Any]]]:
    results: dict[str, list[dict[str, Any]]] = {"service": [], "bare": []}
    gate = threading.Event()
    with (
        FakeSlack() as slack,
        ScriptedOpenAIServer([Reply(content="held", gate=gate)]) as model,
        ExitStack() as stack,
    ):
        stack.callback(gate.set)
        env = _service_env(root, model.url, slack)
        argv = [LOOPWRIGHT, "serve"]
        url, _ = stack.enter_context(
            server(argv, env, int(env["LOOPWRIGHT_PORT"]), root / "service.log")
        )
        bare_url = bare(stack, root, "asyncio")
        hold_executor(url, model, WORKFLOW_NAME)
        _check_answer(url, slack)
        for number in range(ROUNDS):
            requests = root / f"round{number}.jsonl"
            _write_requests(requests, WARMUP + REQUESTS, f"r{number}", slack.response_url("b"))
            results["service"].append(_load(url, requests))
            results["bare"].append(_load(bare_url, requests))
    _check_stored(env)
    return results


def _check_stored(env: dict[str, str]) -> None:
    ledger = Ledger(f"sqlite:///{Path(env['LOOPWRIGHT_DATA_DIR']) / 'loopwright.db'}")
    try:
        with ledger.transaction(write=False) as conn:
            query = sa.select(sa.func.count()).select_from(jobs).where(jobs.c.source == "slack")
            stored = int(conn.execute(query).scalar_one())
    finally:
        ledger.close()
    expected = ROUNDS * (WARMUP + REQUESTS) + 1
    if stored != expected:
        raise RuntimeError(f"expected {expected} Slack jobs stored, found {stored}")


def _rows(results: dict[str, list[dict[str, Any]]]) -> list[Row]:
    label = f"{NAME} POST /webhooks/slack/commands ×{CONCURRENCY}"
    counts = f"median of {ROUNDS} rounds of {REQUESTS} after {WARMUP} warm-up"
    p99 = stat(results["service"], "p99_ms")
    target = f"target < {TARGET_P99_MS:g} ms: {'met' if p99 < TARGET_P99_MS else 'MISSED'}; "
    return [
        *load_rows(
            label, "bare FastAPI 200", results["bare"], f"baseline, reads nothing; {counts}"
        ),
        *load_rows(
            label,
            "loopwright slash command",
            results["service"],
            f"signed, run stored before the answer; {counts}",
            target,
        ),
    ]


def run() -> list[Row]:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="loopwright-bench-slack-") as tmp:
        results = _measure(Path(tmp))
    print(f"slack benchmark took {time.monotonic() - started:.0f} s", file=sys.stderr)
    return _rows(results)
