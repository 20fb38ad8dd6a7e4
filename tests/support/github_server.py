"""A real HTTP server on 127.0.0.1 that stands in for the GitHub REST API.

It implements the endpoints `app.github_client` calls, with GitHub's JSON shapes and status
codes, over in-memory state the test sets up: repositories (with a `clone_url` the test points
at a local git repository), files per ref, pull requests, collaborator roles, issue and review
comments, reactions, App installations and the tokens issued for them.

`Authorization` is checked the way GitHub does: the `/app/...` and `/repos/.../installation`
endpoints want the App's JWT (RS256, verified with the App's public key against the server's
clock, `exp` at most 10 minutes ahead); the others want an unexpired installation token whose
installation holds the repository, or a plain token. Every request is recorded (`requests`), and
failures can be scripted per path (`fail`, `secondary_rate_limit`, `primary_rate_limit`).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from tests.support.github_routes import ROUTES
from tests.support.github_state import (
    Answer,
    Caller,
    CommentState,
    FakeClock,
    PullState,
    Recorded,
    RecordingSleep,
    RepoState,
    Scripted,
    error,
    iso,
)
from tests.support.local_http import LocalHTTP

__all__ = ["FakeClock", "FakeGitHub", "Recorded", "RecordingSleep", "Scripted", "pem"]

MAX_JWT_SECONDS = 600
"""GitHub refuses an App JWT whose `exp` is more than 10 minutes ahead."""
LEGACY_PERMISSION = {"admin": "admin", "maintain": "write", "write": "write", "triage": "read"}


class FakeGitHub:
    """The stand-in server; use as a context manager, then point a client at `url`.

    Args:
        app_id: the App whose JWTs are accepted.
        public_key: the App's public key (JWTs are refused when None).
        clock: wall-clock seconds for JWT checks and token expiry (share the client's fake one).
        prefix: an API path prefix, as GitHub Enterprise has (``"/api/v3"``).
        token_ttl: how long issued installation tokens live.
    """

    def __init__(
        self,
        *,
        app_id: str = "1",
        public_key: RSAPublicKey | None = None,
        clock: Callable[[], float] = time.time,
        prefix: str = "",
        token_ttl: float = 3600.0,
        bot_login: str = "loopwright[bot]",
    ) -> None:
        self.app_id = app_id
        self.public_key = public_key
        self.clock = clock
        self.prefix = prefix.rstrip("/")
        self.token_ttl = token_ttl
        self.bot_login = bot_login
        self.lock = threading.RLock()
        self.repos: dict[str, RepoState] = {}
        self.pulls: dict[tuple[str, int], PullState] = {}
        self.comments: dict[int, CommentState] = {}
        self.reactions: list[dict[str, Any]] = []
        self.installations: dict[int, set[str]] = {}
        self.issued: dict[str, tuple[int, float]] = {}
        """Installation token -> (installation id, expiry)."""
        self.plain_tokens: dict[str, str] = {}
        """Plain token -> login."""
        self.jwt_claims: list[dict[str, Any]] = []
        self.jwt_headers: list[dict[str, Any]] = []
        self.requests: list[Recorded] = []
        self.scripted: list[Scripted] = []
        self._ids = iter(range(1001, 10**9))
        self._http = LocalHTTP(self._handler())

    @property
    def url(self) -> str:
        return f"{self._http.origin}{self.prefix}"

    def __enter__(self) -> FakeGitHub:
        self._http.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.stop()

    # -- state the test sets up ------------------------------------------------------------

    def add_repo(
        self,
        full_name: str,
        *,
        clone_url: str,
        default_branch: str = "main",
        private: bool = False,
        files: dict[str, str] | None = None,
    ) -> RepoState:
        """A repository; `files` (path -> text) are on the default branch."""
        repo = RepoState(full_name, clone_url, default_branch, private)
        repo.files[default_branch] = dict(files or {})
        with self.lock:
            self.repos[full_name.lower()] = repo
        return repo

    def add_files(self, repo: str, ref: str, files: dict[str, str]) -> None:
        with self.lock:
            self.repos[repo.lower()].files.setdefault(ref, {}).update(files)

    def add_pull(
        self,
        repo: str,
        number: int,
        *,
        head_ref: str,
        head_sha: str = "0" * 40,
        head_repo: str | None = "",
        head_clone_url: str | None = None,
        base_ref: str | None = None,
        **extra: Any,
    ) -> PullState:
        """A pull request; `head_repo` defaults to `repo` itself, None is a deleted fork."""
        base = self.repos[repo.lower()]
        head_name = base.full_name if head_repo == "" else head_repo
        if head_clone_url is None and head_name is not None:
            head_clone_url = base.clone_url if head_name == base.full_name else f"/{head_name}.git"
        pull = PullState(
            base.full_name,
            number,
            head_ref,
            head_sha,
            head_name,
            head_clone_url,
            base_ref or base.default_branch,
            **extra,
        )
        with self.lock:
            self.pulls[(base.full_name.lower(), number)] = pull
            base.issues.add(number)
        return pull

    def add_issue(self, repo: str, number: int) -> None:
        with self.lock:
            self.repos[repo.lower()].issues.add(number)

    def set_role(self, repo: str, login: str, role: str, *, legacy: str | None = None) -> None:
        """A collaborator's role; a custom role needs its legacy base (`legacy`)."""
        base = legacy or LEGACY_PERMISSION.get(role, role)
        with self.lock:
            self.repos[repo.lower()].roles[login.lower()] = (role, base)

    def add_comment(self, repo: str, number: int, body: str = "", *, kind: str = "issue") -> int:
        """An existing issue comment, or a review comment ("review") on a pull request."""
        with self.lock:
            return self.new_comment(self.repos[repo.lower()].full_name, kind, number, body, "user")

    def add_installation(self, installation_id: int, repos: list[str]) -> None:
        with self.lock:
            self.installations[installation_id] = {name.lower() for name in repos}

    def add_plain_token(self, token: str, login: str = "token-user") -> None:
        with self.lock:
            self.plain_tokens[token] = login

    def revoke_tokens(self) -> None:
        """Every issued installation token stops working (they answer 401)."""
        with self.lock:
            self.issued.clear()

    # -- scripted failures -----------------------------------------------------------------

    def fail(
        self,
        path: str,
        status: int,
        *,
        times: int = 1,
        message: str = "scripted failure",
        headers: dict[str, str] | None = None,
        method: str | None = None,
    ) -> None:
        """The next `times` requests to `path` answer `status` (0: the connection drops)."""
        with self.lock:
            self.scripted.append(Scripted(path, status, message, headers or {}, method, times))

    def secondary_rate_limit(self, path: str, *, retry_after: int = 1, times: int = 1) -> None:
        message = "You have exceeded a secondary rate limit. Please wait a few minutes."
        self.fail(
            path, 403, times=times, message=message, headers={"retry-after": f"{retry_after}"}
        )

    def primary_rate_limit(self, path: str, *, reset: float, times: int = 1) -> None:
        headers = {
            "x-ratelimit-limit": "5000",
            "x-ratelimit-remaining": "0",
            "x-ratelimit-used": "5000",
            "x-ratelimit-reset": str(int(reset)),
        }
        self.fail(path, 403, times=times, message="API rate limit exceeded", headers=headers)

    # -- what tests read back --------------------------------------------------------------

    def requests_to(self, path: str, method: str | None = None) -> list[Recorded]:
        with self.lock:
            return [r for r in self.requests if r.path == path and method in (None, r.method)]

    # -- used by the routes ----------------------------------------------------------------

    def now_iso(self, offset: float = 0.0) -> str:
        return iso(self.clock() + offset)

    def new_id(self) -> int:
        return next(self._ids)

    def new_comment(self, repo: str, kind: str, number: int, body: str, user: str) -> int:
        comment_id = self.new_id()
        now = self.now_iso()
        self.comments[comment_id] = CommentState(
            comment_id, repo, kind, number, body, user, now, now
        )
        return comment_id

    def issue_token(self, installation_id: int) -> tuple[str, float]:
        token = f"ghs_{secrets.token_hex(18)}"
        expires_at = float(int(self.clock() + self.token_ttl))
        self.issued[token] = (installation_id, expires_at)
        return token, expires_at

    def caller(self, authorization: str | None, *, want_jwt: bool) -> Caller | Answer:
        if not authorization:
            return error(401, "Requires authentication")
        scheme, _, credential = authorization.partition(" ")
        if scheme.lower() not in {"bearer", "token"} or not credential:
            return error(401, "Bad credentials")
        if want_jwt:
            return self._verify_jwt(credential)
        if credential in self.plain_tokens:
            return Caller("token", self.plain_tokens[credential])
        installation_id, expires_at = self.issued.get(credential, (0, 0.0))
        if expires_at <= self.clock():
            return error(401, "Bad credentials")
        return Caller("installation", self.bot_login, installation_id)

    def can_see(self, caller: Caller, repo: str) -> bool:
        if caller.kind == "token":
            return True
        return repo.lower() in self.installations.get(caller.installation_id or 0, set())

    def _verify_jwt(self, token: str) -> Caller | Answer:
        if self.public_key is None:
            return error(401, "A JSON web token could not be decoded")
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(
                token,
                self.public_key,
                algorithms=["RS256"],
                options={"verify_exp": False, "verify_iat": False, "require": ["iat", "exp"]},
            )
        except jwt.PyJWTError:
            return error(401, "A JSON web token could not be decoded")
        self.jwt_headers.append(header)
        self.jwt_claims.append(claims)
        now = self.clock()
        if str(claims.get("iss")) != self.app_id:
            return error(401, "Integration not found")
        if claims["iat"] > now:
            return error(401, "'Issued at' claim ('iat') must be a time in the past")
        if claims["exp"] <= now:
            return error(401, "'Expiration time' claim ('exp') must be a time in the future")
        if claims["exp"] - now > MAX_JWT_SECONDS:
            return error(401, "'Expiration time' claim ('exp') is too far in the future")
        return Caller("app", f"app-{self.app_id}")

    # -- HTTP ------------------------------------------------------------------------------

    def _answer(
        self, method: str, target: str, headers: dict[str, str], raw: bytes
    ) -> Answer | None:
        """The answer to one request; None drops the connection."""
        parts = urlsplit(target)
        path = unquote(parts.path)
        if self.prefix:
            if not path.startswith(self.prefix + "/"):
                return error(404, "Not Found")
            path = path[len(self.prefix) :]
        query = dict(parse_qsl(parts.query))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            return error(400, "Problems parsing JSON")
        with self.lock:
            self.requests.append(Recorded(method, path, query, headers, body))
            scripted = self._take_scripted(method, path)
            if scripted is None:
                return self._route(method, path, query, headers, body)
        if scripted.status == 0:
            return None
        answer = error(scripted.status, scripted.message)
        answer.headers.update(scripted.headers)
        return answer

    def _take_scripted(self, method: str, path: str) -> Scripted | None:
        for item in self.scripted:
            if item.path == path and item.method in (None, method) and item.times > 0:
                item.times -= 1
                return item
        return None

    def _route(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: Any
    ) -> Answer:
        for route in ROUTES:
            match = route.pattern.fullmatch(path)
            if match is None or route.method != method:
                continue
            caller = self.caller(headers.get("authorization"), want_jwt=route.jwt)
            if isinstance(caller, Answer):
                return caller
            return route.handle(self, caller, match, query, body)
        return error(404, "Not Found")

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out as two writes; with Nagle on, each keep-alive request
            # waits out the client's delayed ACK (~40 ms).
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                headers = {name.lower(): value for name, value in self.headers.items()}
                answer = server._answer(self.command, self.path, headers, raw)
                if answer is None:
                    self.close_connection = True
                    return
                data = b"" if answer.payload is None else json.dumps(answer.payload).encode()
                try:
                    self.send_response(answer.status)
                    self.send_header("content-type", "application/json; charset=utf-8")
                    self.send_header("content-length", str(len(data)))
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

        return Handler


def pem(key: RSAPrivateKey) -> str:
    """A private key as the PEM text `LOOPWRIGHT_GITHUB__PRIVATE_KEY` holds."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
