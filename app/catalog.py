"""The service's workflows: loaded from the workflows directory, reloaded when files change.

An edit that breaks a workflow keeps the last good version of it in service (and logs why), so a
typo in a file never takes a working command away.
"""

from __future__ import annotations

import threading
from pathlib import Path

import structlog

from loops.errors import WorkflowProblem
from loops.workflow_files import load_workflows
from loops.workflows import Workflow

log = structlog.get_logger("app.catalog")

Signature = tuple[tuple[str, float, int], ...]


class WorkflowCatalog:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._signature: Signature | None = None
        self._workflows: dict[str, Workflow] = {}
        self.problems: list[WorkflowProblem] = []

    def get(self, name: str) -> Workflow | None:
        return self.current().get(name)

    def names(self) -> list[str]:
        return sorted(self.current())

    def current(self) -> dict[str, Workflow]:
        """The workflows now; re-reads the directory only when a file changed (a few stats)."""
        signature = self._scan()
        with self._lock:
            if signature != self._signature:
                self._reload(signature)
            return dict(self._workflows)

    def _scan(self) -> Signature:
        try:
            files = sorted(self.directory.glob("*.md"))
        except OSError:
            return ()
        entries = []
        for path in files:
            try:
                stat = path.stat()
            except OSError:
                continue
            entries.append((path.name, stat.st_mtime, stat.st_size))
        return tuple(entries)

    def _reload(self, signature: Signature) -> None:
        found, problems = load_workflows(self.directory)
        broken = {Path(p.path).name for p in problems}
        kept = {
            name: wf
            for name, wf in self._workflows.items()
            if name not in found and Path(wf.path).name in broken
        }
        for problem in problems:
            log.error(
                "workflow_invalid", path=problem.path, line=problem.line, reason=problem.reason
            )
        if kept:
            log.warning("workflow_last_good_version_kept", workflows=sorted(kept))
        previous = set(self._workflows)
        self._workflows = {**kept, **found}
        self.problems = problems
        self._signature = signature
        if self._workflows.keys() != previous:
            log.info("workflows_loaded", workflows=sorted(self._workflows))
