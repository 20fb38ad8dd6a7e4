"""Reports on scheduled runs, delivered to the reply target their workflow's schedule names.

A schedule's `reply` is a Slack channel (`slack_channel`) or a GitHub issue
(`github_issue: owner/name#123`), and the firing's job carries it. Each report is handed to that
trigger's own reporter, with the job's reply rewritten in the terms the reporter reads: a
channel for Slack (one message, updated in place), a repository and issue number for GitHub (one
progress comment, edited in place). A schedule with no reply target, or whose target's trigger
is off, is reported nowhere, with one log line per run saying why.
"""

from __future__ import annotations

import dataclasses

import structlog

from loops.reporting import Reporter, RunReport

log = structlog.get_logger("app.schedules")


class ScheduleReporter:
    """`Reporter` for source "cron", dispatching to the Slack or GitHub reporter."""

    def __init__(self, *, slack: Reporter | None, github: Reporter | None) -> None:
        self.slack = slack
        self.github = github
        self._unreported: set[str] = set()

    async def report(self, report: RunReport) -> None:
        reply = report.job.reply
        delivered = False
        channel = reply.get("slack_channel")
        if channel and self.slack is not None:
            await self.slack.report(_with_reply(report, {"channel": channel}))
            delivered = True
        issue = reply.get("github_issue")
        if issue:
            repo, _, number = issue.rpartition("#")
            if self.github is not None and repo and number.isdigit():
                await self.github.report(_with_reply(report, {"repo": repo, "number": number}))
                delivered = True
        if not delivered and report.run_id not in self._unreported:
            self._unreported.add(report.run_id)
            log.info(
                "schedule_report_not_delivered",
                run_id=report.run_id,
                workflow=report.workflow,
                reason=_why_not(channel, issue, self.slack, self.github),
            )


def _with_reply(report: RunReport, reply: dict[str, str]) -> RunReport:
    job = dataclasses.replace(report.job, reply={**report.job.reply, **reply})
    return dataclasses.replace(report, job=job)


def _why_not(
    channel: str | None, issue: str | None, slack: Reporter | None, github: Reporter | None
) -> str:
    if not channel and not issue:
        return "the schedule names no reply target"
    missing = []
    if channel and slack is None:
        missing.append("the Slack trigger is off")
    if issue and github is None:
        missing.append("the GitHub trigger is off")
    return "; ".join(missing) or f"cannot read the reply target {issue!r}"
