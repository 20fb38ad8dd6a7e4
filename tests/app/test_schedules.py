"""Workflow schedules in the service: one job per firing, several processes on one ledger,
catch-up after a restart, hot reload, and APScheduler calling the firing."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from structlog.testing import capture_logs

from app.catalog import WorkflowCatalog
from app.executor import ExecutorConfig
from app.ledger import Ledger
from app.ledger_schema import jobs
from app.reports import ReportHub
from app.runner import Runner
from app.scheduler import Scheduler
from app.service import create_app
from app.settings import Settings
from loops.reporting import RunReport
from loops.testing import ScriptedModel, reply

T0 = datetime(2025, 3, 3, 3, 0, tzinfo=UTC)


def workflow_text(
    name: str,
    *,
    cron: str = "0 3 * * *",
    grace: int = 3600,
    target: str = "workdir: /srv/app",
    timezone: str = "UTC",
) -> str:
    return textwrap.dedent(f"""\
        ---
        name: {name}
        workspace: repo
        tools: [run]
        brakes: {{max_turns: 1, max_steps_per_turn: 5, max_wall_seconds: 120, max_cost_usd: 1}}
        exit: {{checks: ["true"]}}
        schedule:
          cron: "{cron}"
          timezone: {timezone}
          {target}
          grace_seconds: {grace}
          reply: {{slack_channel: C0123}}
          instruction: Tidy up.
        ---
        {{{{ instruction }}}}
        """)


def write(directory: Path, name: str, text: str | None = None) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.md").write_text(text or workflow_text(name), encoding="utf-8")


@dataclass
class Clock:
    now: datetime = T0
    monotonic: float = 100.0

    def __call__(self) -> datetime:
        return self.now

    def seconds(self) -> float:
        return self.monotonic


@dataclass
class Recorder:
    reports: list[RunReport] = field(default_factory=list)

    async def report(self, report: RunReport) -> None:
        self.reports.append(report)


@dataclass
class Rig:
    scheduler: Scheduler
    ledger: Ledger
    clock: Clock
    recorder: Recorder
    wakes: list[None]

    def keys(self) -> list[str]:
        with self.ledger.transaction(write=False) as conn:
            return sorted(conn.execute(sa.select(jobs.c.idempotency_key)).scalars())


def rig(tmp_path: Path, url: str, clock: Clock | None = None) -> Rig:
    clock = clock or Clock()
    settings = Settings(
        data_dir=tmp_path / "var", database_url=url, workflows_dir=tmp_path / "workflows"
    )
    ledger = Ledger(url)
    ledger.migrate()
    recorder = Recorder()
    wakes: list[None] = []
    scheduler = Scheduler(
        catalog=WorkflowCatalog(settings.workflows_dir, clock=clock.seconds),
        runner=Runner(settings=settings, ledger=ledger, model=ScriptedModel([])),
        reports=ReportHub({"cron": recorder}),
        wake=lambda: wakes.append(None),
        clones_repos=False,
        now=clock,
        reload_seconds=0.05,
    )
    return Rig(scheduler, ledger, clock, recorder, wakes)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'var' / 'ledger.db'}"


@pytest.fixture
async def started(tmp_path: Path, sqlite_url: str) -> AsyncIterator[Rig]:
    write(tmp_path / "workflows", "nightly")
    made = rig(tmp_path, sqlite_url, Clock(now=T0 + timedelta(hours=12)))  # nothing to catch up
    made.scheduler.reports.start()
    await made.scheduler.start()
    try:
        yield made
    finally:
        await made.scheduler.stop()
        await made.scheduler.reports.stop()
        made.ledger.close()


async def test_each_firing_stores_one_job_however_often_it_is_fired(started: Rig) -> None:
    scheduler = started.scheduler
    first = await scheduler.fire("nightly", T0)
    again = await scheduler.fire("nightly", T0)
    next_day = await scheduler.fire("nightly", T0 + timedelta(days=1))

    assert first is not None
    assert again is not None
    assert next_day is not None
    assert (first[2], again[2], next_day[2]) == (True, False, True)
    assert again[0].id == first[0].id
    assert started.keys() == [
        "schedule:nightly:2025-03-03T03:00:00Z",
        "schedule:nightly:2025-03-04T03:00:00Z",
    ]
    job = first[0]
    assert (job.source, job.concurrency_key, job.workdir) == (
        "cron",
        "schedule:nightly",
        "/srv/app",
    )
    assert job.reply["slack_channel"] == "C0123"
    assert job.instruction == "Tidy up."
    assert len(started.wakes) == 2
    await scheduler.reports.stop()
    assert [(r.kind, r.job.reply["slack_channel"]) for r in started.recorder.reports] == [
        ("queued", "C0123"),
        ("queued", "C0123"),
    ]


async def test_a_tick_names_the_job_by_the_scheduled_time_not_the_late_call(started: Rig) -> None:
    started.clock.now = T0 + timedelta(seconds=42)  # the event loop was busy
    await started.scheduler._tick("nightly")
    started.clock.now = T0 + timedelta(hours=2)  # later than the grace window: not run
    with capture_logs() as logs:
        await started.scheduler._tick("nightly")
    assert started.keys() == ["schedule:nightly:2025-03-03T03:00:00Z"]
    assert [e["event"] for e in logs] == ["schedule_firing_late"]


async def test_a_repo_target_without_the_github_trigger_is_refused_with_a_reason(
    tmp_path: Path, sqlite_url: str
) -> None:
    write(tmp_path / "workflows", "deps", workflow_text("deps", target="repo: acme/app"))
    made = rig(tmp_path, sqlite_url)
    made.scheduler.sync(made.scheduler.wanted())
    with capture_logs() as logs:
        assert await made.scheduler.fire("deps", T0) is None
    assert made.keys() == []
    assert logs[0]["reason"] == "repo 'acme/app' cannot be cloned: the GitHub trigger is off"
    assert made.scheduler.state() == (
        True,
        "1 scheduled workflow(s): deps; repo targets need the GitHub trigger (deps will not run)",
    )


FIRE_IN_A_PROCESS = """
import asyncio, json, sys
from datetime import datetime
from pathlib import Path
from tests.app.test_schedules import Clock, rig

