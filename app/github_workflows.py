"""The workflows a repository's comments may run: the service's own, then the repository's.

A repository adds workflows as `.loopwright/workflows/<name>.md` on its default branch; they
are read from there and never from a pull request's head, so a pull request cannot change what
its own commands run or loosen their brakes. The service's workflows win over a repository's
file of the same name. What a repository holds is remembered for `ttl` seconds.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from app.catalog import WorkflowCatalog
from app.github_client import GitHubBadResponse, GitHubClient
from loops.errors import WorkflowError
from loops.workflow_files import parse_workflow
from loops.workflows import Workflow
from triggers.commands import WORKFLOW_NAME_PATTERN

REPO_WORKFLOWS_DIR = ".loopwright/workflows"
_SUFFIX = ".md"
_NAME = re.compile(WORKFLOW_NAME_PATTERN)


@dataclass(frozen=True)
class BrokenWorkflow:
    """A repository's workflow file that does not parse; `reason` is meant for the commenter."""

    reason: str


Lookup = Workflow | BrokenWorkflow | None


@dataclass
class _RepoEntry:
    branch: str
    fetched_at: float
    names: list[str] | None = None
    found: dict[str, Lookup] = field(default_factory=dict)


class RepoWorkflows:
    """Finds workflows for one repository at a time; meant for a single task (not locked).

    Raises from every method what `GitHubClient` raises (`GitHubError`) when GitHub fails.
    """

    def __init__(
        self,
        catalog: WorkflowCatalog,
        github: GitHubClient,
        *,
        ttl: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._catalog = catalog
        self._github = github
        self._ttl = ttl
        self._clock = clock
        self._repos: dict[str, _RepoEntry] = {}

    async def find(self, repo: str, name: str, *, installation_id: int | None = None) -> Lookup:
        """The workflow `name` means for `repo`, a reason why its file is broken, or None."""
        workflow = await asyncio.to_thread(self._catalog.get, name)
        if workflow is not None:
            return workflow
        entry = await self._entry(repo, installation_id)
        if name not in entry.found:
            entry.found[name] = await self._load(repo, entry.branch, name, installation_id)
        return entry.found[name]

    async def names(self, repo: str, *, installation_id: int | None = None) -> list[str]:
        """Every workflow name `repo` can run, the service's and its own, sorted."""
        service = await asyncio.to_thread(self._catalog.names)
        entry = await self._entry(repo, installation_id)
        if entry.names is None:
            files = await self._github.list_dir(
                repo, REPO_WORKFLOWS_DIR, entry.branch, installation_id=installation_id
            )
            entry.names = [
                file.removesuffix(_SUFFIX)
                for file in files
                if file.endswith(_SUFFIX) and _NAME.fullmatch(file.removesuffix(_SUFFIX))
            ]
        return sorted({*service, *entry.names})

    async def _entry(self, repo: str, installation_id: int | None) -> _RepoEntry:
        entry = self._repos.get(repo.lower())
        now = self._clock()
        if entry is None or now - entry.fetched_at >= self._ttl:
            repository = await self._github.repository(repo, installation_id=installation_id)
            entry = _RepoEntry(branch=repository.default_branch, fetched_at=now)
            self._repos[repo.lower()] = entry
        return entry

    async def _load(
        self, repo: str, branch: str, name: str, installation_id: int | None
    ) -> Workflow | BrokenWorkflow | None:
        path = f"{REPO_WORKFLOWS_DIR}/{name}{_SUFFIX}"
        where = f"{path} on {branch!r}"
        try:
            text = await self._github.file_text(repo, path, branch, installation_id=installation_id)
        except GitHubBadResponse as exc:  # over 1 MB, or not base64: no retry will help
            return BrokenWorkflow(f"{where} cannot be read: {exc.message}")
        if text is None:
            return None
        try:
            workflow = parse_workflow(text.removeprefix("\ufeff"), f"{repo}@{branch}:{path}")
        except WorkflowError as exc:
            problems = "; ".join(f"line {p.line}: {p.reason}" for p in exc.problems[:3])
            return BrokenWorkflow(f"{where} is invalid: {problems}")
        if workflow.name != name:
            return BrokenWorkflow(f"{where} declares the name {workflow.name!r}, not {name!r}")
        return workflow
