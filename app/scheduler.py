"""The cron trigger in the service: workflow schedules registered with APScheduler, kept in step
with the workflow files, and every firing stored once as a loop job.

- Start-up: each schedule's latest firing within its grace window is submitted. Firings missed
  while the service was down are coalesced into that one; older ones are dropped. The ledger
  remembers every firing by its idempotency key, so a firing that ran before the restart (or
  that another replica stored) is found, not stored again: no table of its own is needed.
- Firing: APScheduler calls `_tick` at a fire time. The job is named by the scheduled fire time,
  not by the moment the call happens, so replicas sharing a ledger build the same key and the
  ledger keeps one job.
- Reload: every `reload_seconds` the catalog (which rescans the directory) is compared with the
  registered schedules: new ones are added, changed ones replaced, removed ones dropped. The
  catalog keeps the last good version of a file an edit broke, and so its schedule.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import UTC, datetime

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler  # type: ignore[import-untyped]

from app.catalog import WorkflowCatalog
from app.ledger import LedgerError
from app.ledger_batch import Stored
from app.reports import ReportHub
from app.runner import Runner
from loops.workflows import Schedule
from triggers.cron import (
    catch_up_fire,
    cron_trigger,
    fire_key,
    latest_fire,
    next_fire_times,
    to_loop_job,
)

log = structlog.get_logger("app.scheduler")

MIN_MISFIRE_SECONDS = 1
"""APScheduler's smallest grace: a firing a moment late (a busy event loop) still runs."""


def utc_now() -> datetime:
    return datetime.now(UTC)


