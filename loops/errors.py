"""Errors raised by the loop core.

    LoopwrightError
    ├── WorkflowError          a workflow file is invalid (carries every problem found)
    ├── WorkspaceError         a path escapes the workspace, or the workspace cannot be prepared
    ├── BrakeTripped           a budget (turns, tokens, dollars, wall time) is exhausted
    └── ModelError             a model call failed
        ├── ModelRetryableError   worth retrying with backoff
        │   ├── ModelRateLimited     429; may carry the server's Retry-After
        │   ├── ModelUnavailable     5xx or the connection failed
        │   └── ModelTimeout         no answer within per_call_timeout_seconds
        └── ModelRequestError      the request itself is wrong (auth, bad model, 4xx): not retried

Foreign exceptions (litellm, httpx) are mapped at the boundary with `raise ... from exc`.
"""

from __future__ import annotations

from dataclasses import dataclass


class LoopwrightError(Exception):
    """Base of every error the loop core raises on purpose."""


@dataclass(frozen=True, kw_only=True)
class WorkflowProblem:
    """One problem in a workflow file, located by line (1-based; 0 when unknown)."""

    path: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


class WorkflowError(LoopwrightError):
    def __init__(self, problems: list[WorkflowProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class WorkspaceError(LoopwrightError):
    pass


class BrakeTripped(LoopwrightError):
    """A brake stopped the run.

    Args:
        brake: the brake's field name in `Brakes` (for example ``"max_cost_usd"``).
        limit: the configured limit.
        observed: the value that reached or would have passed the limit.
    """

    def __init__(self, brake: str, limit: float, observed: float, detail: str = "") -> None:
        self.brake = brake
        self.limit = limit
        self.observed = observed
        message = f"{brake} of {limit:g} reached (observed={_fmt(observed)})"
        super().__init__(f"{message}: {detail}" if detail else message)


def _fmt(value: float) -> str:
    return f"{value:.4f}" if isinstance(value, float) and not value.is_integer() else f"{value:g}"


class ModelError(LoopwrightError):
    pass


class ModelRetryableError(ModelError):
    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ModelRateLimited(ModelRetryableError):
    pass


class ModelUnavailable(ModelRetryableError):
    pass


class ModelTimeout(ModelRetryableError):
    pass


class ModelRequestError(ModelError):
    pass
