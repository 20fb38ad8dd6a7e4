"""A small GitHub REST client: permissions, reactions, comments, pull requests, file contents.

Requests go through `app.github_http.GitHubTransport` (headers, bounded retries, the error
tree, re-exported here) with tokens from `app.github_auth` (a GitHub App's installation tokens
or a plain token). Methods take the repository as ``"owner/name"`` and, with an App, the
installation id when the caller knows it (webhook payloads carry it); otherwise it is looked up
once per repository.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any, Literal
from urllib.parse import quote

import httpx
import structlog
from pydantic import SecretStr

from app.github_auth import AccessToken, AppAuth, GitHubAuth, auth_from_settings
from app.github_http import (
    API_VERSION,
    GitHubBadResponse,
    GitHubError,
    GitHubForbidden,
    GitHubNotFound,
    GitHubRateLimited,
    GitHubTransport,
    GitHubUnavailable,
    Sleep,
    require,
)
from app.settings import GitHubSettings

__all__ = [
    "API_VERSION",
    "TRIGGER_PERMISSIONS",
    "GitHubBadResponse",
    "GitHubClient",
    "GitHubError",
    "GitHubForbidden",
    "GitHubNotFound",
    "GitHubRateLimited",
    "GitHubUnavailable",
    "Permission",
    "PullRequest",
    "Reaction",
    "Repository",
]

log = structlog.get_logger("app.github")

Permission = Literal["admin", "maintain", "write", "triage", "read", "none"]
TRIGGER_PERMISSIONS: frozenset[str] = frozenset({"admin", "maintain", "write"})
Reaction = Literal["+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes"]

_ROLES: tuple[Permission, ...] = ("admin", "maintain", "write", "triage", "read", "none")


@dataclass(frozen=True, kw_only=True)
class PullRequest:
    number: int
    state: str
    head_ref: str
    head_sha: str
    head_repo: str | None
    """None when the fork the pull request came from has been deleted."""
    head_clone_url: str | None
    base_ref: str
    base_repo: str
    base_clone_url: str
    is_fork: bool
    maintainer_can_modify: bool


@dataclass(frozen=True, kw_only=True)
class Repository:
    full_name: str
    default_branch: str
    clone_url: str
    private: bool
    permissions: Mapping[str, bool] | None = None
    """What these credentials may do (`admin`, `push`, ...), when GitHub says."""


class GitHubClient:
    """GitHub's REST API for one set of credentials.

    Args:
        http: the client requests go through; its `base_url` is the API root (for example
            ``https://api.github.com`` or ``https://ghe.example.com/api/v3``).
        auth: where bearer tokens come from (`AppAuth` or `TokenAuth`).
        clock: wall-clock seconds since the epoch (token expiry and rate-limit resets).
        sleep: how retries wait.
        max_attempts: sends per request, the first included.
        max_wait: the longest single wait before a retry; a longer one fails the call instead.
        permission_ttl: how long `can_trigger` trusts a permission it looked up.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        auth: GitHubAuth,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
        max_attempts: int = 4,
        max_wait: float = 60.0,
        permission_ttl: float = 60.0,
        user_agent: str = "loopwright",
    ) -> None:
        self._transport = GitHubTransport(
            http,
            clock=clock,
            sleep=sleep,
            max_attempts=max_attempts,
            max_wait=max_wait,
            user_agent=user_agent,
        )
        self._auth = auth
        self._clock = clock
        self._permission_ttl = permission_ttl
        self._permissions: dict[tuple[str, str], tuple[float, str]] = {}
        self._endpoints = _AppEndpoints(self._transport)

    @classmethod
    def from_settings(
        cls,
        settings: GitHubSettings,
        http: httpx.AsyncClient,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
    ) -> GitHubClient | None:
        """A client for the configured credentials, or None when there are none."""
        auth = auth_from_settings(settings, clock=clock)
        return None if auth is None else cls(http, auth, clock=clock, sleep=sleep)

    def __repr__(self) -> str:
        return f"GitHubClient(base_url={str(self._transport.http.base_url)!r}, auth={self._auth!r})"

    def remember_installation(self, repo: str, installation_id: int) -> None:
        """Record a repository's App installation (from a webhook), sparing a look-up."""
        if isinstance(self._auth, AppAuth):
            self._auth.remember_installation(_repo(repo), installation_id)

    async def access_token(self, repo: str, *, installation_id: int | None = None) -> str:
        """The token git needs to clone and push `repo`. Put it in a header, never in a URL."""
        token = await self._auth.token(self._endpoints, _repo(repo), installation_id)
        return token.reveal()

    async def permission(
        self, repo: str, username: str, *, installation_id: int | None = None
    ) -> Permission:
        """The user's role on the repository; "none" for a user GitHub does not know."""
        path = f"/repos/{_repo(repo)}/collaborators/{_segment(username)}/permission"
        try:
            body = await self._json("GET", path, repo, installation_id)
        except GitHubNotFound:
            return "none"
        return _role(require(body, "permission", str, path), body.get("role_name"))

    async def can_trigger(
        self, repo: str, username: str, *, installation_id: int | None = None
    ) -> bool:
        """True for admin, maintain and write; remembered for `permission_ttl` seconds."""
        key = (_repo(repo).lower(), username.lower())
        cached = self._permissions.get(key)
        if cached is not None and self._clock() - cached[0] < self._permission_ttl:
            return cached[1] in TRIGGER_PERMISSIONS
        role = await self.permission(repo, username, installation_id=installation_id)
        self._permissions[key] = (self._clock(), role)
        return role in TRIGGER_PERMISSIONS

    async def add_reaction(
        self,
        repo: str,
        comment_id: int,
        *,
        kind: Literal["issue", "review"],
        content: Reaction = "eyes",
        installation_id: int | None = None,
    ) -> None:
        """React to an issue (or PR conversation) comment, or a review comment on a diff line."""
        section = {"issue": "issues", "review": "pulls"}[kind]
        path = f"/repos/{_repo(repo)}/{section}/comments/{int(comment_id)}/reactions"
        await self._json("POST", path, repo, installation_id, json={"content": content})

    async def create_comment(
        self, repo: str, number: int, body: str, *, installation_id: int | None = None
    ) -> int:
        """Comment on an issue or pull request; returns the new comment's id."""
        path = f"/repos/{_repo(repo)}/issues/{int(number)}/comments"
        answer = await self._json("POST", path, repo, installation_id, json={"body": body})
        return require(answer, "id", int, path)

    async def update_comment(
        self, repo: str, comment_id: int, body: str, *, installation_id: int | None = None
    ) -> None:
        path = f"/repos/{_repo(repo)}/issues/comments/{int(comment_id)}"
        await self._json("PATCH", path, repo, installation_id, json={"body": body})

    async def pull_request(
        self, repo: str, number: int, *, installation_id: int | None = None
    ) -> PullRequest:
        path = f"/repos/{_repo(repo)}/pulls/{int(number)}"
        return _pull_request(await self._json("GET", path, repo, installation_id), path)

    async def repository(self, repo: str, *, installation_id: int | None = None) -> Repository:
        path = f"/repos/{_repo(repo)}"
        return _repository(await self._json("GET", path, repo, installation_id), path)

    async def file_text(
        self, repo: str, path: str, ref: str, *, installation_id: int | None = None
    ) -> str | None:
        """A file's text at `ref` (undecodable bytes replaced); None when it is not a file."""
        url = f"/repos/{_repo(repo)}/contents/{_content_path(path)}"
        try:
            body = await self._json("GET", url, repo, installation_id, params={"ref": ref})
        except GitHubNotFound:
            return None
        if not isinstance(body, dict) or body.get("type") != "file":
            return None
        if body.get("encoding") != "base64":
            # GitHub leaves `content` empty for files over 1 MB.
            raise GitHubBadResponse(200, f"{path!r} is too large for the contents API", request=url)
        try:
            return base64.b64decode(require(body, "content", str, url)).decode(errors="replace")
        except binascii.Error as exc:
            raise GitHubBadResponse(200, f"{path!r} is not valid base64", request=url) from exc

    async def list_dir(
        self, repo: str, path: str, ref: str, *, installation_id: int | None = None
    ) -> list[str]:
        """The names of the files (not directories) in a directory at `ref`; [] when missing."""
        url = f"/repos/{_repo(repo)}/contents/{_content_path(path)}"
        try:
            body = await self._json("GET", url, repo, installation_id, params={"ref": ref})
        except GitHubNotFound:
            return []
        if not isinstance(body, list):
            return []
        return sorted(
            str(entry["name"])
            for entry in body
            if isinstance(entry, dict) and entry.get("type") == "file" and "name" in entry
        )

    async def _json(
        self,
        method: str,
        path: str,
        repo: str,
        installation_id: int | None,
        *,
        json: object = None,
        params: Mapping[str, str] | None = None,
    ) -> Any:
        """Send with the repository's token; one retry with a new token if GitHub says 401."""
        token = await self._auth.token(self._endpoints, _repo(repo), installation_id)
        try:
            return await self._transport.request(method, path, token, json=json, params=params)
        except GitHubForbidden as exc:
            if exc.status != 401 or not self._auth.forget(token):
                raise
        log.warning("github_token_rejected", method=method, path=path)
        token = await self._auth.token(self._endpoints, _repo(repo), installation_id)
        return await self._transport.request(method, path, token, json=json, params=params)


