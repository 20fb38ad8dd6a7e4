"""Engine overhead per model call, next to pydantic-ai driving the same conversation.

Both sides talk to a model that answers at once from a script, and call a real `read_file` tool
on a small file, so what is measured is everything around the model call: metering and brakes,
tool dispatch, message bookkeeping, events, the checker hand-off and (variant B) the ledger's
per-turn commit. Each figure is the median of `REPEATS` runs after `WARMUPS`, divided by the
number of model calls in a run; the variants are interleaved so drift hits them alike.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import structlog
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, TextPart, ToolCallPart
from pydantic_ai.messages import ModelResponse as AgentResponse
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.usage import RequestUsage, UsageLimits

from app.ledger import Ledger
from loops.checking import CheckContext, CheckResult, Verdict
from loops.clock import SystemClock
from loops.engine import EngineDeps, RunState, run_loop
from loops.jobs import LoopJob
from loops.model import ModelResponse
from loops.records import RunStore
from loops.testing import MemoryStore, ScriptedModel, reply, tool_call
from loops.tools import Toolbox
from loops.usage import Price
from loops.workflow_files import parse_workflow
from loops.workflows import Workflow
from loops.workspace import Workspace
from tests.benchmarks.report import Row, median

NAME = "engine"
REPEATS = 20
WARMUPS = 3
TARGET_MS_PER_CALL = 1.0
SMALL_FILE = "small.txt"
SMALL_TEXT = ("The quick brown fox jumps over the lazy dog. " * 5)[:199] + "\n"
INSTRUCTION = f"Read {SMALL_FILE} and say what it holds."

WORKFLOW = """\
---
name: bench
tools: [read_file]
brakes:
  max_turns: 50
  max_steps_per_turn: 200
  max_total_tokens: 100000000
  max_cost_usd: 1000.0
  max_wall_seconds: 3600
exit:
  checks: ["true"]  # a placeholder: the benchmark hands the engine an in-process checker
  passes: 1
