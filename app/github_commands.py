"""Turns stored GitHub deliveries into runs and answers, after the webhook has been answered.

The webhook handler only verifies and stores a delivery (`app.deliveries`); the GitHub API work
(permissions, workflows from the repository, reactions, replies) happens here, in one
background task, woken after each stored delivery and at start-up, so deliveries stored before
a crash are processed after the restart. For each delivery: comments by bots and by the service
itself are ignored; the commands are parsed; the author must have write, maintain or admin
permission on the repository (`author_association` is never trusted); then each command is
carried out by `app.github_handlers`.

A delivery that fails on GitHub's side (or the ledger's) is retried later with a growing delay,
and given up after `max_attempts` with its error as its outcome. Work already done for it in
this process (replies, reactions) is not repeated by a retry, and its runs have idempotency
keys, so a retried delivery never starts a second run.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import structlog

from app import github_replies as replies
from app.deliveries import Delivery, DeliveryStore
from app.github_client import GitHubClient, GitHubError
from app.github_handlers import CommandHandlers, Thread
from app.ledger import StorageError
from triggers.commands import parse_commands
from triggers.github import (
    CommentEvent,
    Ignored,
    PayloadError,
    is_from_bot,
    to_comment_event,
)

log = structlog.get_logger("app.github")

SOURCE = "github"
_DENIED = -1
"""The step index of the one reply a commenter without permission gets."""


@dataclass(frozen=True, kw_only=True)
class CommandConfig:
    """Timings of the delivery processor.

    Attributes:
        poll_seconds: how often pending deliveries are looked for when nothing wakes the task
            (retries come due, another replica stored one).
        lease_seconds: how long a claimed delivery is left alone by other processes.
        retry_seconds: the delay before the first retry; it doubles with each further one.
        max_attempts: failed attempts after which a delivery is given up.
        stop_grace_seconds: how long stopping waits for the delivery in hand.
        workflow_ttl_seconds: how long a repository's workflows are remembered.
    """

    poll_seconds: float = 5.0
    lease_seconds: float = 300.0
    retry_seconds: float = 10.0
    max_attempts: int = 5
    stop_grace_seconds: float = 5.0
    workflow_ttl_seconds: float = 60.0


class GitHubCommandProcessor:
    """The background task that processes stored GitHub deliveries; `start`, `wake`, `stop`."""

    def __init__(
        self,
        *,
        store: DeliveryStore,
        github: GitHubClient,
        handlers: CommandHandlers,
        bot_name: str,
        config: CommandConfig | None = None,
    ) -> None:
        self.store = store
        self.github = github
        self.handlers = handlers
        self.bot_name = bot_name
        self.config = config or CommandConfig()
        self._done: dict[str, dict[int, str]] = {}
        """Per delivery key, the steps done in this process and what came of them, so a retry
        does not repeat them."""
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the task; its first pass takes what was stored before (a restart)."""
        self._task = asyncio.create_task(self._serve(), name="github-commands")

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        """Stop after the delivery in hand (waiting at most `stop_grace_seconds` for it)."""
        self._stopping = True
        self.wake()
        task = self._task
        if task is None:
            return
        _, pending = await asyncio.wait([task], timeout=self.config.stop_grace_seconds)
        if pending:
            # Its lease runs out, so it is processed again later; its runs are idempotent.
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def process_pending(self) -> int:
        """Process the deliveries that are due, one at a time; returns how many were taken."""
        taken = 0
        while not self._stopping:
            delivery = await asyncio.to_thread(
                self.store.claim, SOURCE, lease_seconds=self.config.lease_seconds
            )
            if delivery is None:
                break
            taken += 1
            await self._process(delivery)
        return taken

    async def _serve(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                await self.process_pending()
            except Exception:  # the ledger is down, say: the next pass tries again
                log.exception("github_deliveries_pass_failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.poll_seconds):
                    await self._wake.wait()

    async def _process(self, delivery: Delivery) -> None:
        structlog.contextvars.bind_contextvars(delivery=delivery.key)
        try:
            outcome = await self._outcome(delivery)
        except (GitHubError, StorageError) as exc:
            await self._retry_later(delivery, exc)
            return
        except Exception as exc:
            # A bug must not leave the delivery to come back forever: it is counted like a
            # failure, so it is given up after `max_attempts`.
            log.exception("github_delivery_crashed", delivery=delivery.key)
            await self._retry_later(delivery, exc)
            return
        finally:
            structlog.contextvars.unbind_contextvars("delivery")
        await asyncio.to_thread(self.store.mark_processed, SOURCE, delivery.key, outcome)
        self._done.pop(delivery.key, None)
        log.info("github_delivery_processed", delivery=delivery.key, outcome=outcome)

    async def _retry_later(self, delivery: Delivery, exc: Exception) -> None:
        error = f"{type(exc).__name__}: {exc}"[:500]
        attempt = delivery.attempts + 1
        if attempt >= self.config.max_attempts:
            # Logged first: whoever sees the outcome stored can find the log line too.
            log.error(
                "github_delivery_failed", delivery=delivery.key, attempts=attempt, error=error
            )
            await asyncio.to_thread(
                self.store.mark_processed, SOURCE, delivery.key, f"failed: {error}"
            )
            self._done.pop(delivery.key, None)
            return
        delay = self.config.retry_seconds * 2 ** (attempt - 1)
        await asyncio.to_thread(self.store.retry_later, SOURCE, delivery.key, error, delay=delay)
        log.warning(
            "github_delivery_retry_scheduled",
            delivery=delivery.key,
            attempt=attempt,
            delay_s=delay,
            error=error,
        )

    async def _outcome(self, delivery: Delivery) -> str:
        """What processing the delivery came to, in words; raises what is worth a retry."""
        try:
            event = to_comment_event(delivery.event, delivery.payload)
        except PayloadError as exc:
            return f"invalid payload: {exc.reason}"
        if isinstance(event, Ignored):
            return f"ignored: {event.reason}"
        if is_from_bot(event, bot_name=self.bot_name) or replies.is_own_comment(event.body):
            return f"ignored: comment by a bot or by Loopwright ({event.author!r})"
        commands = parse_commands(event.body, bot_name=self.bot_name)
        if not commands:
            return "ignored: no commands"
        if event.installation_id is not None:
            self.github.remember_installation(event.repo, event.installation_id)
        thread = Thread(event=event, delivery_key=delivery.key)
        if not await self._permitted(thread):
            return f"denied: {event.author!r} lacks write permission on {event.repo!r}"
        done = self._done.setdefault(delivery.key, {})
        for index, command in enumerate(commands):
            if index not in done:
                done[index] = await self.handlers.handle(thread, index, command)
        return "; ".join(done[index] for index in range(len(commands)))

    async def _permitted(self, thread: Thread) -> bool:
        event = thread.event
        allowed = await self.github.can_trigger(
            event.repo, event.author, installation_id=event.installation_id
        )
        if allowed:
            return True
        _log_denied(event)
        done = self._done.setdefault(thread.delivery_key, {})
        if _DENIED not in done:
            await self.handlers.reply(thread, replies.denied(event.author, event.repo))
            done[_DENIED] = "denied"
        return False


def _log_denied(event: CommentEvent) -> None:
    log.info(
        "github_command_denied",
        repo=event.repo,
        number=event.number,
        author=event.author,
        reason="the author lacks write, maintain or admin permission",
    )
