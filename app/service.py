"""The FastAPI service: `create_app(settings)` wires the ledger, executor, reports and routes.

Nothing heavy happens at import time, and litellm is imported only by the first model call, so
`/healthz` answers within moments of the process starting.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import structlog
from fastapi import FastAPI
from sqlalchemy.engine import make_url

from app.catalog import WorkflowCatalog
from app.checkouts import Checkouts
from app.deliveries import DeliveryStore
from app.executor import Executor, ExecutorConfig
from app.github_client import GitHubClient
from app.github_commands import CommandConfig
from app.github_runs import GitHubRunHooks
from app.github_trigger import GitHubTrigger, TriggerParts, start_github_trigger, trigger_state
from app.intake import DeliveryIntake, IntakeBatcher, IntakeWriter
from app.intake_process import intake_writer
from app.ledger import Ledger
from app.metrics import Metrics, MetricsMiddleware
from app.reports import ReportHub
from app.run_queue import RunQueue
from app.runner import Runner
from app.schedule_reporter import ScheduleReporter
from app.scheduler import Scheduler
from app.settings import Settings
from app.slack_trigger import SlackParts, SlackTrigger, start_slack_trigger
from app.slack_trigger import trigger_state as slack_trigger_state
from app.tracing import Tracing, opik_state, secret_values, start_tracing
from loops.model import ModelPort
from loops.reporting import Reporter
from triggers.commands import bare_login

log = structlog.get_logger("app.service")


@dataclass(kw_only=True)
class Services:
    """What request handlers reach through `request.app.state.services`."""

    settings: Settings
    ledger: Ledger
    queue: RunQueue
    writer: IntakeWriter
    """Stores what `intake` and `delivery_intake` take, many to a transaction."""
    intake: IntakeBatcher
    delivery_intake: DeliveryIntake
    """Stores webhook deliveries, each before its answer."""
    catalog: WorkflowCatalog
    runner: Runner
    executor: Executor
    reports: ReportHub
    metrics: Metrics
    deliveries: DeliveryStore
    github: GitHubTrigger | None = None
    slack: SlackTrigger | None = None
    scheduler: Scheduler | None = None
    triggers: dict[str, tuple[bool, str]] = field(default_factory=dict)
    """Which triggers are on in this process, and why (not)."""
    tracing: Tracing | None = None


def create_app(
    settings: Settings,
    *,
    model: ModelPort | None = None,
    reporters: dict[str, Reporter] | None = None,
    executor_config: ExecutorConfig | None = None,
    github: GitHubClient | None = None,
    github_config: CommandConfig | None = None,
) -> FastAPI:
    """The service. `model`, `reporters` and `github` (a GitHub client used instead of one built
    from the settings) are for tests and embedding; defaults are real."""
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = await _start(
            settings,
            metrics,
            model,
            reporters or {},
            executor_config,
            github=github,
            github_config=github_config,
        )
        app.state.services = services
        try:
            yield
        finally:
            await _stop(services)

    from app.api_intake import ServiceApp

    app = ServiceApp(
        title="Loopwright",
        version="0.1.0",
        description="Runs AI agent loops unattended: triggers, maker turns under brakes, "
        "checkers, and durable state.",
        lifespan=lifespan,
        # Runs are traced to Opik and the service exports Prometheus metrics; FastAPI's own
        # OpenTelemetry hooks would only look up, on every request, providers nobody set.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    from app.routes_api import api_router
    from app.routes_github import github_router
    from app.routes_ops import ops_router
    from app.routes_slack import slack_router

    app.include_router(ops_router())
    app.include_router(api_router())
    app.include_router(github_router())
    app.include_router(slack_router())
    # Outermost of the app's own middleware: it times everything the short paths in front of
    # them (`app.api_intake`) leave to the routes.
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


async def _start(
    settings: Settings,
    metrics: Metrics,
    model: ModelPort | None,
    reporters: dict[str, Reporter],
    executor_config: ExecutorConfig | None,
    *,
    github: GitHubClient | None = None,
    github_config: CommandConfig | None = None,
) -> Services:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    ledger = Ledger(settings.ledger_url)
    await asyncio.to_thread(ledger.migrate)
    catalog = WorkflowCatalog(settings.workflows_dir)
    catalog.current()
    tracing = start_tracing(
        settings.opik, capture_content=settings.trace_content, secrets=secret_values(settings)
    )
    runner = (
        Runner(settings=settings, ledger=ledger, model=model, tracing=tracing)
        if model is not None
        else Runner(settings=settings, ledger=ledger, tracing=tracing)
    )
    reports = ReportHub(reporters, trace_url=tracing.trace_url)
    reports.start()
    config = executor_config or ExecutorConfig(
        max_concurrent_runs=settings.max_concurrent_runs,
        shutdown_grace_seconds=settings.shutdown_grace_seconds,
        stale_after_seconds=settings.stale_after_seconds,
    )
    executor = Executor(runner=runner, config=config, reports=reports, metrics=metrics)
    metrics.watch_state(
        lambda: (runner.queue.counts(), executor.slots_in_use, config.max_concurrent_runs)
    )
    writer = intake_writer(ledger, log_format=settings.log_format)
    intake = IntakeBatcher(writer)
    deliveries = DeliveryStore(ledger)
    services = Services(
        settings=settings,
        ledger=ledger,
        queue=runner.queue,
        writer=writer,
        intake=intake,
        catalog=catalog,
        runner=runner,
        executor=executor,
        reports=reports,
        metrics=metrics,
        deliveries=deliveries,
        delivery_intake=DeliveryIntake(writer),
        tracing=tracing,
    )
    parts = TriggerParts(
        settings=settings,
        deliveries=deliveries,
        catalog=catalog,
        runner=runner,
        executor=executor,
        reports=reports,
    )
    services.github, github_why = start_github_trigger(parts, client=github, config=github_config)
    if services.github is not None:
        runner.hooks["github"] = GitHubRunHooks(services.github.client, _checkouts(settings))
        # A schedule's `repo` target and a Slack command's `repo=` are cloned through GitHub,
        # as a comment's repository is.
        runner.hooks["cron"] = runner.hooks["slack"] = runner.hooks["github"]
    services.scheduler = Scheduler(
        catalog=catalog,
        runner=runner,
        reports=reports,
        wake=executor.wake,
        clones_repos=services.github is not None,
    )
    services.scheduler.sync(services.scheduler.wanted())
    services.slack, slack_why = start_slack_trigger(
        SlackParts(
            settings=settings,
            catalog=catalog,
            intake=intake,
            runner=runner,
            executor=executor,
            reports=reports,
        )
    )
    # Scheduled runs report to the Slack channel or GitHub issue their schedule names.
    reports.register_default(
        "cron",
        ScheduleReporter(
            slack=reports.reporters.get("slack"), github=reports.reporters.get("github")
        ),
    )
    services.triggers = {
        **trigger_states(settings),
        "github": (services.github is not None, github_why),
        "slack": (services.slack is not None, slack_why),
        "schedule": services.scheduler.state(),
    }
    _log_start(services)
    await executor.start()
    writer.start()
    await services.scheduler.start()
    # What start-up built (modules, the app, the engine) lives as long as the process: out of
    # the cyclic collector's sight, full collections stop walking it (~70 ms a time otherwise,
    # with the event loop stopped).
    gc.freeze()
    return services


async def _stop(services: Services) -> None:
    log.info("service_stopping")
    if services.scheduler is not None:
        await services.scheduler.stop()  # no new runs from schedules
    github = services.github
    if github is not None:
        await github.processor.stop()  # no new runs from comments
    await services.writer.stop()
    await services.executor.shutdown()
    # Runs' last reports go out through the GitHub client: it closes after them.
    await services.reports.stop()
    if services.tracing is not None:
        await asyncio.to_thread(services.tracing.close)  # bounded by the flush timeout
    if services.slack is not None:
        await services.slack.stop()
    if github is not None:
        await github.stop()
    services.ledger.close()
    log.info("service_stopped")


def _log_start(services: Services) -> None:
    settings = services.settings
    log.info(
        "service_starting",
        data_dir=str(settings.data_dir.resolve()),
        database=make_url(settings.ledger_url).render_as_string(hide_password=True),
        workflows_dir=str(settings.workflows_dir.resolve()),
        workflows=services.catalog.names(),
        invalid_workflows=[str(p) for p in services.catalog.problems],
        max_concurrent_runs=services.executor.config.max_concurrent_runs,
    )
    for name, (enabled, why) in services.triggers.items():
        log.info("trigger_enabled" if enabled else "trigger_disabled", trigger=name, reason=why)
    traced, why = opik_state(settings.opik)
    log.info("tracing_enabled" if traced else "tracing_disabled", reason=why)


def _checkouts(settings: Settings) -> Checkouts:
    """Where runs clone repositories, committing as the app's bot account."""
    bot = bare_login(settings.github.bot_name)
    return Checkouts(
        settings.runs_dir,
        author_name=f"{bot}[bot]",
        author_email=f"{bot}[bot]@users.noreply.github.com",
    )


def trigger_states(settings: Settings) -> dict[str, tuple[bool, str]]:
    """Which triggers are on, and why (a trigger without credentials stays off)."""
    return {
        "api": (
            (True, "LOOPWRIGHT_API_TOKEN is set")
            if settings.api_token
            else (False, "LOOPWRIGHT_API_TOKEN is not set")
        ),
        "github": trigger_state(settings.github),
        "slack": slack_trigger_state(settings.slack),
    }
