"""Cron schedules of workflows: when a schedule fires, and the loop job a firing becomes.

Pure functions of a schedule and a time. `app.scheduler` decides when to call them; every
process that computes the same fire time builds the same job, idempotency key included, so
replicas sharing one ledger store each firing once, and a restart never stores one twice.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from apscheduler.triggers.cron import CronTrigger  # type: ignore[import-untyped]

from loops.crontab import crontab_trigger
from loops.jobs import LoopJob
from loops.workflows import Schedule, Workflow

KEY_PREFIX = "schedule"
REQUESTED_BY = "schedule"
_FIRST_LOOKBACK = timedelta(minutes=1)
_JUST_AFTER = timedelta(seconds=1)  # cron fires on whole minutes: nothing lies in between


def cron_trigger(schedule: Schedule) -> CronTrigger:
    """The APScheduler trigger of `schedule`, in its time zone (DST handled by APScheduler)."""
    return crontab_trigger(schedule.cron, timezone=schedule.timezone)


def fire_key(workflow: str, fire_time: datetime) -> str:
    """The idempotency key of one firing: ``schedule:<workflow>:<fire time, UTC, ISO 8601>``."""
    return f"{KEY_PREFIX}:{workflow}:{fire_time.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"


def concurrency_key(workflow: str) -> str:
    """Runs of one schedule run one at a time."""
    return f"{KEY_PREFIX}:{workflow}"


def next_fire_times(schedule: Schedule, now: datetime, count: int) -> list[datetime]:
    """The next `count` fire times at or after `now`, in the schedule's time zone."""
    trigger = cron_trigger(schedule)
    times: list[datetime] = []
    fire: datetime | None = trigger.get_next_fire_time(None, now)
    while fire is not None and len(times) < count:
        times.append(fire)
        fire = trigger.get_next_fire_time(fire, fire + _JUST_AFTER)
    return times


def latest_fire(schedule: Schedule, now: datetime, *, within: float) -> datetime | None:
    """The latest fire time in ``[now - within seconds, now]``, or None if there is none.

    Looks back through windows that double in length, so a weekly cron costs a few dozen
    trigger evaluations, not one per minute of the week.
    """
    trigger = cron_trigger(schedule)
    earliest = now - timedelta(seconds=within)
    span = _FIRST_LOOKBACK
    while True:
        start = max(earliest, now - span)
        fire: datetime | None = trigger.get_next_fire_time(None, start)
        if fire is not None and fire <= now:
            return _last_until(trigger, fire, now)
        if start <= earliest:
            return None
        span *= 2


def _last_until(trigger: CronTrigger, fire: datetime, now: datetime) -> datetime:
    while True:
        later: datetime | None = trigger.get_next_fire_time(fire, fire + _JUST_AFTER)
        if later is None or later > now:
            return fire
        fire = later


def catch_up_fire(schedule: Schedule, now: datetime) -> datetime | None:
    """The one firing to run on start-up: the latest fire time not older than the schedule's
    grace window (firings missed before it are coalesced into it), or None."""
    return latest_fire(schedule, now, within=schedule.grace_seconds)


def to_loop_job(workflow: Workflow, fire_time: datetime) -> LoopJob:
    """The job of `workflow`'s schedule firing at `fire_time`.

    Raises:
        ValueError: the workflow has no schedule.
    """
    schedule = workflow.schedule
    if schedule is None:
        raise ValueError(f"workflow {workflow.name!r} has no schedule")
    reply: dict[str, str] = {"fire_time": fire_time.astimezone(UTC).isoformat()}
    if schedule.reply is not None and schedule.reply.slack_channel:
        reply["slack_channel"] = schedule.reply.slack_channel
    if schedule.reply is not None and schedule.reply.github_issue:
        reply["github_issue"] = schedule.reply.github_issue
    return LoopJob(
        workflow=workflow.name,
        source="cron",
        instruction=schedule.instruction,
        idempotency_key=fire_key(workflow.name, fire_time),
        concurrency_key=concurrency_key(workflow.name),
        workdir=schedule.workdir,
        repo=schedule.repo,
        requested_by=REQUESTED_BY,
        reply=reply,
    )
