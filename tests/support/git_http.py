"""A real smart-HTTP git server on 127.0.0.1, with bare repositories to serve.

Each request runs `git http-backend` as a CGI program, so clones, fetches and pushes go through
the same protocol as against GitHub. When the server is given a token it demands
``Authorization: Basic base64("x-access-token:<token>")`` and answers 401 otherwise; every
request's method, path and headers are recorded, so tests can prove where a token travelled.
"""

from __future__ import annotations

import base64
import contextlib
import io
import os
import shutil
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import IO
from urllib.parse import unquote, urlsplit

from tests.support.local_http import LocalHTTP

AUTHOR = ("Test Author", "author@example.com")


@dataclass(frozen=True)
class SeenRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    status: int


@dataclass
class GitHTTPServer:
    """Serves the bare repositories under `root` at ``http://127.0.0.1:<port>/<relative path>``.

    Args:
        root: the directory holding the bare repositories (``GIT_PROJECT_ROOT``).
        token: the token every request must carry; None serves without authentication.
    """

    root: Path
    token: str | None = None
    requests: list[SeenRequest] = field(default_factory=list)
    backend_errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self._http = LocalHTTP(_handler(self))

    @property
    def base_url(self) -> str:
        return self._http.origin

    def url(self, repo: str) -> str:
        """The clone URL of the bare repository at `root / repo` (for example ``"o/r.git"``)."""
        return f"{self.base_url}/{repo}"

    def expected_authorization(self) -> str | None:
        if self.token is None:
            return None
        return basic_authorization(self.token)

    def __enter__(self) -> GitHTTPServer:
        self._http.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.stop()

    def record(self, seen: SeenRequest) -> None:
        with self.lock:
            self.requests.append(seen)


def basic_authorization(token: str) -> str:
    pair = base64.b64encode(f"x-access-token:{token}".encode()).decode("ascii")
    return f"Basic {pair}"


