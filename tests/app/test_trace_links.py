"""A run's trace link reaches those who look at the run: the API's run detail and the reports
that progress messages are made from."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.executor import ExecutorConfig
from app.opik_settings import OpikSettings
from app.service import create_app
from app.settings import Settings
from loops.reporting import RunReport
from loops.testing import FunctionModel, reply
from tests.app.api_support import TOKEN, serve, write_workflows
from tests.support.opik_recorder import OpikRecorder


class Collected:
    def __init__(self) -> None:
        self.reports: list[RunReport] = []

    async def report(self, report: RunReport) -> None:
        self.reports.append(report)


@pytest.fixture
def opik() -> Iterator[OpikRecorder]:
    with OpikRecorder() as recorder:
        yield recorder


def settings(tmp_path: Path, opik: OpikSettings) -> Settings:
    return Settings(
        data_dir=tmp_path / "var",
        database_url=None,
        workflows_dir=write_workflows(tmp_path),
        api_token=TOKEN,
        opik=opik,
    )


async def test_the_api_and_the_reports_carry_the_trace_link(tmp_path: Path, opik: OpikRecorder):
    collected = Collected()
    config = OpikSettings(url_override=opik.url, project_name="links", default_flush_timeout=2)
    app = create_app(
        settings(tmp_path, config),
        model=FunctionModel(lambda _: reply("done")),
        reporters={"api": collected},
        executor_config=ExecutorConfig(poll_seconds=0.05, shutdown_grace_seconds=1.0),
    )
    async with serve(app) as api:
        run_id = (await api.submit(workflow="quick", instruction="hi")).json()["run_id"]
        detail = await api.wait_for(run_id, "passed")
        async with asyncio.timeout(5):
            while not any(r.kind == "finished" for r in collected.reports):
                await asyncio.sleep(0.02)

    link = detail["trace_url"]
    assert link.startswith(opik.url.rstrip("/") + "/")
    assert "trace_id=" in link
    finished = [r for r in collected.reports if r.kind == "finished"]
    assert [r.trace_url for r in finished] == [link]


async def test_without_opik_there_is_no_link(tmp_path: Path):
    app = create_app(
        settings(tmp_path, OpikSettings()),
        model=FunctionModel(lambda _: reply("done")),
        executor_config=ExecutorConfig(poll_seconds=0.05, shutdown_grace_seconds=1.0),
    )
    async with serve(app) as api:
        run_id = (await api.submit(workflow="quick")).json()["run_id"]
        detail = await api.wait_for(run_id, "passed")

    assert detail["trace_url"] is None
