"""`loopwright schedules`: each scheduled workflow with its next fire times, without litellm."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.schedule_views import list_schedules
from tests.app.test_schedules import workflow_text, write

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)  # a Saturday


@pytest.fixture
def workflows(tmp_path: Path) -> Path:
    directory = tmp_path / "workflows"
    write(directory, "nightly")
    weekly = workflow_text(
        "weekly", cron="0 3 * * 1", target="repo: acme/app", timezone="Europe/Berlin"
    )
    write(directory, "weekly", weekly)
    (directory / "plain.md").write_text("---\nname: plain\nexit: {checks: ['true']}\n---\nhi\n")
    (directory / "broken.md").write_text(workflow_text("broken", cron="0 3 * *"))
    return directory


def test_lists_each_schedule_with_its_next_fire_times(
    workflows: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    list_schedules(workflows, now=NOW, count=2, as_json=False)
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "nightly  '0 3 * * *' UTC  workdir /srv/app  reply slack C0123  grace 3600s",
        "    2025-03-02T03:00:00+00:00",
        "    2025-03-03T03:00:00+00:00",
        "weekly  '0 3 * * 1' Europe/Berlin  repo acme/app  reply slack C0123  grace 3600s",
        "    2025-03-03T03:00:00+01:00",  # Monday, as crontab counts days
        "    2025-03-10T03:00:00+01:00",
    ]
    assert "broken.md" in err
    assert "schedule.cron '0 3 * *'" in err


def test_json_and_an_empty_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path / "one", "nightly")
    list_schedules(tmp_path / "one", now=NOW, count=1, as_json=True)
    (view,) = json.loads(capsys.readouterr().out)
    assert view["next"] == ["2025-03-02T03:00:00+00:00"]
    assert view["target"] == "workdir /srv/app"

    (tmp_path / "none").mkdir()
    list_schedules(tmp_path / "none", now=NOW, count=1, as_json=False)
    assert "no scheduled workflows in" in capsys.readouterr().err


LIST_IN_A_PROCESS = """
import sys
from app.cli import main
status = main(["schedules", "--count", "1"])
assert "litellm" not in sys.modules, "litellm was imported"
assert main(["schedules", "--count", "0"]) == 2
sys.exit(status)
"""


def test_the_command_answers_without_importing_litellm(workflows: Path) -> None:
    env = {
        **os.environ,
        "LOOPWRIGHT_WORKFLOWS_DIR": str(workflows),
        "LOOPWRIGHT_LOG_FORMAT": "json",
    }
    done = subprocess.run(
        [sys.executable, "-c", LIST_IN_A_PROCESS],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].startswith("nightly  '0 3 * * *' UTC")
    assert "--count must be at least 1, not 0" in done.stderr
