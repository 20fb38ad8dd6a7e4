"""A loop job: what a trigger asks for, normalized and independent of where it came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Source = Literal["cli", "api", "github", "slack", "cron"]
RunStatus = Literal["queued", "running", "passed", "braked", "stuck", "cancelled", "errored"]
ACTIVE_STATUSES: frozenset[RunStatus] = frozenset({"queued", "running"})
STOPPED_STATUSES: frozenset[RunStatus] = frozenset({"braked", "stuck", "cancelled", "errored"})
"""Ended without passing, and can go on: what `/loop resume` picks up, and what a progress
message tells how to resume."""
RESUMABLE_STATUSES: frozenset[RunStatus] = frozenset(
    {"braked", "stuck", "cancelled", "errored", "running"}
)


@dataclass(frozen=True, kw_only=True)
class LoopJob:
    """One request to run a workflow.

    Attributes:
        idempotency_key: a second job with the same key is the same job (a webhook redelivery,
            a schedule firing seen by two replicas).
        concurrency_key: runs sharing it run one at a time (a PR, a Slack thread, a schedule).
        reply: where progress goes back to, in the trigger's own terms (opaque to the core).
    """

    workflow: str
    source: Source
    instruction: str = ""
    idempotency_key: str | None = None
    concurrency_key: str | None = None
    workdir: str | None = None
    repo: str | None = None
    pr: int | None = None
    requested_by: str | None = None
    model: str | None = None
    reply: dict[str, str] = field(default_factory=dict)
