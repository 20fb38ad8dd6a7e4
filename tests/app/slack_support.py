"""The real service with its Slack trigger on, and requests signed for real as Slack signs them.

Bodies are signed with slack_sdk's `SignatureVerifier.generate_signature` (the verifier the
service uses) at the current time, and posted through the app in-process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
from fastapi import FastAPI

from app.executor import ExecutorConfig
from app.service import Services, create_app
from app.settings import Settings, SlackSettings
from loops.model import ModelPort
from tests.app.api_support import write_workflows
from triggers.slack import signature_verifier

SECRET = "slack-signing-secret"
FIXTURES = Path("/work/shared/fixtures/slack")


def slack_app(tmp_path: Path, model: ModelPort, slack: SlackSettings) -> FastAPI:
    settings = Settings(
        data_dir=tmp_path / "var",
        database_url=None,
        workflows_dir=write_workflows(tmp_path),
        default_workflow="quick",
        slack=slack,
    )
    executor = ExecutorConfig(poll_seconds=0.1, watch_seconds=0.1, shutdown_grace_seconds=1.0)
    return create_app(settings, model=model, executor_config=executor)


def signed_headers(body: bytes, *, secret: str = SECRET, at: float | None = None) -> dict[str, str]:
    timestamp = str(int(time.time() if at is None else at))
    signature = signature_verifier(secret).generate_signature(timestamp=timestamp, body=body)
    assert signature is not None
    content_type = (
        "application/json" if body.startswith(b"{") else "application/x-www-form-urlencoded"
    )
    return {
        "content-type": content_type,
        "x-slack-request-timestamp": timestamp,
        "x-slack-signature": signature,
    }


def slash_form(
    text: str, *, response_url: str, trigger_id: str = "1.2.abc", **fields: str
) -> bytes:
    values = {
        "token": "verification_token",
        "team_id": "T111",
        "team_domain": "test-domain",
        "channel_id": "C111",
        "channel_name": "random",
        "user_id": "W111",
        "user_name": "primary-owner",
        "command": "/loop",
        "text": text,
        "response_url": response_url,
        "trigger_id": trigger_id,
        **fields,
    }
    return urlencode(values).encode()


def mention(text: str, *, event_id: str, ts: str, thread_ts: str | None = None) -> bytes:
    event: dict[str, Any] = {
        "type": "app_mention",
        "user": "U061F7AUR",
        "text": f"<@U0LOOPBOT> {text}",
        "ts": ts,
        "channel": "C123ABC456",
        "event_ts": ts,
    }
    if thread_ts:
        event["thread_ts"] = thread_ts
    payload = {
        "token": "XXYYZZ",
        "team_id": "T123ABC456",
        "api_app_id": "A123ABC456",
        "event": event,
        "type": "event_callback",
        "event_id": event_id,
        "event_time": int(time.time()),
    }
    return json.dumps(payload).encode()


@dataclass
class Slack:
    """The service as Slack sees it."""

    client: httpx.AsyncClient
    services: Services

    async def command(self, body: bytes, **headers: str) -> httpx.Response:
        sent = {**signed_headers(body), **headers}
        return await self.client.post("/webhooks/slack/commands", content=body, headers=sent)

    async def event(self, body: bytes, **headers: str) -> httpx.Response:
        sent = {**signed_headers(body), **headers}
        return await self.client.post("/webhooks/slack/events", content=body, headers=sent)

    async def wait_for_run(self, run_id: str, *statuses: str, timeout: float = 10.0) -> Any:
        async with asyncio.timeout(timeout):
            while True:
                run = await asyncio.to_thread(self.services.ledger.get_run, run_id)
                assert run is not None
                if run.status in statuses:
                    return run
                await asyncio.sleep(0.05)

    def runs(self) -> list[Any]:
        found, _ = self.services.ledger.list_runs(limit=50)
        return found


@contextlib.asynccontextmanager
async def serve_slack(app: FastAPI) -> AsyncIterator[Slack]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://loopwright.test") as c:
            yield Slack(client=c, services=app.state.services)


async def until(check: Any, *, timeout: float = 10.0) -> Any:
    """Wait until `check()` returns something truthy; returns it."""
    async with asyncio.timeout(timeout):
        while not (found := check()):
            await asyncio.sleep(0.02)
        return found
