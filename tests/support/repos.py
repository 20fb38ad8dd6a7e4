"""Small real git repositories for end-to-end tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BUGGY = "def add(a, b):\n    return a - b\n"
FIXED = "def add(a, b):\n    return a + b\n"
TEST = "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"

WORKFLOW = f"""\
---
name: fix-calc
description: Make the calculator tests pass
workspace: repo
tools: [read_file, write_file, list_files, search, run, note]
brakes: {{max_turns: 6, max_steps_per_turn: 10, max_cost_usd: 1.0, max_wall_seconds: 300}}
exit:
  checks:
    - run: {sys.executable} -m pytest -q -p no:cacheprovider -p no:opik test_calc.py
      name: pytest
  passes: 2
---
{{{{ instruction }}}}

{{% if findings %}}Checker findings from the last turn:
{{{{ findings }}}}{{% endif %}}
"""


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def calc_repo(root: Path) -> Path:
    """A repository whose only test fails until `add` is fixed."""
    repo = root / "calc"
    repo.mkdir()
    (repo / "calc.py").write_text(BUGGY)
    (repo / "test_calc.py").write_text(TEST)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "calc with a bug")
    return repo


def workflows_dir(root: Path) -> Path:
    path = root / "workflows"
    path.mkdir()
    (path / "fix-calc.md").write_text(WORKFLOW)
    return path