class Scheduler:
    """Registers the catalog's schedules with APScheduler and submits their firings.

    Args:
        wake: called after a firing stored a job (the executor's `wake`).
        clones_repos: whether jobs of a `repo` target can get a clone (the GitHub trigger is
            on); without it such firings are refused with a log line, not run in an empty dir.
        now: the current time, timezone-aware (tests pass a controllable clock).
        reload_seconds: how often the catalog is compared with the registered schedules.
    """

    def __init__(
        self,
        *,
        catalog: WorkflowCatalog,
        runner: Runner,
        reports: ReportHub,
        wake: Callable[[], None],
        clones_repos: bool,
        now: Callable[[], datetime] = utc_now,
        reload_seconds: float = 1.0,
    ) -> None:
        self.catalog = catalog
        self.runner = runner
        self.reports = reports
        self.wake = wake
        self.clones_repos = clones_repos
        self.now = now
        self.reload_seconds = reload_seconds
        self.registered: dict[str, Schedule] = {}
        self.apscheduler = AsyncIOScheduler(timezone=UTC)
        self._reloader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Register the schedules, submit their catch-up firings, and start watching the files.

        Jobs `sync` added before this are pending in APScheduler and scheduled now."""
        self.apscheduler.start()
        self.sync(await asyncio.to_thread(self.wanted))
        await self.catch_up()
        self._reloader = asyncio.create_task(self._reload_forever(), name="schedule-reload")

    async def stop(self) -> None:
        if self._reloader is not None:
            self._reloader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reloader
        if self.apscheduler.running:
            self.apscheduler.shutdown(wait=False)

    def state(self) -> tuple[bool, str]:
        """Whether the trigger is on and why, for the start-up log."""
        names = sorted(self.registered)
        if not names:
            return True, "no workflow has a schedule"
        why = f"{len(names)} scheduled workflow(s): {', '.join(names)}"
        stranded = sorted(n for n, s in self.registered.items() if s.repo and not self.clones_repos)
        if stranded:
            why += f"; repo targets need the GitHub trigger ({', '.join(stranded)} will not run)"
        return True, why

    def wanted(self) -> dict[str, Schedule]:
        """The schedules of the catalog's workflows now (reads the directory when it is due)."""
        return {
            name: workflow.schedule
            for name, workflow in self.catalog.current().items()
            if workflow.schedule is not None
        }

    async def reload(self) -> None:
        self.sync(await asyncio.to_thread(self.wanted))

    def sync(self, wanted: dict[str, Schedule]) -> None:
        """Make the APScheduler jobs match `wanted`: one job per workflow, id'd by its name."""
        for name in sorted(self.registered.keys() - wanted.keys()):
            self.apscheduler.remove_job(name)
            log.info("schedule_removed", workflow=name)
        for name, schedule in sorted(wanted.items()):
            before = self.registered.get(name)
            if before == schedule:
                continue
            self.apscheduler.add_job(
                self._tick,
                trigger=cron_trigger(schedule),
                args=[name],
                id=name,
                name=name,
                replace_existing=True,
                coalesce=True,
                max_instances=1,
                misfire_grace_time=max(schedule.grace_seconds, MIN_MISFIRE_SECONDS),
            )
            log.info(
                "schedule_changed" if before else "schedule_added",
                workflow=name,
                cron=schedule.cron,
                timezone=schedule.timezone,
                next_fire=[_iso(t) for t in next_fire_times(schedule, self.now(), 1)],
            )
        self.registered = dict(wanted)

    async def catch_up(self) -> list[Stored]:
        """Submit each schedule's latest firing within its grace window (found, not stored
        again, when the ledger has it)."""
        now = self.now()
        stored = []
        for name, schedule in sorted(self.registered.items()):
            fire_time = catch_up_fire(schedule, now)
            if fire_time is None:
                continue
            result = await self.fire(name, fire_time)
            if result is not None:
                stored.append(result)
                if result[2]:
                    log.info("schedule_caught_up", workflow=name, fire_time=_iso(fire_time))
        return stored

    async def fire(self, name: str, fire_time: datetime) -> Stored | None:
        """Store the job of `name`'s firing at `fire_time`, once however often it is called.

        Returns:
            the job, its run and whether this call created them; None when nothing was stored.
        """
        key = fire_key(name, fire_time)
        workflow = self.catalog.get(name)
        schedule = None if workflow is None else workflow.schedule
        if workflow is None or schedule is None:
            log.warning("schedule_firing_skipped", workflow=name, key=key, reason="no schedule")
            return None
        if schedule.repo and not self.clones_repos:
            log.error(
                "schedule_firing_skipped",
                workflow=name,
                key=key,
                reason=f"repo {schedule.repo!r} cannot be cloned: the GitHub trigger is off",
            )
            return None
        try:
            stored = await asyncio.to_thread(
                self.runner.submit, to_loop_job(workflow, fire_time), workflow
            )
        except LedgerError as exc:
            log.error("schedule_firing_failed", workflow=name, key=key, error=str(exc))
            return None
        job, run, created = stored
        if created:
            log.info("schedule_fired", workflow=name, key=key, run_id=run.id)
            self.reports.submit(self.reports.report("queued", run, job))
            self.wake()
        else:
            log.info("schedule_firing_already_stored", workflow=name, key=key, run_id=run.id)
        return stored

    async def _tick(self, name: str) -> None:
        """What APScheduler calls at a fire time: it says not which, so the fire time is the
        schedule's latest at or before now (APScheduler runs no firing later than its grace)."""
        schedule = self.registered.get(name)
        if schedule is None:
            return
        within = max(schedule.grace_seconds, MIN_MISFIRE_SECONDS)
        fire_time = latest_fire(schedule, self.now(), within=within)
        if fire_time is None:
            log.warning("schedule_firing_late", workflow=name, grace_seconds=within)
            return
        await self.fire(name, fire_time)

    async def _reload_forever(self) -> None:
        while True:
            await asyncio.sleep(self.reload_seconds)
            try:
                await self.reload()
            except Exception:  # a bug here must not stop later reloads or firings
                log.exception("schedule_reload_failed")

    def next_runs(self) -> dict[str, datetime | None]:
        """Each registered schedule's next fire time, as APScheduler has it."""
        return {job.id: job.next_run_time for job in self.apscheduler.get_jobs()}


def _iso(moment: datetime) -> str:
    return moment.isoformat()
