"""Credentials for the GitHub REST API: a GitHub App's installation tokens, or a plain token.

A GitHub App signs a short JWT (RS256, `iat` back-dated 60 s against clock skew, `exp` 9 minutes
ahead, inside GitHub's 10-minute cap, `iss` the app id) and trades it for an installation token
at `POST /app/installations/{id}/access_tokens`. Installation tokens live an hour; they are
cached per installation and refreshed 5 minutes before `expires_at`, and concurrent callers wait
for one refresh instead of each asking for a token. The installation of a repository comes from
the webhook payload when there is one, else from `GET /repos/{owner}/{repo}/installation`, and
is cached.

The HTTP calls themselves are made by `app.github_client.GitHubClient` through the
`AppEndpoints` port, so retries and error mapping live in one place. Tokens are only ever held as
`SecretStr` inside an `AccessToken`, whose repr hides them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import jwt
import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from pydantic import SecretStr

from app.settings import GitHubSettings

__all__ = [
    "JWT_BACKDATE_SECONDS",
    "JWT_LIFETIME_SECONDS",
    "REFRESH_MARGIN_SECONDS",
    "AccessToken",
    "AppAuth",
    "AppEndpoints",
    "GitHubAuth",
    "TokenAuth",
    "auth_from_settings",
]

log = structlog.get_logger("app.github")

JWT_BACKDATE_SECONDS = 60
"""`iat` is set this far in the past, so a server clock slightly behind ours still accepts it."""
JWT_LIFETIME_SECONDS = 9 * 60
"""`exp` is this far after now: under GitHub's cap of 10 minutes, with room for skew."""
REFRESH_MARGIN_SECONDS = 5 * 60
"""A cached installation token is replaced once it has less than this left to live."""

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class AccessToken:
    """A bearer token and when it expires (epoch seconds; None for a token that does not)."""

    secret: SecretStr
    expires_at: float | None = None

    def reveal(self) -> str:
        return self.secret.get_secret_value()

    def fresh_at(self, now: float, margin: float = REFRESH_MARGIN_SECONDS) -> bool:
        return self.expires_at is None or now < self.expires_at - margin


class AppEndpoints(Protocol):
    """The two REST calls App authentication needs, each made with the app's JWT."""

    async def installation_id(self, repo: str, app_jwt: AccessToken) -> int: ...

    async def installation_token(
        self, installation_id: int, app_jwt: AccessToken
    ) -> AccessToken: ...


class GitHubAuth(Protocol):
    """Where the client gets the bearer token for a request about a repository."""

    async def token(
        self, endpoints: AppEndpoints, repo: str, installation_id: int | None = None
    ) -> AccessToken: ...

    def forget(self, token: AccessToken) -> bool:
        """Drop `token` from any cache after GitHub refused it; True when a retry may help."""
        ...


class TokenAuth:
    """A plain token (`LOOPWRIGHT_GITHUB__TOKEN`), used as-is for every repository."""

    def __init__(self, token: SecretStr) -> None:
        self._token = AccessToken(token)

    def __repr__(self) -> str:
        return "TokenAuth()"

    async def token(
        self, endpoints: AppEndpoints, repo: str, installation_id: int | None = None
    ) -> AccessToken:
        return self._token

    def forget(self, token: AccessToken) -> bool:
        return False


@dataclass
class _Slot:
    """One cache entry and the lock that makes concurrent callers share a single refresh."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    token: AccessToken | None = None
    installation_id: int | None = None


class AppAuth:
    """GitHub App authentication: installation tokens, cached per installation.

    Args:
        app_id: the App's id (the JWT's `iss`).
        private_key: the App's private key, PEM text. Literal ``\\n`` sequences, as a key pasted
            into a one-line environment variable has them, are read as newlines.
        clock: wall-clock seconds since the epoch (JWT claims and `expires_at` are wall time).
    """

    def __init__(self, app_id: str, private_key: SecretStr, *, clock: Clock) -> None:
        if not app_id.strip():
            raise ValueError("app_id must not be empty")
        self.app_id = app_id.strip()
        self._key = _load_rsa_key(private_key)
        self._clock = clock
        self._tokens: dict[int, _Slot] = {}
        self._installations: dict[str, _Slot] = {}

    def __repr__(self) -> str:
        return f"AppAuth(app_id={self.app_id!r})"

    def app_jwt(self) -> AccessToken:
        """A fresh JWT for the `/app/...` endpoints and installation look-ups."""
        now = int(self._clock())
        claims = {
            "iat": now - JWT_BACKDATE_SECONDS,
            "exp": now + JWT_LIFETIME_SECONDS,
            "iss": self.app_id,
        }
        encoded = jwt.encode(claims, self._key, algorithm="RS256")
        return AccessToken(SecretStr(encoded), float(now + JWT_LIFETIME_SECONDS))

    def remember_installation(self, repo: str, installation_id: int) -> None:
        """Record a repository's installation (webhook payloads carry it), saving a look-up."""
        self._installations.setdefault(repo.lower(), _Slot()).installation_id = installation_id

    async def token(
        self, endpoints: AppEndpoints, repo: str, installation_id: int | None = None
    ) -> AccessToken:
        if installation_id is None:
            installation_id = await self._installation_id(endpoints, repo)
        else:
            self.remember_installation(repo, installation_id)
        slot = self._tokens.setdefault(installation_id, _Slot())
        if slot.token is not None and slot.token.fresh_at(self._clock()):
            return slot.token
        async with slot.lock:
            # Whoever held the lock before us may have refreshed the token already.
            if slot.token is None or not slot.token.fresh_at(self._clock()):
                slot.token = await endpoints.installation_token(installation_id, self.app_jwt())
                log.info(
                    "github_token_refreshed",
                    installation_id=installation_id,
                    expires_at=slot.token.expires_at,
                )
            return slot.token

    def forget(self, token: AccessToken) -> bool:
        for slot in self._tokens.values():
            if slot.token == token:
                slot.token = None
        # Even when another caller replaced the token already, a retry gets the new one.
        return True

    async def _installation_id(self, endpoints: AppEndpoints, repo: str) -> int:
        slot = self._installations.setdefault(repo.lower(), _Slot())
        async with slot.lock:
            if slot.installation_id is None:
                slot.installation_id = await endpoints.installation_id(repo, self.app_jwt())
                log.info(
                    "github_installation_resolved", repo=repo, installation_id=slot.installation_id
                )
            return slot.installation_id


def _load_rsa_key(private_key: SecretStr) -> RSAPrivateKey:
    pem = private_key.get_secret_value().strip()
    if "\\n" in pem and "\n" not in pem:
        pem = pem.replace("\\n", "\n")
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        # The key's text never goes into the message.
        raise ValueError("the GitHub App private key is not a readable PEM private key") from exc
    if not isinstance(key, RSAPrivateKey):
        raise ValueError(f"the GitHub App private key must be RSA, got {type(key).__name__}")
    return key


def auth_from_settings(settings: GitHubSettings, *, clock: Clock) -> GitHubAuth | None:
    """App auth when `app_id` and `private_key` are set, else the plain token, else None."""
    if settings.app_id and settings.private_key is not None:
        return AppAuth(settings.app_id, settings.private_key, clock=clock)
    if settings.token is not None and settings.token.get_secret_value():
        return TokenAuth(settings.token)
    return None
