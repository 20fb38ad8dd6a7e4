"""The directory a run works in, and the run's `STATE.md` memory beside it.

Path confinement here guards the maker's file tools against mistakes (a stray `..`, an absolute
path, a symlink pointing elsewhere). It is not a sandbox: the `run` tool executes arbitrary
commands as the service's user.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from loops.errors import WorkspaceError
from loops.processes import CommandResult, cap_output, run_command, scrubbed_env

MAX_NOTE_BYTES = 8_192
"""Largest single note; STATE.md is shown to every turn, so it must stay short."""

MAX_STATE_BYTES = 256_000
"""Backstop against a runaway loop filling STATE.md (and every later prompt)."""

MAX_UNTRACKED_LISTED = 200

SKIPPED_NAMES = frozenset({".git", "__pycache__", "node_modules", ".venv"})
"""Directories (and files) that listings and searches never enter: noise, or git internals."""

_GIT_TIMEOUT = 30.0


@dataclass(frozen=True)
class Workspace:
    """A run's working directory plus its `STATE.md`, which lives outside it.

    Args:
        root: the directory tools work in; stored resolved and absolute.
        state_file: the run's `STATE.md` (for example ``var/runs/<id>/STATE.md``). It is kept
            outside `root` so the maker's file tools cannot rewrite the run's memory.
    """

    root: Path
    state_file: Path

    def __post_init__(self) -> None:
        # Resolved once so every containment check compares real paths with a real root.
        object.__setattr__(self, "root", Path(os.path.realpath(self.root)))
        object.__setattr__(self, "state_file", Path(os.path.abspath(self.state_file)))

    def resolve(self, path: str, *, for_write: bool = False) -> Path:
        """The real path of `path` (relative to the root), refusing anything that escapes it.

        Symlinks are followed, so a link inside the workspace that points outside is refused,
        and a link that stays inside resolves to its target. With `for_write`, paths inside any
        `.git` directory are refused too.

        Raises:
            WorkspaceError: with a message meant to be shown to the model.
        """
        if "\0" in path:
            raise WorkspaceError(f"path {path!r} contains a NUL byte")
        if Path(path).is_absolute():
            raise WorkspaceError(
                f"path {path!r} is absolute; use a path relative to the workspace root"
            )
        real = Path(os.path.realpath(self.root / path))
        if not real.is_relative_to(self.root):
            raise WorkspaceError(f"path {path!r} is outside the workspace")
        if for_write and any(part.casefold() == ".git" for part in self.relative(real).split("/")):
            raise WorkspaceError(f"path {path!r} is inside .git/, which tools may not write")
        return real

    def relative(self, path: Path) -> str:
        """`path` (inside the root) as the POSIX-style relative path the model uses."""
        return path.relative_to(self.root).as_posix()

    def read_state(self) -> str:
        """The run's STATE.md, or "" when nothing was noted yet."""
        try:
            return self.state_file.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def append_state(self, text: str) -> None:
        """Append `text` to STATE.md as its own paragraph.

        Raises:
            WorkspaceError: the note is empty, over `MAX_NOTE_BYTES`, or STATE.md is full.
        """
        note = text.strip()
        if not note:
            raise WorkspaceError("note is empty")
        size = len(note.encode("utf-8", errors="replace"))
        if size > MAX_NOTE_BYTES:
            raise WorkspaceError(
                f"note of {size} bytes is over the limit of {MAX_NOTE_BYTES} bytes; "
                "keep notes short: decisions, progress, next steps"
            )
        current = self.read_state()
        used = len(current.encode("utf-8", errors="replace"))
        if used + size > MAX_STATE_BYTES:
            raise WorkspaceError(
                f"STATE.md is full ({used} of {MAX_STATE_BYTES} bytes used); "
                "no more notes can be added to this run"
            )
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        with self.state_file.open("a", encoding="utf-8", errors="replace") as out:
            out.write(_paragraph_separator(current) + note + "\n")

    async def diff(self, *, cap: int = 20_000) -> str:
        """Tracked changes against HEAD plus the untracked files, capped; "" outside git.

        Only a repository whose top level is the root counts: a plain directory that happens
        to sit inside another checkout (the service's own, say) must not report that one.
        """
        if not await self._is_git_root():
            return ""
        # Against the empty tree when there is no commit yet, so a fresh repo still shows work.
        base = await self._head() or '"$(git hash-object -t tree /dev/null)"'
        tracked = await self._git(f"git diff --no-color --no-ext-diff {base} --", cap)
        # -z: raw paths; without it, names with spaces or quotes come back C-quoted.
        status = await self._git("git -c core.quotepath=off status --porcelain -z", cap)
        parts: list[str] = []
        if tracked.exit_code != 0:
            parts.append(f"[git diff failed with exit code {tracked.exit_code}]")
        if tracked.output.strip():
            parts.append(tracked.output.rstrip("\n"))
        untracked = _untracked_section(status.output)
        if untracked:
            parts.append(untracked)
        if not parts:
            return ""
        text, _ = cap_output(("\n\n".join(parts) + "\n").encode("utf-8"), cap)
        return text

    async def snapshot_head(self) -> str | None:
        """The sha of the current commit, or None outside git or before the first commit."""
        if not await self._is_git_root():
            return None
        return await self._head()

    async def _head(self) -> str | None:
        result = await self._git("git rev-parse --verify --quiet HEAD", 4_096)
        sha = result.output.strip()
        return sha if result.exit_code == 0 and sha else None

    async def _is_git_root(self) -> bool:
        if not self.root.is_dir():
            return False
        result = await self._git("git rev-parse --show-toplevel", 4_096)
        if result.exit_code != 0:
            return False
        # git prints the real path of the top level, as `root` is stored.
        return Path(result.output.strip()) == self.root

    async def _git(self, command: str, cap: int) -> CommandResult:
        return await run_command(
            command, cwd=self.root, timeout=_GIT_TIMEOUT, env=self._git_env(), output_cap=cap
        )

    def _git_env(self) -> dict[str, str]:
        # Inherited GIT_DIR / GIT_WORK_TREE / GIT_INDEX_FILE would point git at another
        # repository; the ceiling stops discovery from climbing into a parent checkout.
        env = {k: v for k, v in scrubbed_env().items() if not k.upper().startswith("GIT_")}
        env["GIT_CEILING_DIRECTORIES"] = str(self.root.parent)
        # Status must not take index.lock: a maker command may be running git concurrently.
        env["GIT_OPTIONAL_LOCKS"] = "0"
        env["GIT_TERMINAL_PROMPT"] = "0"
        env["LC_ALL"] = "C"
        return env


