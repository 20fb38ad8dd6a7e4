"""A pytest plugin: every regression case file collected becomes a test that replays it.

`regress export` writes a ``conftest.py`` importing `pytest_collect_file` from here beside the
cases, so ``pytest regressions/`` replays them: a case that regresses fails with its report
line, one that cannot be replayed (no recorded answers, no starting point) is skipped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.regress_cases import CASE_SUFFIX, read_case


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix == CASE_SUFFIX and not file_path.name.startswith("."):
        return CaseFile.from_parent(parent, path=file_path)
    return None


class CaseFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        yield CaseItem.from_parent(self, name=self.path.stem)


class CaseFailed(Exception):
    pass


class CaseItem(pytest.Item):
    def runtest(self) -> None:
        from app.regress_replay import CaseRunner
        from app.settings import load_settings

        try:
            case = read_case(self.path)
        except ValueError as exc:
            raise CaseFailed(str(exc)) from exc
        result = asyncio.run(CaseRunner(settings=load_settings()).replay(case, self.path))
        if result.verdict == "skipped":
            pytest.skip(result.line())
        if result.regressed:
            raise CaseFailed(result.line())

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, CaseFailed):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo, style=style))

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"regression case {self.name}"
