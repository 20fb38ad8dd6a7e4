"""Scheduled runs report to the reply target their schedule names, through that trigger's
reporter, with the reply in the terms the reporter reads."""

from __future__ import annotations

from structlog.testing import capture_logs

from app.schedule_reporter import ScheduleReporter
from loops.jobs import LoopJob
from loops.reporting import RunReport


class Collected:
    def __init__(self) -> None:
        self.replies: list[dict[str, str]] = []

    async def report(self, report: RunReport) -> None:
        self.replies.append(dict(report.job.reply))


def report(run_id: str = "r1", **reply: str) -> RunReport:
    job = LoopJob(
        workflow="nightly",
        source="cron",
        idempotency_key="schedule:nightly:2026-11-22T03:00:00+00:00",
        reply={"fire_time": "2026-11-22T03:00:00+00:00", **reply},
    )
    return RunReport(
        kind="started", run_id=run_id, job_id="j1", job=job, status="running", workflow="nightly"
    )


async def test_a_slack_channel_target_goes_to_the_slack_reporter_as_its_channel():
    slack, github = Collected(), Collected()

    await ScheduleReporter(slack=slack, github=github).report(report(slack_channel="C0123"))

    assert [r["channel"] for r in slack.replies] == ["C0123"]
    assert github.replies == []


async def test_a_github_issue_target_goes_to_the_github_reporter_as_repo_and_number():
    slack, github = Collected(), Collected()

    await ScheduleReporter(slack=slack, github=github).report(report(github_issue="octo/calc#42"))

    assert [(r["repo"], r["number"]) for r in github.replies] == [("octo/calc", "42")]
    assert slack.replies == []


async def test_a_target_whose_trigger_is_off_is_logged_once_per_run():
    reporter = ScheduleReporter(slack=None, github=Collected())

    with capture_logs() as logs:
        await reporter.report(report(slack_channel="C0123"))
        await reporter.report(report(slack_channel="C0123"))
        await reporter.report(report())

    reasons = [e["reason"] for e in logs if e["event"] == "schedule_report_not_delivered"]
    assert reasons == ["the Slack trigger is off"]

    with capture_logs() as later:
        await reporter.report(report("r2"))

    assert [e["reason"] for e in later] == ["the schedule names no reply target"]
