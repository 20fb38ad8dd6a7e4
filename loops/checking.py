"""The checker port: grades a maker turn. Implementations live in the `checkers` package."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from loops.model import ModelPort


@dataclass(frozen=True, kw_only=True)
class CheckResult:
    """The outcome of one check (a command, or the judge)."""

    name: str
    passed: bool
    findings: str = ""
    exit_code: int | None = None
    score: float | None = None
    duration_s: float = 0.0


@dataclass(frozen=True, kw_only=True)
class Verdict:
    passed: bool
    results: tuple[CheckResult, ...] = ()

    @property
    def findings(self) -> str:
        """What failed, in check order: the maker's next instruction."""
        return "\n\n".join(
            f"## {r.name} failed\n{r.findings}".rstrip() for r in self.results if not r.passed
        )


@dataclass(frozen=True, kw_only=True)
class CheckContext:
    """What a checker may look at.

    Attributes:
        workspace: the directory the maker worked in.
        summary: the maker's final answer for the turn.
        load_diff: produces the workspace's changes (``git diff``, possibly truncated); only
            checkers that read the diff pay for it, through `diff()`.
        model: a model port already metered against the run's brakes (for judges).
        env: the environment for check commands (already scrubbed of secrets).
        timeout: seconds any single check may take (bounded by the run's wall-time brake).
    """

    workspace: Path
    summary: str
    model: ModelPort
    env: dict[str, str]
    timeout: float
    turn: int = 1
    load_diff: Callable[[], Awaitable[str]] = field(default=lambda: _no_diff())

    async def diff(self) -> str:
        return await self.load_diff()


async def _no_diff() -> str:
    return ""


class Checker(Protocol):
    async def check(self, ctx: CheckContext) -> Verdict: ...
