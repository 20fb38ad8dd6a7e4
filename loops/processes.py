"""Run shell commands for tools and checks: own process group, timeout, capped output, clean env.

A command runs in a new session (`start_new_session=True`), so on timeout or cancellation the
whole group is killed, including anything the command spawned.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_OUTPUT_CAP = 16_000
"""Bytes of combined stdout/stderr kept; the head and the tail are kept, the middle elided."""

_SECRET_MARKERS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "AUTH", "COOKIE")
_SECRET_PREFIXES = ("LOOPWRIGHT_", "OPIK_", "LITELLM_", "AWS_", "AZURE_", "GOOGLE_", "GCP_")
# Set by git hooks; inherited, they would point a workspace's git at another repository.
_GIT_REDIRECTS = frozenset({"GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY"})
_KEEP = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TERM", "TMPDIR", "TZ", "USER", "SHELL")


def secret_name(name: str) -> bool:
    """Whether an environment variable's name says it holds a credential."""
    return any(marker in name.upper() for marker in _SECRET_MARKERS)


def scrubbed_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for maker and check commands: no secrets, no Loopwright settings.

    Anything whose name looks like a credential, or that configures Loopwright, a model provider
    or tracing, is dropped. `PYTHONDONTWRITEBYTECODE=1` is forced so a file rewritten within the
    same second at the same size is never tested through stale bytecode.
    """
    source = os.environ if base is None else base
    env: dict[str, str] = {}
    for name, value in source.items():
        upper = name.upper()
        if upper in _KEEP:
            env[name] = value
            continue
        if upper.startswith(_SECRET_PREFIXES) or secret_name(upper):
            continue
        if upper.startswith(("OPENAI_", "ANTHROPIC_", "GEMINI_", "MISTRAL_", "COHERE_", "GROQ_")):
            continue
        if upper in _GIT_REDIRECTS:
            continue
        env[name] = value
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.setdefault("PATH", os.defpath)
    return env


@dataclass(frozen=True, kw_only=True)
class CommandResult:
    command: str
    exit_code: int  # -1 when it timed out or was cancelled
    output: str  # combined stdout and stderr, capped
    timed_out: bool = False
    duration_s: float = 0.0
    truncated: bool = False


def cap_output(data: bytes, cap: int = DEFAULT_OUTPUT_CAP) -> tuple[str, bool]:
    """Keep the first third and the last two thirds of `cap` bytes: errors tend to be at the end."""
    if len(data) <= cap:
        return data.decode("utf-8", errors="replace"), False
    head = cap // 3
    tail = cap - head
    elided = len(data) - head - tail
    text = (
        data[:head].decode("utf-8", errors="replace")
        + f"\n[... {elided} bytes elided ...]\n"
        + data[-tail:].decode("utf-8", errors="replace")
    )
    return text, True


async def run_command(
    command: str,
    *,
    cwd: Path,
    timeout: float,  # noqa: ASYNC109 - handed to the child process's lifetime, not a wrapper
    env: Mapping[str, str],
    output_cap: int = DEFAULT_OUTPUT_CAP,
) -> CommandResult:
    """Run `command` through the shell in `cwd`; never raises for the command's own failure.

    Cancelling the calling task kills the process group and re-raises `CancelledError`.
    """
    started = time.monotonic()
    proc = await asyncio.create_subprocess_shell(
        command,
        cwd=cwd,
        env=dict(env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    capture = _Capture(output_cap)
    reader = asyncio.create_task(_drain(proc, capture))
    timed_out = False
    try:
        async with asyncio.timeout(timeout):
            await asyncio.shield(reader)
            await proc.wait()
    except TimeoutError:
        timed_out = True
        await _kill_group(proc, reader)
    except asyncio.CancelledError:
        await _kill_group(proc, reader)
        raise
    text, truncated = capture.text()
    if timed_out:
        text += f"\n[command timed out after {timeout:g}s; its process group was killed]"
    return CommandResult(
        command=command,
        exit_code=-1 if timed_out else (proc.returncode if proc.returncode is not None else -1),
        output=text,
        timed_out=timed_out,
        duration_s=time.monotonic() - started,
        truncated=truncated,
    )


class _Capture:
    """Keeps the head and a rolling tail of a stream, so memory stays bounded whatever a
    command prints (`yes` included), and output printed before a timeout is kept."""

    def __init__(self, cap: int) -> None:
        self.head_cap = cap // 3
        self.tail_cap = cap - self.head_cap
        self.head = bytearray()
        self.tail = bytearray()
        self.dropped = 0

    def add(self, chunk: bytes) -> None:
        room = self.head_cap - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        self.tail += chunk
        excess = len(self.tail) - self.tail_cap
        if excess > 0:
            del self.tail[:excess]
            self.dropped += excess

    def text(self) -> tuple[str, bool]:
        if not self.dropped:
            return cap_output(bytes(self.head + self.tail), self.head_cap + self.tail_cap)
        text = (
            self.head.decode("utf-8", errors="replace")
            + f"\n[... {self.dropped} bytes elided ...]\n"
            + self.tail.decode("utf-8", errors="replace")
        )
        return text, True


async def _drain(proc: asyncio.subprocess.Process, capture: _Capture) -> None:
    assert proc.stdout is not None
    while chunk := await proc.stdout.read(65536):
        capture.add(chunk)


async def _kill_group(proc: asyncio.subprocess.Process, reader: asyncio.Task[None]) -> None:
    """SIGKILL the whole group, then let the reader collect what was already written."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    # A grandchild that left the group could hold the pipe open: do not wait on it forever.
    with contextlib.suppress(Exception):
        async with asyncio.timeout(2):
            await asyncio.shield(reader)
    reader.cancel()
    with contextlib.suppress(Exception):
        async with asyncio.timeout(2):
            await proc.wait()
