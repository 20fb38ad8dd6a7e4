"""The GitHub trigger's parts in the running service: its client, its delivery processor, and
whether it is on.

It is on only with a webhook secret and credentials (an App id with its private key, or a
token); otherwise the webhook answers 503 with the reason, and the start-up log says it too.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import structlog

from app.catalog import WorkflowCatalog
from app.deliveries import DeliveryStore
from app.executor import Executor
from app.github_client import GitHubClient
from app.github_commands import CommandConfig, GitHubCommandProcessor
from app.github_handlers import CommandHandlers
from app.github_reporter import GitHubReporter
from app.github_workflows import RepoWorkflows
from app.reports import ReportHub
from app.runner import Runner
from app.settings import GitHubSettings, Settings

log = structlog.get_logger("app.github")

HTTP_TIMEOUT = httpx.Timeout(30.0, connect=10.0)


@dataclass(kw_only=True)
class GitHubTrigger:
    """The running trigger. `http` is the client's connection pool when the trigger made it."""

    client: GitHubClient
    processor: GitHubCommandProcessor
    http: httpx.AsyncClient | None = None

    async def stop(self) -> None:
        await self.processor.stop()
        if self.http is not None:
            await self.http.aclose()


def trigger_state(settings: GitHubSettings) -> tuple[bool, str]:
    """Whether the GitHub trigger can be on with these settings, and why (not)."""
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else ""
    if not secret:
        return False, "LOOPWRIGHT_GITHUB__WEBHOOK_SECRET is not set"
    has_key = settings.private_key is not None and bool(settings.private_key.get_secret_value())
    if settings.app_id and has_key:
        return True, f"GitHub App {settings.app_id} at {settings.api_url}"
    if settings.token is not None and settings.token.get_secret_value():
        return True, f"a token at {settings.api_url}"
    if settings.app_id or has_key:
        return False, (
            "a GitHub App needs both LOOPWRIGHT_GITHUB__APP_ID and LOOPWRIGHT_GITHUB__PRIVATE_KEY"
        )
    return False, (
        "no GitHub credentials: set LOOPWRIGHT_GITHUB__APP_ID and LOOPWRIGHT_GITHUB__PRIVATE_KEY,"
        " or LOOPWRIGHT_GITHUB__TOKEN"
    )


@dataclass(frozen=True, kw_only=True)
class TriggerParts:
    """What the trigger works with, from the rest of the service."""

    settings: Settings
    deliveries: DeliveryStore
    catalog: WorkflowCatalog
    runner: Runner
    executor: Executor
    reports: ReportHub


def start_github_trigger(
    parts: TriggerParts,
    *,
    client: GitHubClient | None = None,
    config: CommandConfig | None = None,
) -> tuple[GitHubTrigger | None, str]:
    """The started trigger and why it is on; or None and why it is off.

    Args:
        client: a client to use instead of one built from the settings (tests, embedding).
    """
    settings = parts.settings.github
    enabled, why = trigger_state(settings)
    if not enabled:
        return None, why
    http: httpx.AsyncClient | None = None
    if client is None:
        http = httpx.AsyncClient(base_url=settings.api_url, timeout=HTTP_TIMEOUT)
        try:
            client = GitHubClient.from_settings(settings, http)
        except ValueError as exc:  # an unreadable private key; the message never quotes it
            return None, f"the GitHub credentials cannot be used: {exc}"
        assert client is not None, "trigger_state found credentials"
    parts.reports.register_default("github", GitHubReporter(client, parts.runner.ledger))
    config = config or CommandConfig()
    handlers = CommandHandlers(
        github=client,
        workflows=RepoWorkflows(parts.catalog, client, ttl=config.workflow_ttl_seconds),
        runner=parts.runner,
        executor=parts.executor,
        reports=parts.reports,
        default_workflow=parts.settings.default_workflow,
    )
    processor = GitHubCommandProcessor(
        store=parts.deliveries,
        github=client,
        handlers=handlers,
        bot_name=settings.bot_name,
        config=config,
    )
    processor.start()
    return GitHubTrigger(client=client, processor=processor, http=http), why
