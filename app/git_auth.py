"""How git commands carry a token: in an HTTP header set through the environment, never on a
command line, in a URL or in a file, and scrubbed from anything shown afterwards.

git 2.31 and later read ``GIT_CONFIG_COUNT`` / ``GIT_CONFIG_KEY_n`` / ``GIT_CONFIG_VALUE_n`` as
command-line-scope config, so ``http.extraHeader`` applies to every request of the command
(and of the remote helper it starts) without appearing in its arguments.
"""

from __future__ import annotations

import base64
import os
from urllib.parse import urlsplit

from loops.processes import scrubbed_env

_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})
# Command-line scope overrides the repository's own config: no hooks or fsmonitor (they would
# inherit the token's environment), no credential helper (nothing may store or replace the
# header), no signing prompt.
_HARDENING = (
    ("core.hooksPath", os.devnull),
    ("core.fsmonitor", "false"),
    ("credential.helper", ""),
    ("commit.gpgSign", "false"),
)


def authorization_header(token: str) -> str:
    """The header GitHub accepts for an installation or personal token over smart HTTP."""
    pair = base64.b64encode(f"x-access-token:{token}".encode()).decode("ascii")
    return f"Authorization: Basic {pair}"


def git_env(token: str | None) -> dict[str, str]:
    """The environment for a git command: scrubbed, never prompting, http(s) transports only,
    hardened against the repository's config, and with the token's header when there is one."""
    # Inherited GIT_* could redirect git (GIT_DIR) or print the header (GIT_TRACE_CURL).
    env = {
        name: value
        for name, value in scrubbed_env().items()
        if not name.upper().startswith("GIT_") and name.upper() != "SSH_ASKPASS"
    }
    env.update(
        GIT_TERMINAL_PROMPT="0",
        GIT_ASKPASS="",  # set but empty: git neither runs a helper nor falls back to another
        GIT_ALLOW_PROTOCOL="http:https",
        LC_ALL="C",
    )
    config = [("http.extraHeader", authorization_header(token))] if token else []
    config.extend(_HARDENING)
    env["GIT_CONFIG_COUNT"] = str(len(config))
    for index, (key, value) in enumerate(config):
        env[f"GIT_CONFIG_KEY_{index}"] = key
        env[f"GIT_CONFIG_VALUE_{index}"] = value
    return env


def secret_forms(token: str | None) -> list[str]:
    """Every form of `token` that could show up in output: raw and base64-encoded."""
    if not token:
        return []
    encoded = authorization_header(token).rpartition(" ")[2]
    return [token, encoded, base64.b64encode(token.encode()).decode("ascii")]


def scrub(text: str, token: str | None) -> str:
    for secret in secret_forms(token):
        text = text.replace(secret, "***")
    return text


def url_problem(url: str, *, allow_http: bool) -> str | None:
    """Why `url` must not be given a token (credentials in it, plain http to a remote host, not
    http at all), or None when it may."""
    parts = urlsplit(url)
    if "@" in parts.netloc:
        return "clone URL must not carry credentials; the token goes in a header"
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return f"clone URL {url!r} is not an http(s) URL"
    if parts.scheme == "http" and not allow_http and parts.hostname not in _LOOPBACK:
        return f"refusing plain http to {parts.hostname!r}: the token would travel in clear"
    return None


def redacted(url: str) -> str:
    """`url` without whatever user information it carries."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]).geturl()