---
{{ instruction }}
"""


@dataclass(frozen=True, kw_only=True)
class Scenario:
    turns: int
    calls_per_turn: int  # model calls: all but the last answer with one read_file call

    @property
    def calls(self) -> int:
        return self.turns * self.calls_per_turn

    @property
    def label(self) -> str:
        return f"{NAME} {self.turns} turn{'s' * (self.turns > 1)} × {self.calls_per_turn} calls"


SCENARIOS = (Scenario(turns=1, calls_per_turn=50), Scenario(turns=10, calls_per_turn=5))


class PassAfter:
    """Fails `failures` times, with findings that differ in words so the run is never stuck,
    then passes. With `failures=0` it is the trivial checker that passes at once."""

    def __init__(self, failures: int) -> None:
        self.failures = failures

    async def check(self, ctx: CheckContext) -> Verdict:
        if self.failures <= 0:
            return Verdict(passed=True, results=(CheckResult(name="noop", passed=True),))
        self.failures -= 1
        findings = f"test_case_{self.failures} failed: expected {self.failures}, got nothing"
        result = CheckResult(name="noop", passed=False, findings=findings)
        return Verdict(passed=False, results=(result,))


@dataclass(frozen=True, kw_only=True)
class Bench:
    """What every repetition shares: the workspace, the workflow, the toolbox, the ledger."""

    workspace: Workspace
    workflow: Workflow
    toolbox: Toolbox
    ledger: Ledger


def _bench(root: Path) -> Bench:
    work = root / "work"
    work.mkdir()
    (work / SMALL_FILE).write_text(SMALL_TEXT, encoding="utf-8")
    workspace = Workspace(root=work, state_file=root / "run" / "STATE.md")
    workflow = parse_workflow(WORKFLOW, "bench.md")
    ledger = Ledger(f"sqlite:///{root / 'ledger.db'}")
    ledger.migrate()
    return Bench(
        workspace=workspace,
        workflow=workflow,
        toolbox=Toolbox(workspace=workspace, enabled=workflow.tools),
        ledger=ledger,
    )


def _script(scenario: Scenario) -> list[ModelResponse]:
    turn = [
        *(
            reply("", tool_call("read_file", path=SMALL_FILE))
            for _ in range(scenario.calls_per_turn - 1)
        ),
        reply(f"{SMALL_FILE} holds a pangram."),
    ]
    return turn * scenario.turns


def _deps(bench: Bench, scenario: Scenario, run_id: str, store: RunStore) -> EngineDeps:
    return EngineDeps(
        run_id=run_id,
        workflow=bench.workflow,
        brakes=bench.workflow.brakes,
        model=ScriptedModel(_script(scenario)),
        model_name="scripted",
        checker=PassAfter(scenario.turns - 1),
        workspace=bench.workspace,
        toolbox=bench.toolbox,
        store=store,
        clock=SystemClock(),
        prices=lambda _model: Price(input_per_token=1e-7, output_per_token=4e-7),
        variables={
            "instruction": INSTRUCTION,
            "repo": None,
            "pr": None,
            "source": "cli",
            "requested_by": None,
        },
    )


def _memory_deps(bench: Bench, scenario: Scenario) -> EngineDeps:
    return _deps(bench, scenario, "bench", MemoryStore())


def _ledger_deps(bench: Bench, scenario: Scenario) -> EngineDeps:
    job = LoopJob(workflow=bench.workflow.name, source="cli", instruction=INSTRUCTION)
    _job, run, _created = bench.ledger.create_job(job, workflow=bench.workflow)
    return _deps(bench, scenario, run.id, bench.ledger)


async def _time_loopwright(deps: EngineDeps, scenario: Scenario) -> float:
    gc.collect()
    started = time.perf_counter()
    outcome = await run_loop(deps, RunState())
    seconds = time.perf_counter() - started
    if outcome.status != "passed" or outcome.usage.model_calls != scenario.calls:
        raise RuntimeError(f"benchmark run did not go as scripted: {outcome!r}")
    return seconds


class AgentScript:
    """The pydantic-ai side of the script: the same answers, as pydantic-ai messages.

    Answers are built fresh before each timed run, since pydantic-ai fills in fields of the
    responses it is given.
    """

    def __init__(self, calls_per_turn: int) -> None:
        self.calls_per_turn = calls_per_turn
        self.queue: list[AgentResponse] = []

    def load(self, turns: int) -> None:
        usage = RequestUsage(input_tokens=100, output_tokens=20)
        self.queue = []
        for _ in range(turns):
            self.queue += [
                AgentResponse(
                    parts=[ToolCallPart("read_file", f'{{"path": "{SMALL_FILE}"}}', f"call_{i}")],
                    usage=usage,
                )
                for i in range(self.calls_per_turn - 1)
            ]
            self.queue.append(
                AgentResponse(parts=[TextPart(f"{SMALL_FILE} holds a pangram.")], usage=usage)
            )
        self.queue.reverse()

    async def answer(self, messages: list[ModelMessage], info: AgentInfo) -> AgentResponse:
        return self.queue.pop()


def _agent(bench: Bench, script: AgentScript) -> Agent[None, str]:
    work = bench.workspace.root

    # No path confinement or binary sniffing here, unlike ours: if anything that favours the
    # baseline. A plain `def`, so pydantic-ai runs it in a worker thread, as ours does.
    def read_file(path: str) -> str:
        """Read a text file from the workspace and return its contents."""
        return (work / path).read_text(encoding="utf-8")

    model = FunctionModel(script.answer, model_name="scripted")
    return Agent(model, instructions="You are the maker.", tools=[read_file])


async def _time_agent(agent: Agent[None, str], script: AgentScript, scenario: Scenario) -> float:
    script.load(scenario.turns)
    limits = UsageLimits(request_limit=None)
    gc.collect()
    started = time.perf_counter()
    for _ in range(scenario.turns):  # a turn starts from fresh context, as ours do
        result = await agent.run(INSTRUCTION, usage_limits=limits)
        if result.usage.requests != scenario.calls_per_turn:
            raise RuntimeError(f"baseline run did not go as scripted: {result.usage!r}")
    return time.perf_counter() - started


VARIANTS = ("baseline", "memory", "ledger")


async def _measure(bench: Bench, scenario: Scenario) -> dict[str, list[float]]:
    script = AgentScript(scenario.calls_per_turn)
    agent = _agent(bench, script)
    samples: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    for repetition in range(WARMUPS + REPEATS):
        for variant in VARIANTS:  # interleaved, so drift in the machine hits each one alike
            if variant == "baseline":
                seconds = await _time_agent(agent, script, scenario)
            else:
                make = _memory_deps if variant == "memory" else _ledger_deps
                seconds = await _time_loopwright(make(bench, scenario), scenario)
            if repetition >= WARMUPS:
                samples[variant].append(seconds)
    return samples


def _rows(scenario: Scenario, samples: dict[str, list[float]]) -> list[Row]:
    per_call = {name: median(s) * 1000 / scenario.calls for name, s in samples.items()}
    base, ours, ledger = per_call["baseline"], per_call["memory"], per_call["ledger"]
    commit_per_turn = (ledger - ours) * scenario.calls / scenario.turns
    met = ours <= base and ours < TARGET_MS_PER_CALL
    label = scenario.label
    return [
        Row(
            benchmark=label,
            variant="pydantic-ai Agent.run",
            value=base,
            unit="ms/call",
            note=f"baseline (FunctionModel, same tool and script; median of {REPEATS})",
        ),
        Row(
            benchmark=label,
            variant="A loopwright, no ledger",
            value=ours,
            unit="ms/call",
            note=f"target ≤ baseline and < {TARGET_MS_PER_CALL:g} ms: {'met' if met else 'MISSED'}",
        ),
        Row(
            benchmark=label,
            variant="B loopwright + ledger commit",
            value=ledger,
            unit="ms/call",
            note="SQLite file, one commit per turn",
        ),
        Row(
            benchmark=label,
            variant="A − baseline",
            value=ours - base,
            unit="ms/call",
            note="target ≤ 0",
        ),
        Row(
            benchmark=label, variant="A ÷ baseline", value=ours / base, unit="×", note="target ≤ 1"
        ),
        Row(benchmark=label, variant="B ÷ baseline", value=ledger / base, unit="×"),
        Row(
            benchmark=label,
            variant="ledger commit (B − A)",
            value=commit_per_turn,
            unit="ms/turn",
            note=f"{scenario.turns} commit{'s' * (scenario.turns > 1)} per run",
        ),
    ]


async def _diff_row(bench: Bench) -> Row:
    """The engine asks the workspace for its diff before every check: part of A's per-turn cost."""
    samples = []
    for repetition in range(WARMUPS + REPEATS):
        started = time.perf_counter()
        await bench.workspace.diff()
        if repetition >= WARMUPS:
            samples.append(time.perf_counter() - started)
    return Row(
        benchmark=f"{NAME} per turn",
        variant="workspace.diff() for the checker",
        value=median(samples) * 1000,
        unit="ms/turn",
        note="paid only in turns whose checker reads the diff (a judge); not in A or B",
    )


async def _run_all() -> list[Row]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="loopwright-bench-") as tmp:
        bench = _bench(Path(tmp))
        try:
            for scenario in SCENARIOS:
                rows += _rows(scenario, await _measure(bench, scenario))
            rows.append(await _diff_row(bench))
        finally:
            bench.ledger.close()
    return rows


def quiet_logs() -> None:
    """Drop info logs: rendering them to the console would dominate what is measured."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


def run() -> list[Row]:
    quiet_logs()
    Agent.instrument_all(False)  # no OpenTelemetry spans (logfire is not installed either)
    return asyncio.run(_run_all())
