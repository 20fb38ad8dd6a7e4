"""A real service (ledger, executor, catalog) behind an in-process HTTP client, for API tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from app.executor import ExecutorConfig
from app.service import Services, create_app
from app.settings import Settings
from loops.model import ModelPort
from loops.reporting import Reporter

TOKEN = "s3cret-api-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

WORKFLOWS = {
    # Passes after the first turn; needs no workdir.
    "quick": """\
---
name: quick
workspace: none
tools: [run]
brakes: {max_turns: 3, max_steps_per_turn: 5, max_wall_seconds: 120}
exit:
  checks: ["true"]
---
{{ instruction }}
""",
    # Never passes: braked after one turn.
    "failing": """\
---
name: failing
workspace: none
tools: [run]
brakes: {max_turns: 1, max_steps_per_turn: 5, max_wall_seconds: 120}
exit:
  checks: ["false"]
---
{{ instruction }}
""",
    # Works in a directory the job names; passes once the maker has written done.txt.
    "in-repo": """\
---
name: in-repo
workspace: repo
tools: [run, write_file]
brakes: {max_turns: 1, max_steps_per_turn: 5, max_wall_seconds: 120}
exit:
  checks: ["test -f done.txt"]
---
{{ instruction }}
{% if findings %}{{ findings }}{% endif %}
""",
}


def write_workflows(root: Path) -> Path:
    directory = root / "workflows"
    directory.mkdir(exist_ok=True)
    for name, text in WORKFLOWS.items():
        (directory / f"{name}.md").write_text(text)
    return directory


def api_app(
    tmp_path: Path,
    model: ModelPort,
    *,
    token: str | None = TOKEN,
    reporters: dict[str, Reporter] | None = None,
    max_concurrent_runs: int = 4,
) -> FastAPI:
    settings = Settings(
        data_dir=tmp_path / "var",
        database_url=None,
        workflows_dir=write_workflows(tmp_path),
        api_token=token,
    )
    config = ExecutorConfig(
        max_concurrent_runs=max_concurrent_runs,
        poll_seconds=0.1,
        watch_seconds=0.1,
        shutdown_grace_seconds=1.0,
    )
    return create_app(settings, model=model, reporters=reporters, executor_config=config)


@dataclass
class Api:
    client: httpx.AsyncClient
    services: Services

    async def submit(self, **body: Any) -> httpx.Response:
        return await self.client.post("/api/jobs", json=body)

    async def run(self, run_id: str) -> dict[str, Any]:
        response = await self.client.get(f"/api/runs/{run_id}")
        assert response.status_code == 200, response.text
        detail: dict[str, Any] = response.json()
        return detail

    async def wait_for(self, run_id: str, *statuses: str, timeout: float = 15.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                detail = await self.run(run_id)
                if detail["status"] in statuses:
                    return detail
                await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def serve(app: FastAPI, *, headers: dict[str, str] | None = None) -> AsyncIterator[Api]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://loopwright.test", headers=headers or AUTH
        ) as client:
            yield Api(client=client, services=app.state.services)