def _handler(server: GitHTTPServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def log_message(self, format: str, *args: object) -> None:
            return  # keep test output quiet; requests are recorded instead

        def _serve(self) -> None:
            expected = server.expected_authorization()
            if expected is not None and self.headers.get("Authorization") != expected:
                self._record(401)
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="git"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            _run_backend(self, server, self._record)

        def _record(self, status: int) -> None:
            parts = urlsplit(self.path)
            server.record(
                SeenRequest(
                    method=self.command,
                    path=parts.path,
                    query=parts.query,
                    headers=dict(self.headers.items()),
                    status=status,
                )
            )

    return Handler


def _cgi_env(handler: BaseHTTPRequestHandler, server: GitHTTPServer) -> dict[str, str]:
    parts = urlsplit(handler.path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        GIT_PROJECT_ROOT=str(server.root),
        GIT_HTTP_EXPORT_ALL="1",
        PATH_INFO=unquote(parts.path),
        QUERY_STRING=parts.query,
        REQUEST_METHOD=handler.command,
        CONTENT_TYPE=handler.headers.get("Content-Type", ""),
        REMOTE_ADDR="127.0.0.1",
        GATEWAY_INTERFACE="CGI/1.1",
        SERVER_PROTOCOL="HTTP/1.0",
    )
    if server.token is not None:
        env["REMOTE_USER"] = "x-access-token"
    length = handler.headers.get("Content-Length")
    if length is not None:
        env["CONTENT_LENGTH"] = length
    for name, value in handler.headers.items():
        key = "HTTP_" + name.upper().replace("-", "_")
        if key not in ("HTTP_AUTHORIZATION", "HTTP_CONTENT_LENGTH", "HTTP_CONTENT_TYPE"):
            env[key] = value  # Git-Protocol and Content-Encoding matter to http-backend
    return env


def _run_backend(
    handler: BaseHTTPRequestHandler, server: GitHTTPServer, record: Callable[[int], None]
) -> None:
    proc = subprocess.Popen(
        ["git", "http-backend"],
        env=_cgi_env(handler, server),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    assert proc.stderr is not None
    # Feed the body from another thread: the backend may answer while it is still reading.
    feeder = threading.Thread(target=_feed_body, args=(handler, proc.stdin), daemon=True)
    feeder.start()
    errors = threading.Thread(target=_collect_errors, args=(proc.stderr, server), daemon=True)
    errors.start()
    status, headers = _read_cgi_headers(proc.stdout)
    record(status)
    handler.send_response(status)
    for name, value in headers:
        handler.send_header(name, value)
    handler.end_headers()
    shutil.copyfileobj(proc.stdout, handler.wfile, 65536)
    proc.wait()
    feeder.join(timeout=5)
    errors.join(timeout=5)


def _feed_body(handler: BaseHTTPRequestHandler, stdin: IO[bytes]) -> None:
    try:
        if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
            _copy_chunked(handler.rfile, stdin)
        else:
            _copy_exact(handler.rfile, stdin, int(handler.headers.get("Content-Length") or 0))
    except BrokenPipeError:
        pass  # the backend stopped reading; its answer says why
    finally:
        with contextlib.suppress(BrokenPipeError):
            stdin.close()


def _copy_exact(source: io.BufferedIOBase, target: IO[bytes], length: int) -> None:
    while length > 0:
        chunk = source.read(min(length, 65536))
        if not chunk:
            return
        target.write(chunk)
        length -= len(chunk)


def _copy_chunked(source: io.BufferedIOBase, target: IO[bytes]) -> None:
    while True:
        size = int(source.readline().split(b";")[0].strip() or b"0", 16)
        if size == 0:
            source.readline()  # the blank line after the last chunk (no trailers from git)
            return
        _copy_exact(source, target, size)
        source.readline()  # CRLF after each chunk


def _collect_errors(stderr: IO[bytes], server: GitHTTPServer) -> None:
    text = stderr.read().decode("utf-8", errors="replace").strip()
    if text:
        with server.lock:
            server.backend_errors.append(text)


def _read_cgi_headers(stdout: IO[bytes]) -> tuple[int, list[tuple[str, str]]]:
    status = 200
    headers: list[tuple[str, str]] = []
    while True:
        line = stdout.readline().decode("latin-1").rstrip("\r\n")
        if not line:
            return status, headers
        name, _, value = line.partition(":")
        if name.lower() == "status":
            status = int(value.strip().split()[0])
        else:
            headers.append((name.strip(), value.strip()))


# Repositories -------------------------------------------------------------------------------


def git(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Run git with a fixed test identity and no inherited GIT_* redirections."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    base.update(
        GIT_AUTHOR_NAME=AUTHOR[0],
        GIT_AUTHOR_EMAIL=AUTHOR[1],
        GIT_COMMITTER_NAME=AUTHOR[0],
        GIT_COMMITTER_EMAIL=AUTHOR[1],
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=os.devnull,
    )
    base.update(env or {})
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True, env=base
    ).stdout


def bare_repo(root: Path, name: str) -> Path:
    """An empty bare repository at `root / name`, accepting pushes over HTTP."""
    path = root / name
    path.mkdir(parents=True)
    git(path, "init", "-q", "--bare", "-b", "main")
    git(path, "config", "http.receivepack", "true")
    return path


def commit_files(
    bare: Path, branch: str, files: dict[str, str], message: str, *, start: str | None = None
) -> str:
    """Commit `files` on `branch` of `bare` (created from `start`, or the branch itself, or
    from nothing) and push it there directly; returns the new commit's sha."""
    work = bare.parent / f".work-{bare.name}-{os.getpid()}-{threading.get_ident()}"
    shutil.rmtree(work, ignore_errors=True)
    git(bare.parent, "clone", "-q", str(bare), str(work))
    try:
        source = start or branch
        has_source = git(work, "ls-remote", "origin", f"refs/heads/{source}").strip()
        if has_source:
            git(work, "checkout", "-q", "-B", branch, f"origin/{source}")
        else:
            git(work, "checkout", "-q", "--orphan", branch)
        for rel, content in files.items():
            target = work / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
        git(work, "add", "-A")
        git(work, "commit", "-q", "-m", message)
        git(work, "push", "-q", "origin", f"HEAD:refs/heads/{branch}")
        return git(work, "rev-parse", "HEAD").strip()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def repo_with_pr(
    root: Path, name: str = "owner/project.git", *, pr_branch: str = "feature"
) -> Path:
    """A bare repository with two commits on `main` and a PR branch one commit ahead of it."""
    bare = bare_repo(root, name)
    commit_files(bare, "main", {"README.md": "project\n", "calc.py": "x = 1\n"}, "initial")
    commit_files(bare, "main", {"calc.py": "x = 2\n"}, "second")
    commit_files(bare, pr_branch, {"feature.py": "y = 1\n"}, "add feature", start="main")
    return bare


def fork_of(root: Path, base: Path, name: str) -> Path:
    """A bare copy of `base` at `root / name` (all branches), accepting pushes over HTTP."""
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    git(root, "clone", "-q", "--bare", str(base), str(path))
    git(path, "config", "http.receivepack", "true")
    return path


def log(bare: Path, branch: str, fmt: str = "%an <%ae>|%s") -> list[str]:
    """`git log` of `branch` in `bare`, newest first, one formatted line per commit."""
    return git(bare, "log", f"--format={fmt}", f"refs/heads/{branch}").splitlines()


def branches(bare: Path) -> list[str]:
    out = git(bare, "for-each-ref", "--format=%(refname:short)", "refs/heads/")
    return out.splitlines()
