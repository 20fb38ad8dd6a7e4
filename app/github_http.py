"""How every GitHub request is sent: headers, bounded retries, errors mapped.

`GitHubTransport.request` is the one way out to GitHub. It sets GitHub's headers and the bearer
token and retries (at most `max_attempts` sends) on 5xx, on transport errors and on rate limits.
GitHub's rules: a 429, or a 403 carrying `retry-after`, `x-ratelimit-remaining: 0` or a "rate
limit" message, is a rate limit. It waits `retry-after` seconds when given, else until
`x-ratelimit-reset` when the quota is spent, else a minute; 5xx answers back off exponentially
(1, 2, 4 s) unless `retry-after` says otherwise. A wait longer than `max_wait` is not made: the
failure is final at once, since a retry before then would fail the same way. Writes are retried
too: a comment doubled after a 502 is a smaller harm than a reply that never arrives.

Errors:

    GitHubError              GitHub refused the request (`status`, GitHub's `message`)
    ├── GitHubNotFound       404: missing, or hidden from these credentials
    ├── GitHubForbidden      401, or a 403 that is not a rate limit
    ├── GitHubRateLimited    429 or a 403 rate limit, still refused after the last attempt
    ├── GitHubUnavailable    5xx, or no answer at all (`status` 0), after the last attempt
    └── GitHubBadResponse    a success whose body is not what GitHub documents

httpx exceptions never leave this module unmapped, and no message carries a token.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Literal, TypeVar

import httpx
import structlog

from app.github_auth import AccessToken

__all__ = [
    "API_VERSION",
    "GitHubBadResponse",
    "GitHubError",
    "GitHubForbidden",
    "GitHubNotFound",
    "GitHubRateLimited",
    "GitHubTransport",
    "GitHubUnavailable",
    "require",
]

log = structlog.get_logger("app.github")

API_VERSION = "2022-11-28"
Sleep = Callable[[float], Awaitable[None]]
_T = TypeVar("_T")
FailureKind = Literal["not_found", "forbidden", "rate_limited", "unavailable", "refused"]

BACKOFF_BASE_SECONDS = 1.0
"""The wait after the first failed attempt; it doubles with each further one."""
DEFAULT_RATE_LIMIT_WAIT = 60.0
"""GitHub asks for at least a minute when a rate limit names no time."""
RESET_MARGIN_SECONDS = 1.0
"""Added to a wait until `x-ratelimit-reset`, against clocks a little apart."""

_KINDS: dict[int, FailureKind] = {404: "not_found", 401: "forbidden", 403: "forbidden"}


@dataclass(frozen=True, kw_only=True)
class Failure:
    kind: FailureKind
    status: int
    message: str
    wait: float | None
    """Seconds to wait before the next attempt; None when no attempt should follow."""


class GitHubError(Exception):
    """GitHub refused a request.

    Args:
        status: the HTTP status (0 when no answer came).
        message: GitHub's `message` (or the transport error).
        request: the method and path, for the reader of the error.
        attempts: how many times the request was sent.
    """

    def __init__(self, status: int, message: str, *, request: str = "", attempts: int = 1) -> None:
        self.status = status
        self.message = message
        self.request = request
        self.attempts = attempts
        where = f" {request}" if request else ""
        text = f"GitHub{where} answered {status}: {message}"
        if status == 0:
            text = f"GitHub{where} did not answer: {message}"
        if attempts > 1:
            text += f" (after {attempts} attempts)"
        super().__init__(text)


class GitHubNotFound(GitHubError):
    pass


class GitHubForbidden(GitHubError):
    pass


class GitHubRateLimited(GitHubError):
    pass


class GitHubUnavailable(GitHubError):
    pass


class GitHubBadResponse(GitHubError):
    pass


_ERRORS: Mapping[FailureKind, type[GitHubError]] = {
    "not_found": GitHubNotFound,
    "forbidden": GitHubForbidden,
    "rate_limited": GitHubRateLimited,
    "unavailable": GitHubUnavailable,
    "refused": GitHubError,
}


class GitHubTransport:
    """Sends requests to the API root that `http.base_url` names.

    Args:
        http: the client requests go through (``https://api.github.com``,
            ``https://ghe.example.com/api/v3`` or a local stand-in).
        clock: wall-clock seconds since the epoch (`x-ratelimit-reset` is wall time).
        sleep: how retries wait.
        max_attempts: sends per request, the first included.
        max_wait: the longest single wait before a retry.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
        max_attempts: int = 4,
        max_wait: float = 60.0,
        user_agent: str = "loopwright",
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        self.http = http
        self._clock = clock
        self._sleep = sleep
        self._max_attempts = max_attempts
        self._max_wait = max_wait
        self._user_agent = user_agent

    async def request(
        self,
        method: str,
        path: str,
        token: AccessToken,
        *,
        json: object = None,
        params: Mapping[str, str] | None = None,
    ) -> Any:
        """Send until GitHub answers with success (returning the decoded JSON) or for good."""
        headers = {
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": API_VERSION,
            "Authorization": f"Bearer {token.reveal()}",
            "User-Agent": self._user_agent,
        }
        request = f"{method} {path}"
        for attempt in range(1, self._max_attempts + 1):
            try:
                response = await self.http.request(
                    method, path, headers=headers, json=json, params=params
                )
            except httpx.TransportError as exc:
                message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                failure = Failure(
                    kind="unavailable", status=0, message=message, wait=backoff_seconds(attempt)
                )
                cause: Exception | None = exc
            else:
                if response.is_success:
                    return _decode(response, request)
                failure = classify(response, self._clock(), attempt, self._max_wait)
                cause = None
            if failure.wait is None or attempt == self._max_attempts:
                error = _ERRORS[failure.kind](
                    failure.status, failure.message, request=request, attempts=attempt
                )
                raise error from cause
            log.info(
                "github_request_retrying",
                method=method,
                path=path,
                status=failure.status,
                attempt=attempt,
                wait_seconds=failure.wait,
            )
            await self._sleep(failure.wait)
        raise AssertionError("unreachable: the last attempt returns or raises")


def require(body: Any, name: str, kind: type[_T], request: str) -> _T:
    """`body[name]` when `body` is an object and the value has the type GitHub documents."""
    value = body.get(name) if isinstance(body, dict) else None
    # bool is an int to Python, never to GitHub's schema.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        message = f"{name!r} is missing or not a {kind.__name__}"
        raise GitHubBadResponse(200, message, request=request)
    return value


def _decode(response: httpx.Response, request: str) -> Any:
    if response.status_code == 204 or not response.content:
        return None
    try:
        return response.json()
    except ValueError as exc:
        status = response.status_code
        raise GitHubBadResponse(status, "the body is not JSON", request=request) from exc


def backoff_seconds(attempt: int) -> float:
    """1, 2, 4, ... seconds after attempts 1, 2, 3, ..."""
    return BACKOFF_BASE_SECONDS * 2.0 ** (attempt - 1)


def classify(response: httpx.Response, now: float, attempt: int, max_wait: float) -> Failure:
    """Map an unsuccessful response to a failure, with the wait before a retry if any."""
    status = response.status_code
    message = error_message(response)
    if _is_rate_limit(response, message):
        return _bounded("rate_limited", status, message, _rate_limit_wait(response, now), max_wait)
    if status >= 500:
        retry_after = _retry_after(response, now)
        wait = backoff_seconds(attempt) if retry_after is None else retry_after
        return _bounded("unavailable", status, message, wait, max_wait)
    return Failure(kind=_KINDS.get(status, "refused"), status=status, message=message, wait=None)


def error_message(response: httpx.Response) -> str:
    """GitHub's `message`, with the details of a validation failure (422) after it."""
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase or f"HTTP {response.status_code}"
    if not isinstance(body, dict) or not isinstance(body.get("message"), str):
        return response.reason_phrase or f"HTTP {response.status_code}"
    details = [_detail(item) for item in body.get("errors") or [] if isinstance(item, dict)]
    return "; ".join([body["message"], *[d for d in details if d]])


def _detail(item: dict[str, object]) -> str:
    if isinstance(item.get("message"), str):
        return str(item["message"])
    return " ".join(str(item[key]) for key in ("resource", "field", "code") if key in item)


def _is_rate_limit(response: httpx.Response, message: str) -> bool:
    if response.status_code == 429:
        return True
    if response.status_code != 403:
        return False
    headers = response.headers
    return (
        "retry-after" in headers
        or headers.get("x-ratelimit-remaining") == "0"
        or "rate limit" in message.lower()
    )


def _rate_limit_wait(response: httpx.Response, now: float) -> float:
    retry_after = _retry_after(response, now)
    if retry_after is not None:
        return retry_after
    reset = response.headers.get("x-ratelimit-reset")
    if response.headers.get("x-ratelimit-remaining") == "0" and reset is not None:
        try:
            seconds = float(reset) - now
        except ValueError:
            seconds = math.nan
        if math.isfinite(seconds):
            return max(seconds, 0.0) + RESET_MARGIN_SECONDS
    return DEFAULT_RATE_LIMIT_WAIT


def _retry_after(response: httpx.Response, now: float) -> float | None:
    """`Retry-After` in seconds, whether GitHub sent seconds or an HTTP date."""
    value: str | None = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - now
        except (TypeError, ValueError):
            return None
    return max(seconds, 0.0) if math.isfinite(seconds) else None


def _bounded(kind: FailureKind, status: int, message: str, wait: float, max_wait: float) -> Failure:
    if wait > max_wait:
        message = f"{message} (retry in {wait:.0f}s is beyond max_wait of {max_wait:g}s)"
        return Failure(kind=kind, status=status, message=message, wait=None)
    return Failure(kind=kind, status=status, message=message, wait=wait)
