"""The Slack trigger's parts in the running service: its verifier, Web API client, command
handlers and reporter, and whether it is on.

It is on with a signing secret (`LOOPWRIGHT_SLACK__SIGNING_SECRET`); otherwise both Slack
endpoints answer 503 with the reason, and the start-up log says it too. Without a bot token,
slash commands still work and report through their `response_url`; mentions and direct
messages start runs but cannot be answered.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import httpx
import structlog
from slack_sdk.signature import SignatureVerifier

from app.catalog import WorkflowCatalog
from app.executor import Executor
from app.intake import IntakeBatcher
from app.reports import ReportHub
from app.runner import Runner
from app.settings import Settings, SlackSettings
from app.slack_client import SlackClient, SlackError
from app.slack_handlers import SlackHandlers
from app.slack_reporter import SlackReporter
from triggers.slack import signature_verifier

log = structlog.get_logger("app.slack")

HTTP_TIMEOUT = httpx.Timeout(10.0, connect=5.0)


@dataclass(kw_only=True)
class SlackTrigger:
    """The running trigger. `http` is the client's connection pool when the trigger made it.

    Attributes:
        own_users: this app's bot user and bot ids (from `auth.test`), whose messages are
            ignored; filled in the background at start.
    """

    verifier: SignatureVerifier
    client: SlackClient
    handlers: SlackHandlers
    http: httpx.AsyncClient | None = None
    own_users: set[str] = field(default_factory=set)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """Run Web API work after the answer, keeping a reference until it ends."""
        task = asyncio.create_task(_logged(work, name), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def learn_own_ids(self) -> None:
        if not self.client.has_token:
            return
        user_id, bot_id = await self.client.own_ids()
        self.own_users.update(i for i in (user_id, bot_id) if i)

    async def stop(self, grace: float = 2.0) -> None:
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=grace)
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.http is not None:
            await self.http.aclose()


def trigger_state(settings: SlackSettings) -> tuple[bool, str]:
    """Whether the Slack trigger can be on with these settings, and why (not)."""
    secret = settings.signing_secret.get_secret_value() if settings.signing_secret else ""
    if not secret.strip():
        return False, "LOOPWRIGHT_SLACK__SIGNING_SECRET is not set"
    if settings.bot_token is None or not settings.bot_token.get_secret_value():
        return True, (
            f"slash commands at {settings.api_url}, replying through response_url "
            "(no LOOPWRIGHT_SLACK__BOT_TOKEN: mentions cannot be answered)"
        )
    return True, f"slash commands and events, Web API at {settings.api_url}"


@dataclass(frozen=True, kw_only=True)
class SlackParts:
    settings: Settings
    catalog: WorkflowCatalog
    intake: IntakeBatcher
    runner: Runner
    executor: Executor
    reports: ReportHub


def start_slack_trigger(
    parts: SlackParts, *, now: Callable[[], float] | None = None
) -> tuple[SlackTrigger | None, str]:
    """The started trigger and why it is on; or None and why it is off.

    Args:
        now: the verifier's clock (tests); the wall clock by default.
    """
    settings = parts.settings.slack
    enabled, why = trigger_state(settings)
    if not enabled:
        return None, why
    assert settings.signing_secret is not None, "trigger_state found a secret"
    verifier = signature_verifier(settings.signing_secret.get_secret_value(), now=now)
    http = httpx.AsyncClient(timeout=HTTP_TIMEOUT)
    token = settings.bot_token.get_secret_value() if settings.bot_token else None
    client = SlackClient(http, api_url=settings.api_url, token=token or None)
    if not parts.reports.wants("slack"):  # a reporter given to create_app wins (tests)
        parts.reports.register_default("slack", SlackReporter(client, parts.runner.ledger))
    handlers = SlackHandlers(
        catalog=parts.catalog,
        intake=parts.intake,
        runner=parts.runner,
        executor=parts.executor,
        reports=parts.reports,
        default_workflow=parts.settings.default_workflow,
        allowed_users=settings.allowed_users,
        allowed_channels=settings.allowed_channels,
    )
    trigger = SlackTrigger(verifier=verifier, client=client, handlers=handlers, http=http)
    trigger.spawn(trigger.learn_own_ids(), "slack-auth-test")
    return trigger, why


async def _logged(work: Coroutine[Any, Any, None], name: str) -> None:
    try:
        await work
    except SlackError as exc:
        log.warning("slack_call_failed", task=name, error=str(exc)[:300])
    except Exception:
        log.exception("slack_task_crashed", task=name)