class _AppEndpoints:
    """The REST calls `AppAuth` needs, sent with the app's JWT through the same transport."""

    def __init__(self, transport: GitHubTransport) -> None:
        self._transport = transport

    async def installation_id(self, repo: str, app_jwt: AccessToken) -> int:
        path = f"/repos/{_repo(repo)}/installation"
        return require(await self._transport.request("GET", path, app_jwt), "id", int, path)

    async def installation_token(self, installation_id: int, app_jwt: AccessToken) -> AccessToken:
        path = f"/app/installations/{int(installation_id)}/access_tokens"
        body = await self._transport.request("POST", path, app_jwt)
        secret = SecretStr(require(body, "token", str, path))
        expires = require(body, "expires_at", str, path)
        try:
            expires_at = datetime.fromisoformat(expires).timestamp()
        except ValueError as exc:
            raise GitHubBadResponse(
                201, f"expires_at {expires!r} is not a date", request=path
            ) from exc
        return AccessToken(secret, expires_at)


def _role(permission: str, role_name: object) -> Permission:
    # `permission` is the legacy field (maintain reads as write, triage as read); `role_name`
    # names the real role, or a custom role, in which case the legacy base role is the answer.
    for candidate in (role_name, permission):
        for role in _ROLES:
            if candidate == role:
                return role
    return "none"


