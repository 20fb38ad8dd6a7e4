"""Git workspaces for runs: clone a PR head or a repository, diff the work, publish it.

A run's clone lives at ``<runs_dir>/<run_id>/workspace``; beside it, ``checkout.json`` records
the clone URL, the ref and the commit the clone started from (what `diff` compares against).

The token only ever travels in an HTTP header set through the environment (`app.git_auth`):
never on a command line, in a URL, in ``.git/config`` or in a log. Before a command that
carries the token runs in a workspace the maker has worked in, the remote's effective URL is
checked against the recorded one and the repository's own config is checked for anything that
could send the request elsewhere (proxies, URL rewrites, includes); hooks never run.

    LoopwrightError
    └── WorkspaceError
        └── CheckoutError      a git command failed, timed out or was refused; the message
                               carries git's output tail with any token scrubbed

A push rejected by the server (not a fast-forward, a protected branch) is an outcome, not an
error: `PushResult(pushed=False, rejected=True)`. Nothing here force-pushes.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, asdict, dataclass
from pathlib import Path

import structlog

from app.git_auth import git_env, redacted, scrub, secret_forms, url_problem
from loops.errors import WorkspaceError
from loops.processes import DEFAULT_OUTPUT_CAP, CommandResult, run_command
from loops.workspace import write_atomically

log = structlog.get_logger("app.checkouts")

RECORD_NAME = "checkout.json"
RUN_BRANCH_PREFIX = "loopwright/run-"

_ERROR_TAIL = 1_500
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_BAD_REF = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//|^[/.]|[/.]$|\.lock$|/\.|^@$")
# Repository config keys that could route a token-bearing request somewhere else or run code.
_UNSAFE_KEY = re.compile(
    r"^(?:http\.|url\.|include\.|includeif\.|credential\.)|proxy|\.vcs$|^core\.sshcommand$"
)


class CheckoutError(WorkspaceError):
    """A workspace could not be cloned, inspected or published."""


@dataclass(frozen=True, kw_only=True)
class PushResult:
    """What publishing did. `rejected` means the server refused the update (never forced)."""

    pushed: bool
    reason: str = ""
    branch: str = ""
    commit: str | None = None
    remote_url: str = ""
    rejected: bool = False


@dataclass(frozen=True, kw_only=True)
class CheckoutRecord:
    clone_url: str
    ref: str
    base_sha: str


@dataclass(frozen=True)
class Checkouts:
    """Prepares and publishes the git workspaces of runs.

    Args:
        runs_dir: the root of the runs' directories (``Settings.runs_dir``).
        author_name: the app's git identity for commits (author and committer).
        author_email: its email, for example ``loopwright[bot]@users.noreply.github.com``.
        clone_timeout: seconds for a clone or a fetch that deepens a clone.
        git_timeout: seconds for any other git command, pushes included.
        depth: history fetched by a clone; None for all of it.
        diff_cap: bytes of diff kept by `diff` (head and tail; the middle is elided).
        allow_http: accept plain ``http://`` clone URLs on hosts other than loopback.
    """

    runs_dir: Path
    _: KW_ONLY
    author_name: str = "loopwright[bot]"
    author_email: str = "loopwright[bot]@users.noreply.github.com"
    clone_timeout: float = 600.0
    git_timeout: float = 120.0
    depth: int | None = 50
    diff_cap: int = 60_000
    allow_http: bool = False

    def workspace_path(self, run_id: str) -> Path:
        return self.runs_dir / _checked_id(run_id) / "workspace"

    async def clone(self, *, run_id: str, clone_url: str, ref: str, token: str | None) -> Path:
        """Clone `ref` of `clone_url` into the run's workspace and check it out as a local
        branch tracking origin; a workspace already cloned (a resumed run) is reused as is.

        Raises:
            CheckoutError: a bad URL or ref, a failed or timed-out clone.
        """
        dest = self.workspace_path(run_id)
        if (dest / ".git").is_dir() and (dest.parent / RECORD_NAME).is_file():
            log.info("workspace_reused", run_id=run_id, path=str(dest))
            return dest
        self._check_url(clone_url)
        _check_ref(ref)
        _clear_empty(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        # Cloned beside the workspace and renamed into place: a crash mid-clone never leaves
        # a half clone where a resumed run would take it for a finished one.
        partial = dest.parent / "workspace.partial"
        shutil.rmtree(partial, ignore_errors=True)
        depth = [f"--depth={self.depth}"] if self.depth else []
        args = ["clone", "--quiet", "--no-tags", "--single-branch", f"--branch={ref}", *depth]
        try:
            await self._git(
                [*args, "--", clone_url, partial.name],
                cwd=dest.parent,
                token=token,
                timeout=self.clone_timeout,
            )
        except CheckoutError:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        _assert_not_stored(partial, token)
        base_sha = await self._head(partial)
        record = CheckoutRecord(clone_url=clone_url, ref=ref, base_sha=base_sha)
        write_atomically(dest.parent / RECORD_NAME, json.dumps(asdict(record)).encode())
        os.rename(partial, dest)
        log.info("workspace_cloned", run_id=run_id, url=clone_url, ref=ref, base_sha=base_sha)
        return dest

    async def diff(self, path: Path) -> str:
        """The work in `path` against the commit the clone started from: commits, staged and
        unstaged changes and new (untracked, not ignored) files, capped at `diff_cap` bytes."""
        record = _load_record(path)
        # A throwaway copy of the index takes in the untracked files without touching the
        # real index, which the maker's own git commands may be using.
        index = path.parent / f".diff-index-{secrets.token_hex(4)}"
        real_index = path / ".git" / "index"
        if real_index.is_file():
            shutil.copyfile(real_index, index)  # keeps the stat cache: no rehashing
        env = {"GIT_INDEX_FILE": str(index)}
        try:
            await self._git(["add", "--all"], repo=path, env=env)
            args = ["diff", "--cached", "--no-color", "--no-ext-diff", "--no-textconv"]
            result = await self._git(
                [*args, record.base_sha, "--"], repo=path, env=env, cap=self.diff_cap
            )
        finally:
            index.unlink(missing_ok=True)
        return result.output

    async def publish(
        self,
        path: Path,
        *,
        run_id: str,
        message: str,
        branch: str,
        token: str | None,
        default_branch: str,
        allow_default_branch: bool = False,
    ) -> PushResult:
        """Commit everything as the app and push it to `branch` of the clone's origin.

        Never forced; a push to the default branch is refused unless `allow_default_branch`.

        Raises:
            CheckoutError: git failed for another reason than the server rejecting the update.
        """
        branch = branch.removeprefix("refs/heads/")
        if branch == default_branch.removeprefix("refs/heads/") and not allow_default_branch:
            reason = f"refusing to push to the default branch {branch!r}"
            log.warning("push_refused", run_id=run_id, branch=branch, reason=reason)
            return PushResult(pushed=False, reason=reason, branch=branch)
        _check_ref(branch)
        head = await self._commit(path, message or f"Loopwright run {run_id}", run_id)
        if head is None:
            return PushResult(pushed=False, reason="nothing to commit", branch=branch)
        return await self._push(path, "origin", _load_record(path).clone_url, branch, token, head)

    async def push_run_branch(
        self,
        path: Path,
        *,
        run_id: str,
        base_clone_url: str,
        token: str | None,
        message: str | None = None,
    ) -> PushResult:
        """Commit the work if needed and push it to ``loopwright/run-<run_id>`` of the base
        repository (added as the remote ``base``), for a fork's PR or a braked run. Never forced.

        Raises:
            CheckoutError: a bad URL, or git failed for another reason than a rejection.
        """
        self._check_url(base_clone_url)
        branch = run_branch(run_id)
        head = await self._commit(path, message or f"Loopwright run {run_id}", run_id)
        if head is None:
            return PushResult(pushed=False, reason="nothing to commit", branch=branch)
        remotes = (await self._git(["remote"], repo=path)).output.split()
        verb = "set-url" if "base" in remotes else "add"
        await self._git(["remote", verb, "base", base_clone_url], repo=path)
        return await self._push(path, "base", base_clone_url, branch, token, head)

    async def _commit(self, path: Path, message: str, run_id: str) -> str | None:
        """Stage everything and commit it as the app when anything changed; returns HEAD, or
        None when it is still the commit the clone started from."""
        base_sha = _load_record(path).base_sha
        await self._git(["add", "--all"], repo=path)
        staged = await self._git(["diff", "--cached", "--quiet"], repo=path, check=False)
        if staged.exit_code == 1:
            identity = {
                "GIT_AUTHOR_NAME": self.author_name,
                "GIT_AUTHOR_EMAIL": self.author_email,
                "GIT_COMMITTER_NAME": self.author_name,
                "GIT_COMMITTER_EMAIL": self.author_email,
            }
            args = ["commit", "--quiet", "--no-verify", "--cleanup=verbatim", "-m", message]
            await self._git(args, repo=path, env=identity)
            log.info("changes_committed", run_id=run_id)
        elif staged.exit_code != 0:
            raise _failure("diff", staged, None)
        head = await self._head(path)
        return None if head == base_sha else head

    async def _push(
        self, path: Path, remote: str, url: str, branch: str, token: str | None, head: str
    ) -> PushResult:
        await self._check_remote(path, remote, url)
        result = await self._send(path, remote, branch, token)
        if "shallow update not allowed" in result.output and (path / ".git/shallow").exists():
            # The other repository lacks the history below the shallow boundary (a fork's
            # commits pushed to its base): fetch it all, then the push can include it.
            record = _load_record(path)
            await self._check_remote(path, "origin", record.clone_url)
            fetch = ["fetch", "--quiet", "--no-tags", "--unshallow", "origin"]
            await self._git(fetch, repo=path, token=token, timeout=self.clone_timeout)
            result = await self._send(path, remote, branch, token)
        if result.exit_code == 0:
            log.info("branch_pushed", branch=branch, url=url, commit=head)
            return PushResult(pushed=True, branch=branch, commit=head, remote_url=url)
        rejected = [line for line in result.output.splitlines() if line.startswith("!\t")]
        if not rejected or result.timed_out:
            raise _failure("push", result, token)
        summary = scrub(rejected[0].split("\t")[-1], token)
        reason = f"push to {branch!r} was rejected: {summary}; not forced"
        log.warning("push_rejected", branch=branch, url=url, summary=summary)
        return PushResult(
            pushed=False, rejected=True, reason=reason, branch=branch, commit=head, remote_url=url
        )

    async def _send(self, path: Path, remote: str, branch: str, token: str | None) -> CommandResult:
        args = ["push", "--porcelain", "--no-verify", remote, f"HEAD:refs/heads/{branch}"]
        return await self._git(args, repo=path, token=token, check=False)

    async def _check_remote(self, path: Path, remote: str, url: str) -> None:
        """Refuse to send the token unless `remote` resolves to `url` and nothing reroutes it."""
        listing = await self._git(["config", "--list", "--show-scope", "--name-only"], repo=path)
        for line in listing.output.splitlines():
            scope, _, key = line.partition("\t")
            if scope in ("local", "worktree") and _UNSAFE_KEY.search(key.lower()):
                raise CheckoutError(
                    f"refusing to push from {str(path)!r}: its git config sets {key!r}"
                )
        # get-url applies insteadOf / pushInsteadOf and pushurl: this is where git would go.
        got = await self._git(["remote", "get-url", "--push", remote], repo=path)
        actual = got.output.strip()
        if actual != url:
            raise CheckoutError(
                f"refusing to push: remote {remote!r} points at {redacted(actual)!r}, not {url!r}"
            )

    async def _head(self, path: Path) -> str:
        return (await self._git(["rev-parse", "--verify", "HEAD"], repo=path)).output.strip()

    def _check_url(self, url: str) -> None:
        problem = url_problem(url, allow_http=self.allow_http)
        if problem:
            raise CheckoutError(problem)

    async def _git(
        self,
        args: Sequence[str],
        *,
        repo: Path | None = None,
        cwd: Path | None = None,
        token: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - handed to run_command
        cap: int = DEFAULT_OUTPUT_CAP,
        check: bool = True,
    ) -> CommandResult:
        """Run git with the token (if any) in the environment only; `repo` pins GIT_DIR and
        GIT_WORK_TREE so git never wanders into an enclosing checkout."""
        full_env = git_env(token)
        if repo is not None:
            full_env.update(GIT_DIR=str(repo / ".git"), GIT_WORK_TREE=str(repo))
        full_env.update(env or {})
        result = await run_command(
            shlex.join(["git", *args]),
            cwd=cwd or repo or self.runs_dir,
            timeout=timeout or self.git_timeout,
            env=full_env,
            output_cap=cap,
        )
        if check and result.exit_code != 0:
            raise _failure(args[0], result, token)
        return result


def run_branch(run_id: str) -> str:
    """The branch a run's work goes to when it cannot go to the PR's own branch."""
    return RUN_BRANCH_PREFIX + _checked_id(run_id)


def _failure(command: str, result: CommandResult, token: str | None) -> CheckoutError:
    if result.timed_out:
        return CheckoutError(f"git {command} timed out after {result.duration_s:.0f}s")
    tail = scrub(result.output.strip(), token)[-_ERROR_TAIL:]
    hint = ""
    if "could not read Username" in tail or "Authentication failed" in tail:
        hint = "authentication failed (no token, or the token was refused); "
    return CheckoutError(f"git {command} failed with exit code {result.exit_code}: {hint}{tail}")


def _assert_not_stored(clone: Path, token: str | None) -> None:
    config = (clone / ".git" / "config").read_text(encoding="utf-8", errors="replace")
    if any(secret in config for secret in secret_forms(token)):
        shutil.rmtree(clone, ignore_errors=True)
        raise CheckoutError("the token ended up in .git/config; the clone was removed")


def _load_record(path: Path) -> CheckoutRecord:
    record_file = path.parent / RECORD_NAME
    try:
        data = json.loads(record_file.read_text(encoding="utf-8"))
        return CheckoutRecord(**data)
    except (OSError, ValueError, TypeError) as exc:
        raise CheckoutError(f"{str(path)!r} is not a prepared clone ({exc})") from exc


def _clear_empty(dest: Path) -> None:
    if dest.is_dir() and not any(dest.iterdir()):
        dest.rmdir()
    elif dest.exists():
        raise CheckoutError(f"{str(dest)!r} exists but is not a prepared clone; not overwriting")


def _checked_id(run_id: str) -> str:
    if not _SAFE_ID.fullmatch(run_id) or ".." in run_id:
        raise CheckoutError(f"run id {run_id!r} is not safe in a path or a branch name")
    return run_id


def _check_ref(ref: str) -> None:
    """Refuse what `git check-ref-format` would, and what git could take for an option."""
    if _BAD_REF.search(ref) or not ref or ref.startswith("-"):
        raise CheckoutError(f"{ref!r} is not a valid branch name")
