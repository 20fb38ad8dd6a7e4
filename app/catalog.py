"""The service's workflows: loaded from the workflows directory, reloaded when files change.

The directory is looked at (a glob and a stat per file) at most once per `recheck_seconds`, not
on every lookup: an edit is in service within that time, and a lookup in between touches nothing
but memory.

An edit that breaks a workflow keeps the last good version of it in service (and logs why), so a
typo in a file never takes a working command away.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from loops.errors import WorkflowProblem
from loops.workflow_files import load_workflows
from loops.workflows import Workflow

log = structlog.get_logger("app.catalog")

Signature = tuple[tuple[str, float, int], ...]


class WorkflowCatalog:
    def __init__(
        self,
        directory: Path,
        *,
        recheck_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory = directory
        self.recheck_seconds = recheck_seconds
        self._clock = clock
        self._checked_at: float | None = None
        self._lock = threading.Lock()
        self._signature: Signature | None = None
        self._workflows: dict[str, Workflow] = {}
        self.problems: list[WorkflowProblem] = []

    def get(self, name: str) -> Workflow | None:
        return self._fresh().get(name)

    def names(self) -> list[str]:
        return sorted(self.current())

    def current(self) -> dict[str, Workflow]:
        """The workflows now; re-reads the directory when a file changed, looking at most once
        per `recheck_seconds`."""
        return dict(self._fresh())

    def _fresh(self) -> dict[str, Workflow]:
        # The dict is replaced on reload, never changed in place, so it is safe to read unlocked.
        with self._lock:
            if self.due():
                self._checked_at = self._clock()
                signature = self._scan()
                if signature != self._signature:
                    self._reload(signature)
            return self._workflows

    def due(self) -> bool:
        """Whether the next lookup will look at the directory (and so touch the disk)."""
        checked = self._checked_at
        return checked is None or self._clock() - checked >= self.recheck_seconds

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
