"""State, JSON shapes and the fake clock of the GitHub stand-in (`tests.support.github_server`)."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

DOCS = "https://docs.github.com/rest"


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    """Without the API prefix and the query string."""
    query: dict[str, str]
    headers: dict[str, str]
    """Names in lower case."""
    json: Any


@dataclass
class Scripted:
    """An answer given instead of the real one, `times` times, to requests for `path`."""

    path: str
    status: int
    """0 closes the connection without an answer."""
    message: str = "scripted failure"
    headers: dict[str, str] = field(default_factory=dict)
    method: str | None = None
    times: int = 1


@dataclass
class RepoState:
    full_name: str
    clone_url: str
    default_branch: str = "main"
    private: bool = False
    files: dict[str, dict[str, str]] = field(default_factory=dict)
    """ref -> path -> text."""
    issues: set[int] = field(default_factory=set)
    roles: dict[str, tuple[str, str]] = field(default_factory=dict)
    """login (lower case) -> (role_name, legacy permission)."""
    permissions: dict[str, bool] = field(
        default_factory=lambda: dict.fromkeys(("admin", "maintain", "push", "triage", "pull"), True)
    )
    """What a plain token's user may do, as `GET /repos/{repo}` reports it."""


@dataclass
class PullState:
    repo: str
    number: int
    head_ref: str
    head_sha: str
    head_repo: str | None
    head_clone_url: str | None
    base_ref: str
    state: str = "open"
    maintainer_can_modify: bool = False


@dataclass
class CommentState:
    id: int
    repo: str
    kind: str
    """"issue" or "review"."""
    number: int
    body: str
    user: str
    created_at: str
    updated_at: str


@dataclass
class Answer:
    status: int
    payload: Any
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Caller:
    """Who a request's credentials belong to."""

    kind: str
    """"app", "installation" or "token"."""
    login: str
    installation_id: int | None = None


def error(status: int, message: str) -> Answer:
    return Answer(status, {"message": message, "documentation_url": DOCS, "status": str(status)})


def validation_failed(resource: str, name: str, code: str) -> Answer:
    answer = error(422, "Validation Failed")
    answer.payload["errors"] = [{"resource": resource, "field": name, "code": code}]
    return answer


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def blob_sha(text: str) -> str:
    """The git blob id of `text`, as GitHub reports a file's `sha`."""
    data = text.encode()
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def encode_content(text: str) -> str:
    """Base64 in lines of 60 characters, as GitHub sends file contents."""
    encoded = base64.b64encode(text.encode()).decode()
    return "".join(encoded[i : i + 60] + "\n" for i in range(0, len(encoded), 60))


class FakeClock:
    """Wall-clock seconds that move only when told; share it between server and client."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RecordingSleep:
    """An async sleep that returns at once, records each wait and moves `clock` past it."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.clock = clock
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self.clock is not None:
            self.clock.advance(seconds)
