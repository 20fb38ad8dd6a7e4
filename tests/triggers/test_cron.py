"""Cron schedules as pure functions: fire times, keys, the catch-up choice, and the loop job."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from loops.workflows import ReplyTarget, Schedule, Workflow
from triggers.cron import (
    catch_up_fire,
    fire_key,
    latest_fire,
    next_fire_times,
    to_loop_job,
)

BERLIN = ZoneInfo("Europe/Berlin")
MONDAY_3AM = Schedule(cron="0 3 * * 1", timezone="Europe/Berlin", repo="acme/app")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_the_key_names_the_fire_time_in_utc_whatever_the_zone() -> None:
    fire = datetime(2025, 3, 3, 3, 0, tzinfo=BERLIN)
    assert fire_key("deps", fire) == "schedule:deps:2025-03-03T02:00:00Z"
    assert fire_key("deps", fire.astimezone(UTC)) == fire_key("deps", fire)


def test_next_fire_times_are_in_the_schedule_zone_across_a_dst_change() -> None:
    daily = Schedule(cron="0 3 * * *", timezone="Europe/Berlin", workdir="/srv")
    times = next_fire_times(daily, at("2025-03-29T12:00:00+00:00"), 3)
    assert [t.isoformat() for t in times] == [
        "2025-03-30T03:00:00+02:00",  # the night clocks moved forward
        "2025-03-31T03:00:00+02:00",
        "2025-04-01T03:00:00+02:00",
    ]


def test_a_fire_time_itself_counts_as_next() -> None:
    every_hour = Schedule(cron="0 * * * *", workdir="/srv")
    now = at("2025-01-01T10:00:00+00:00")
    assert next_fire_times(every_hour, now, 1) == [now]


def test_latest_fire_finds_last_monday_within_a_week_and_nothing_within_a_day() -> None:
    wednesday = at("2025-03-05T12:00:00+00:00")
    assert latest_fire(MONDAY_3AM, wednesday, within=7 * 86400) == at("2025-03-03T02:00:00+00:00")
    assert latest_fire(MONDAY_3AM, wednesday, within=86400) is None


def test_latest_fire_includes_now_and_picks_the_last_of_many() -> None:
    every_minute = Schedule(cron="* * * * *", workdir="/srv")
    now = at("2025-01-01T10:00:00+00:00")
    assert latest_fire(every_minute, now, within=0) == now
    later = now + timedelta(minutes=90, seconds=30)
    assert latest_fire(every_minute, later, within=3 * 3600) == now + timedelta(minutes=90)


@pytest.mark.parametrize(
    ("grace", "expected"),
    [(3 * 86400, "2025-03-03T02:00:00+00:00"), (2 * 86400, None), (0, None)],
)
def test_catch_up_takes_the_latest_firing_only_within_the_grace_window(
    grace: int, expected: str | None
) -> None:
    schedule = Schedule(cron="0 3 * * 1", timezone="Europe/Berlin", repo="a/b", grace_seconds=grace)
    # Down since the Monday a week before: two firings missed, the later one 2.5 days ago.
    now = at("2025-03-05T14:00:00+00:00")
    fire = catch_up_fire(schedule, now)
    assert fire == (None if expected is None else at(expected))


def scheduled(schedule: Schedule | None) -> Workflow:
    return Workflow(name="deps", template="{{ instruction }}", source="...", schedule=schedule)


def test_a_firing_becomes_a_job_with_its_key_target_and_reply() -> None:
    schedule = Schedule(
        cron="0 3 * * 1",
        timezone="Europe/Berlin",
        repo="acme/app",
        reply=ReplyTarget(slack_channel="C0123", github_issue="acme/app#7"),
        instruction="Update the dependencies.",
    )
    fire = at("2025-03-03T03:00:00+01:00")
    job = to_loop_job(scheduled(schedule), fire)
    assert job.source == "cron"
    assert job.idempotency_key == "schedule:deps:2025-03-03T02:00:00Z"
    assert job.concurrency_key == "schedule:deps"
    assert (job.repo, job.workdir, job.pr) == ("acme/app", None, None)
    assert job.instruction == "Update the dependencies."
    assert job.reply == {
        "fire_time": "2025-03-03T02:00:00+00:00",
        "slack_channel": "C0123",
        "github_issue": "acme/app#7",
    }


def test_a_workdir_target_goes_on_the_job() -> None:
    job = to_loop_job(scheduled(Schedule(cron="0 3 * * *", workdir="/srv/app")), datetime.now(UTC))
    assert (job.workdir, job.repo) == ("/srv/app", None)
    assert "slack_channel" not in job.reply


def test_a_workflow_without_schedule_has_no_firing_job() -> None:
    with pytest.raises(ValueError, match="workflow 'deps' has no schedule"):
        to_loop_job(scheduled(None), datetime.now(UTC))
