"""The real service with its GitHub trigger on, against the local GitHub stand-in.

Deliveries are posted through the app as GitHub sends them: the raw body, signed for real with
`triggers.github.sign_body`, with the event, delivery and hook headers.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from fastapi import FastAPI

from app.executor import ExecutorConfig
from app.github_client import GitHubClient
from app.github_commands import CommandConfig
from app.github_replies import MARKER
from app.ledger_schema import jobs
from app.service import Services, create_app
from app.settings import GitHubSettings, Settings
from loops.model import ModelPort
from loops.testing import reply
from tests.app.api_support import write_workflows
from tests.support.github_server import FakeGitHub
from tests.triggers.github_files import FIXTURES, PR_COMMENT
from triggers.github import sign_body

SECRET = "It's a Secret to Everybody"
TOKEN = "ghp_loopwright_test_token"
BOT = "loopwright"
REPO = "runatlantis/atlantis-tests"
REVIEW_REPO = "Codertocat/Hello-World"
REVIEW_COMMENT = "pull_request_review_comment__created.payload.json"
AUTHOR = "runatlantis"
HOOK_ID = "4242"
FAST = CommandConfig(poll_seconds=0.05, retry_seconds=0.05, stop_grace_seconds=2.0)


def done(_request: Any) -> Any:
    """A maker that answers at once (with `quick`, a run passes after one turn)."""
    return reply("nothing to change")


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(fixture_bytes(name))
    return loaded


def github_settings(server: FakeGitHub | None, **overrides: Any) -> GitHubSettings:
    values: dict[str, Any] = {"webhook_secret": SECRET, "token": TOKEN, "bot_name": BOT}
    if server is not None:
        values["api_url"] = server.url
    values.update(overrides)
    return GitHubSettings(**values)


def github_app(
    tmp_path: Path,
    model: ModelPort,
    github: GitHubSettings,
    *,
    client: GitHubClient | None = None,
    config: CommandConfig = FAST,
) -> FastAPI:
    settings = Settings(
        data_dir=tmp_path / "var",
        database_url=None,
        workflows_dir=write_workflows(tmp_path),
        default_workflow="quick",
        github=github,
    )
    executor = ExecutorConfig(poll_seconds=0.1, watch_seconds=0.1, shutdown_grace_seconds=1.0)
    return create_app(
        settings, model=model, executor_config=executor, github=client, github_config=config
    )


@dataclass
class Hook:
    """The service as GitHub's webhook sender sees it."""

    client: httpx.AsyncClient
    services: Services

    async def deliver(
        self,
        event: str,
        body: bytes | dict[str, Any],
        *,
        delivery: str | None = None,
        secret: str = SECRET,
        signature: str | None = None,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        sent = {
            "content-type": content_type,
            "x-github-event": event,
            "x-github-delivery": delivery or str(uuid.uuid4()),
            "x-github-hook-id": HOOK_ID,
            "x-hub-signature-256": signature or sign_body(raw, secret),
            "user-agent": "GitHub-Hookshot/0878b99",
            **(headers or {}),
        }
        return await self.client.post("/webhooks/github", content=raw, headers=sent)

    async def processed(self, delivery: str, *, timeout: float = 10.0) -> str:
        """The outcome of a delivery once it has been processed."""
        key = f"{HOOK_ID}:{delivery}"
        async with asyncio.timeout(timeout):
            while True:
                found = await asyncio.to_thread(self.services.deliveries.outcome, "github", key)
                if found is not None and found[0] is not None:
                    return found[1]
                await asyncio.sleep(0.02)

    def count_jobs(self) -> int:
        with self.services.ledger.transaction(write=False) as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(jobs)).scalar_one())

    async def wait_for_run(
        self, run_id: str, *statuses: str, timeout: float = 10.0
    ) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                run = await asyncio.to_thread(self.services.ledger.get_run, run_id)
                assert run is not None
                if run.status in statuses:
                    return {"status": run.status, "run": run}
                await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def serve_hook(app: FastAPI) -> AsyncIterator[Hook]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://loopwright.test") as c:
            yield Hook(client=c, services=app.state.services)


def stand_in(server: FakeGitHub, *, role: str = "write") -> None:
    """The two repositories of the comment fixtures, their pull requests, and the author."""
    server.add_plain_token(TOKEN, login=BOT)
    server.add_repo(REPO, clone_url="/srv/git/atlantis-tests.git")
    server.add_pull(REPO, 1, head_ref="feature")
    server.set_role(REPO, AUTHOR, role)
    server.add_repo(REVIEW_REPO, clone_url="/srv/git/hello-world.git", default_branch="master")
    server.add_pull(REVIEW_REPO, 2, head_ref="changes")
    server.set_role(REVIEW_REPO, "Codertocat", role)


def pr_comment(
    server: FakeGitHub, body: str, *, author: str = AUTHOR, **user: Any
) -> dict[str, Any]:
    """The real PR comment delivery, with `body` as a comment the stand-in knows."""
    payload = copy.deepcopy(fixture(PR_COMMENT))
    payload["comment"]["id"] = server.add_comment(REPO, 1, body)
    payload["comment"]["body"] = body
    payload["comment"]["user"].update({"login": author, **user})
    return payload


def review_comment(server: FakeGitHub, body: str) -> dict[str, Any]:
    payload = copy.deepcopy(fixture(REVIEW_COMMENT))
    payload["comment"]["id"] = server.add_comment(REVIEW_REPO, 2, body, kind="review")
    payload["comment"]["body"] = body
    return payload


PROGRESS_HEADING = f"{MARKER}\n**Loopwright run "


def replies_on(server: FakeGitHub, repo: str = REPO, number: int = 1) -> list[str]:
    """The bodies of the replies the service posted on a pull request, in order (its progress
    comments aside: see `progress_on`)."""
    return [b for b in _posted_on(server, repo, number) if not b.startswith(PROGRESS_HEADING)]


def progress_on(server: FakeGitHub, repo: str = REPO, number: int = 1) -> list[str]:
    """The bodies of the service's progress comments on a pull request, in order."""
    return [b for b in _posted_on(server, repo, number) if b.startswith(PROGRESS_HEADING)]


def _posted_on(server: FakeGitHub, repo: str, number: int) -> list[str]:
    with server.lock:
        return [
            c.body
            for c in server.comments.values()
            if c.repo == repo and c.number == number and c.user == BOT
        ]


def reactions_on(server: FakeGitHub, comment_id: int) -> list[tuple[str, str]]:
    with server.lock:
        return [
            (r["kind"], r["content"]) for r in server.reactions if r["comment_id"] == comment_id
        ]


async def comment(hook: Hook, payload: dict[str, Any], event: str = "issue_comment") -> str:
    """Deliver a comment and wait until it is processed; returns the outcome."""
    delivery = str(uuid.uuid4())
    response = await hook.deliver(event, payload, delivery=delivery)
    assert response.status_code == 202, response.text
    return await hook.processed(delivery)


def jobs_of(hook: Hook) -> list[Any]:
    """Each run with its job, newest first."""
    runs, _ = hook.services.ledger.list_runs(limit=50)
    return [(run, hook.services.ledger.get_job(run.job_id)) for run in runs]
