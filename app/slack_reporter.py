"""Reports on runs of Slack jobs: one progress message per run, posted once, updated in place.

With a bot token the message is posted in the job's channel (in its thread, for a mention) and
updated with `chat.update`; its `ts` is kept in memory and in the run's `extra`
(`slack_message_ts`), so a restart or a resumed run updates the same message. Without one (or
when the bot is not in the channel) progress goes through the slash command's `response_url`,
which Slack honours at most 5 times in 30 minutes: the queued report is skipped (the command's
answer named the run already), and progress takes at most 4 uses so that one is always left for
the final message. Other Slack errors are raised for the report hub to retry.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from app.ledger import Ledger
from app.slack_client import SlackClient, SlackError
from app.slack_messages import progress_message
from loops.checking import CheckResult
from loops.reporting import RunReport

log = structlog.get_logger("app.slack")

TS_KEY = "slack_message_ts"
RESPONSE_URL_USES = 5
RESPONSE_URL_SECONDS = 30 * 60
_NO_CHANNEL = frozenset({"not_in_channel", "channel_not_found", "is_archived"})


@dataclass
class _Uses:
    first: float
    times: list[float] = field(default_factory=list)


class SlackReporter:
    """The `Reporter` for jobs whose source is "slack"."""

    def __init__(
        self, client: SlackClient, ledger: Ledger, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.client = client
        self.ledger = ledger
        self.clock = clock
        self._messages: dict[str, str] = {}
        self._uses: dict[str, _Uses] = {}
        self._checks: dict[str, tuple[CheckResult, ...]] = {}

    async def report(self, report: RunReport) -> None:
        report = self._with_checks(report)
        reply = report.job.reply
        channel = reply.get("channel", "")
        if self.client.has_token and channel:
            try:
                await self._post_or_update(report, channel, reply.get("thread_ts", ""))
                return
            except SlackError as exc:
                if exc.error not in _NO_CHANNEL or not reply.get("response_url"):
                    raise
                log.info("slack_channel_unreachable", run_id=report.run_id, error=exc.error)
        if reply.get("response_url"):
            await self._respond(report, reply["response_url"])
        else:
            log.warning("slack_progress_skipped", run_id=report.run_id, reason="no way to reply")

    def _with_checks(self, report: RunReport) -> RunReport:
        """The report, with the checks of the run's last turn when it carries none (a finished
        report may not: the final message shows them all the same)."""
        if report.checks:
            self._checks[report.run_id] = report.checks
        if report.kind != "finished":
            return report
        checks = self._checks.pop(report.run_id, ())
        return report if report.checks or not checks else dataclasses.replace(report, checks=checks)

    async def _post_or_update(self, report: RunReport, channel: str, thread_ts: str) -> None:
        text, blocks = progress_message(report)
        ts = await self._message_ts(report)
        if ts:
            await self.client.update_message(channel, ts, text, blocks=blocks)
            log.info("slack_progress_updated", run_id=report.run_id, kind=report.kind, ts=ts)
        else:
            ts = await self.client.post_message(channel, text, blocks=blocks, thread_ts=thread_ts)
            self._messages[report.run_id] = ts
            # Kept before the report counts as delivered: a retry updates this message.
            await asyncio.to_thread(self.ledger.update_extra, report.run_id, **{TS_KEY: ts})
            log.info("slack_progress_posted", run_id=report.run_id, channel=channel, ts=ts)
        if report.kind == "finished":
            self._messages.pop(report.run_id, None)

    async def _message_ts(self, report: RunReport) -> str:
        known = self._messages.get(report.run_id)
        if known:
            return known
        stored = report.extra.get(TS_KEY)
        if not isinstance(stored, str) or not stored:
            run = await asyncio.to_thread(self.ledger.get_run, report.run_id)
            stored = run.extra.get(TS_KEY) if run is not None else None
        if isinstance(stored, str) and stored:
            self._messages[report.run_id] = stored
            return stored
        return ""

    async def _respond(self, report: RunReport, url: str) -> None:
        final = report.kind == "finished"
        if report.kind == "queued" or not self._may_use(report.run_id, final=final):
            log.info("slack_response_url_spared", run_id=report.run_id, kind=report.kind)
            return
        text, blocks = progress_message(report)
        uses = self._uses[report.run_id]
        body = {
            "response_type": "in_channel",
            "replace_original": bool(uses.times),
            "text": text,
            "blocks": blocks,
        }
        await self.client.respond(url, body)
        uses.times.append(self.clock())
        log.info(
            "slack_progress_responded", run_id=report.run_id, kind=report.kind, uses=len(uses.times)
        )
        if final:
            self._uses.pop(report.run_id, None)

    def _may_use(self, run_id: str, *, final: bool) -> bool:
        now = self.clock()
        uses = self._uses.setdefault(run_id, _Uses(first=now))
        if now - uses.first > RESPONSE_URL_SECONDS:
            return False
        return len(uses.times) < (RESPONSE_URL_USES if final else RESPONSE_URL_USES - 1)