def _pull_request(body: Any, path: str) -> PullRequest:
    head = require(body, "head", dict, path)
    base = require(body, "base", dict, path)
    base_repo = require(base, "repo", dict, path)
    head_repo = head.get("repo") if isinstance(head.get("repo"), dict) else None
    head_name = require(head_repo, "full_name", str, path) if head_repo else None
    base_name = require(base_repo, "full_name", str, path)
    return PullRequest(
        number=require(body, "number", int, path),
        state=require(body, "state", str, path),
        head_ref=require(head, "ref", str, path),
        head_sha=require(head, "sha", str, path),
        head_repo=head_name,
        head_clone_url=require(head_repo, "clone_url", str, path) if head_repo else None,
        base_ref=require(base, "ref", str, path),
        base_repo=base_name,
        base_clone_url=require(base_repo, "clone_url", str, path),
        is_fork=head_name is None or head_name.lower() != base_name.lower(),
        maintainer_can_modify=body.get("maintainer_can_modify") is True,
    )


def _repository(body: Any, path: str) -> Repository:
    permissions = body.get("permissions") if isinstance(body, dict) else None
    return Repository(
        full_name=require(body, "full_name", str, path),
        default_branch=require(body, "default_branch", str, path),
        clone_url=require(body, "clone_url", str, path),
        private=body.get("private") is True,
        permissions=(
            MappingProxyType({str(k): v is True for k, v in permissions.items()})
            if isinstance(permissions, dict)
            else None
        ),
    )


def _repo(repo: str) -> str:
    owner, _, name = repo.partition("/")
    if not (_is_name(owner) and _is_name(name)):
        raise ValueError(f"repo must be 'owner/name', got {repo!r}")
    return repo


def _segment(value: str) -> str:
    """One path segment from a caller's value: quoted, never empty, never a dot segment."""
    if value in {"", ".", ".."}:
        raise ValueError(f"{value!r} cannot be a path segment")
    return quote(value, safe="")


def _is_name(value: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z0-9_.-]+", value)) and value not in {".", ".."}


def _content_path(path: str) -> str:
    parts = path.strip("/").split("/")
    if any(part in {"", ".", ".."} for part in parts):
        raise ValueError(f"path {path!r} must be relative to the repository root, without . or ..")
    return quote("/".join(parts), safe="/")
