"""The workflow catalog: hot reload, looking at the directory at most once per interval."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.catalog import WorkflowCatalog

QUICK = "---\nname: {name}\nexit: {{checks: ['true']}}\n---\n{{{{ instruction }}}}\n"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def write(directory: Path, name: str, text: str | None = None) -> None:
    (directory / f"{name}.md").write_text(text or QUICK.format(name=name), encoding="utf-8")


def test_changes_are_seen_once_the_recheck_interval_has_passed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "one")
    clock = Clock()
    catalog = WorkflowCatalog(tmp_path, recheck_seconds=1.0, clock=clock)
    assert catalog.names() == ["one"]

    write(tmp_path, "two")
    looked: list[str] = []
    monkeypatch.setattr(Path, "glob", lambda self, pattern: looked.append(pattern) or iter(()))
    clock.now += 0.5
    assert not catalog.due()
    assert catalog.get("two") is None
    assert looked == []  # within the interval a lookup touches only memory
    monkeypatch.undo()

    clock.now += 0.5
    assert catalog.due()
    two = catalog.get("two")
    assert two is not None
    assert two.name == "two"
    assert catalog.names() == ["one", "two"]


def test_a_broken_edit_keeps_the_last_good_version(tmp_path: Path) -> None:
    write(tmp_path, "one")
    clock = Clock()
    catalog = WorkflowCatalog(tmp_path, clock=clock)
    good = catalog.get("one")
    assert good is not None

    write(tmp_path, "one", "---\nname: one\ntools: [teleport]\n---\nhi\n")
    clock.now += 1.0

    assert catalog.get("one") == good
    assert {Path(p.path).name for p in catalog.problems} == {"one.md"}
