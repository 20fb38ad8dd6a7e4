"""Reports on runs of GitHub jobs: one progress comment per run, created once, edited in place.

The comment's id is kept in memory and in the run's `extra` (`progress_comment_id`), so after a
restart, or when a resumed run reports again, the same comment is edited rather than another
posted. A progress comment someone deleted is posted anew. Other GitHub errors are raised for
the report hub to retry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

import structlog

from app.github_client import GitHubClient, GitHubNotFound
from app.github_progress import render_progress
from app.ledger import Ledger
from loops.reporting import RunReport

log = structlog.get_logger("app.github")

COMMENT_ID_KEY = "progress_comment_id"


class GitHubReporter:
    """The `Reporter` for jobs whose source is "github".

    Args:
        client: the GitHub client comments go through.
        ledger: where each run's progress comment id is kept.
    """

    def __init__(self, client: GitHubClient, ledger: Ledger) -> None:
        self.client = client
        self.ledger = ledger
        self._comments: dict[str, int] = {}
        self._unsaved: set[str] = set()  # runs whose comment id the ledger does not hold yet

    async def report(self, report: RunReport) -> None:
        thread = _Thread.of(report.job.reply)
        if thread is None:
            log.warning("progress_comment_skipped", run_id=report.run_id, reason="no thread")
            return
        body = render_progress(report)
        comment_id = await self._comment_id(report)
        if comment_id is None or not await self._edit(thread, comment_id, body, report):
            comment_id = await self._create(thread, body, report)
        if report.run_id in self._unsaved:
            # Kept before the report counts as delivered: a retry after a failed write edits
            # the comment just posted instead of posting another.
            await asyncio.to_thread(
                self.ledger.update_extra, report.run_id, **{COMMENT_ID_KEY: comment_id}
            )
            self._unsaved.discard(report.run_id)
        if report.kind == "finished":
            # The ledger has the id for whatever comes next (a resume, a restart).
            self._comments.pop(report.run_id, None)

    async def _edit(self, thread: _Thread, comment_id: int, body: str, report: RunReport) -> bool:
        """Edit the progress comment; False when it is gone (someone deleted it)."""
        try:
            await self.client.update_comment(
                thread.repo, comment_id, body, installation_id=thread.installation_id
            )
        except GitHubNotFound:
            log.info("progress_comment_missing", run_id=report.run_id, comment_id=comment_id)
            return False
        log.info(
            "progress_comment_updated",
            run_id=report.run_id,
            comment_id=comment_id,
            kind=report.kind,
            status=report.status,
        )
        return True

    async def _create(self, thread: _Thread, body: str, report: RunReport) -> int:
        comment_id = await self.client.create_comment(
            thread.repo, thread.number, body, installation_id=thread.installation_id
        )
        log.info(
            "progress_comment_created",
            run_id=report.run_id,
            repo=thread.repo,
            number=thread.number,
            comment_id=comment_id,
        )
        self._comments[report.run_id] = comment_id
        self._unsaved.add(report.run_id)
        return comment_id

    async def _comment_id(self, report: RunReport) -> int | None:
        """The run's progress comment: remembered, carried by the report, or in the ledger."""
        known = self._comments.get(report.run_id)
        if known is not None:
            return known
        stored = _as_id(report.extra.get(COMMENT_ID_KEY))
        if stored is None:
            run = await asyncio.to_thread(self.ledger.get_run, report.run_id)
            stored = _as_id(run.extra.get(COMMENT_ID_KEY)) if run is not None else None
        if stored is not None:
            self._comments[report.run_id] = stored
        return stored


@dataclass(frozen=True, kw_only=True)
class _Thread:
    """The pull request or issue a job came from, as its `reply` data names it."""

    repo: str
    number: int
    installation_id: int | None

    @classmethod
    def of(cls, reply: Mapping[str, str]) -> _Thread | None:
        number = _as_id(reply.get("number"))
        repo = reply.get("repo")
        if not repo or number is None:
            return None
        return cls(repo=repo, number=number, installation_id=_as_id(reply.get("installation_id")))


def _as_id(value: object) -> int | None:
    """A positive integer id from stored JSON (a number, or its digits as text); else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if isinstance(value, str) and value.isdigit():
        return int(value) or None
    return None