def _paragraph_separator(current: str) -> str:
    if not current.strip() or current.endswith("\n\n"):
        return ""
    return "\n" if current.endswith("\n") else "\n\n"


def _untracked_section(porcelain: str) -> str:
    paths = [entry[3:] for entry in porcelain.split("\0") if entry.startswith("?? ")]
    if not paths:
        return ""
    shown = paths[:MAX_UNTRACKED_LISTED]
    lines = ["Untracked files:", *(f"  {p}" for p in shown)]
    if len(paths) > len(shown):
        lines.append(f"  [... {len(paths) - len(shown)} more untracked files not listed]")
    return "\n".join(lines)


def write_atomically(target: Path, data: bytes) -> None:
    """Write via a temporary sibling and `os.replace`, so readers never see half a file."""
    temp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    # os.open with 0o666 lets the umask decide a new file's mode, as a plain open() would.
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        if target.exists():
            # Keep the executable bit and friends when a script is rewritten.
            os.chmod(temp, target.stat().st_mode & 0o7777)
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def walk(base: Path) -> Iterator[os.DirEntry[str]]:
    """Entries under `base`, depth first in name order, minus `SKIPPED_NAMES`.

    Symlinked directories are listed but never entered, so a link cannot lead outside the root.
    """
    stack = [iter(_sorted_entries(base))]
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
            continue
        if entry.name in SKIPPED_NAMES:
            continue
        yield entry
        if entry.is_dir(follow_symlinks=False):
            stack.append(iter(_sorted_entries(Path(entry.path))))


def _sorted_entries(directory: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as scan:
            return sorted(scan, key=lambda e: e.name)
    except OSError:
        return []  # an unreadable directory is skipped, not fatal to the listing