tmp, url, now = Path(sys.argv[1]), sys.argv[2], datetime.fromisoformat(sys.argv[3])
made = rig(tmp, url, Clock(now=now))
made.scheduler.sync(made.scheduler.wanted())
stored = asyncio.run(made.scheduler.catch_up())
print(json.dumps([[job.id, created] for job, _run, created in stored]))
"""


def test_two_processes_on_one_database_store_a_firing_once(tmp_path: Path, db_url: str) -> None:
    write(tmp_path / "workflows", "nightly")
    rig(tmp_path, db_url).ledger.close()  # migrated before the race, as `make serve` would
    now = (T0 + timedelta(minutes=5)).isoformat()
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", FIRE_IN_A_PROCESS, str(tmp_path), db_url, now],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    # The last line: structlog writes its events to stdout before it.
    results = [json.loads(p.communicate(timeout=60)[0].splitlines()[-1]) for p in processes]
    assert all(p.returncode == 0 for p in processes)

    (first,), (second,) = results
    assert first[0] == second[0]  # the same job
    assert sorted([first[1], second[1]]) == [False, True]  # stored by exactly one of them
    assert rig(tmp_path, db_url).keys() == ["schedule:nightly:2025-03-03T03:00:00Z"]


@pytest.mark.parametrize(
    ("down_until", "caught_up"),
    [
        # Down from just after Monday's firing to Wednesday 03:30: Tuesday's is dropped,
        # Wednesday's (30 minutes ago, within the hour of grace) runs once.
        (T0 + timedelta(days=2, minutes=30), ["schedule:nightly:2025-03-05T03:00:00Z"]),
        # Back at 05:00, two hours after Wednesday's firing: outside the grace window.
        (T0 + timedelta(days=2, hours=2), []),
    ],
)
async def test_a_restart_catches_up_the_latest_missed_firing_within_the_grace_window(
    tmp_path: Path, sqlite_url: str, down_until: datetime, caught_up: list[str]
) -> None:
    write(tmp_path / "workflows", "nightly")
    before = rig(tmp_path, sqlite_url, Clock(now=T0 + timedelta(seconds=1)))
    await before.scheduler.start()  # Monday's firing, caught at start-up
    await before.scheduler.stop()
    assert before.keys() == ["schedule:nightly:2025-03-03T03:00:00Z"]

    for _restart in range(2):  # the second restart finds the catch-up already stored
        after = rig(tmp_path, sqlite_url, Clock(now=down_until))
        await after.scheduler.start()
        await after.scheduler.stop()
        assert after.keys() == ["schedule:nightly:2025-03-03T03:00:00Z", *caught_up]


async def test_a_restart_right_after_a_firing_does_not_repeat_it(started: Rig) -> None:
    await started.scheduler.fire("nightly", T0 + timedelta(days=1))
    started.clock.now = T0 + timedelta(days=1, minutes=1)
    assert [created for _j, _r, created in await started.scheduler.catch_up()] == [False]
    assert len(started.keys()) == 1


def trigger_of(scheduler: Scheduler, name: str) -> str | None:
    job = scheduler.apscheduler.get_job(name)
    return None if job is None else str(job.trigger)


async def test_editing_adding_and_removing_workflow_files_updates_the_schedules(
    started: Rig,
) -> None:
    scheduler, directory = started.scheduler, started.scheduler.catalog.directory
    assert (
        trigger_of(scheduler, "nightly")
        == "cron[month='*', day='*', day_of_week='*', hour='3', minute='0']"
    )

    write(directory, "nightly", workflow_text("nightly", cron="30 4 * * 1-5"))
    write(directory, "weekly", workflow_text("weekly", cron="0 6 * * 0"))
    started.clock.monotonic += 2
    with capture_logs() as logs:
        await scheduler.reload()
    assert trigger_of(scheduler, "nightly") == (
        "cron[month='*', day='*', day_of_week='mon,tue,wed,thu,fri', hour='4', minute='30']"
    )
    assert "day_of_week='sun'" in str(trigger_of(scheduler, "weekly"))
    assert {e["event"] for e in logs} >= {"schedule_changed", "schedule_added"}

    write(directory, "nightly", workflow_text("nightly", cron="0 25 * * *"))  # invalid
    started.clock.monotonic += 2
    with capture_logs() as logs:
        await scheduler.reload()
    assert "hour='4', minute='30'" in str(trigger_of(scheduler, "nightly"))  # last good kept
    invalid = next(e for e in logs if e["event"] == "workflow_invalid")
    assert "schedule.cron '0 25 * * *'" in invalid["reason"]

    (directory / "weekly.md").unlink()
    started.clock.monotonic += 2
    await scheduler.reload()  # the periodic reload may have beaten us to it: idempotent
    assert trigger_of(scheduler, "weekly") is None
    assert sorted(scheduler.registered) == ["nightly"]

    # Without being asked: the reload task picks up a new file by itself.
    write(directory, "hourly", workflow_text("hourly", cron="0 * * * *"))
    started.clock.monotonic += 2
    async with asyncio.timeout(5):
        while trigger_of(scheduler, "hourly") is None:
            await asyncio.sleep(0.02)


async def test_apscheduler_calls_the_firing_with_the_grace_and_coalescing_set(
    started: Rig,
) -> None:
    job = started.scheduler.apscheduler.get_job("nightly")
    assert (job.coalesce, job.misfire_grace_time, job.max_instances) == (True, 3600, 1)
    started.clock.now = T0 + timedelta(days=1, seconds=3)  # what the firing is told it is
    job.modify(next_run_time=datetime.now(UTC) + timedelta(milliseconds=50))
    async with asyncio.timeout(5):
        while not started.keys():
            await asyncio.sleep(0.02)
    assert started.keys() == ["schedule:nightly:2025-03-04T03:00:00Z"]


@pytest.fixture
def service_dirs(tmp_path: Path) -> Iterator[Settings]:
    workdir = tmp_path / "work"
    workdir.mkdir()
    # Every minute, an hour of grace: start-up always finds a firing to catch up.
    text = workflow_text("minutely", cron="* * * * *", target=f"workdir: {workdir}")
    write(tmp_path / "workflows", "minutely", text)
    return Settings(data_dir=tmp_path / "var", workflows_dir=tmp_path / "workflows")


async def test_the_service_registers_schedules_and_catches_up_at_start_up(
    service_dirs: Settings,
) -> None:
    config = ExecutorConfig(poll_seconds=0.1, watch_seconds=0.1, shutdown_grace_seconds=1.0)
    app = create_app(service_dirs, model=ScriptedModel([reply("tidied")]), executor_config=config)
    with capture_logs() as logs:
        async with app.router.lifespan_context(app):
            services = app.state.services
            scheduler = services.scheduler
            assert scheduler is not None
            assert scheduler.apscheduler.get_job("minutely") is not None
            assert services.triggers["schedule"] == (True, "1 scheduled workflow(s): minutely")
            assert "cron" not in services.runner.hooks  # no GitHub: nothing to clone with
            runs, _ = await asyncio.to_thread(services.ledger.list_runs, source="cron")
            assert [r.workflow for r in runs] == ["minutely"]
    enabled = [e for e in logs if e["event"] == "trigger_enabled" and e["trigger"] == "schedule"]
    assert enabled
    assert enabled[0]["reason"] == "1 scheduled workflow(s): minutely"
    assert any(e["event"] == "schedule_caught_up" for e in logs)
