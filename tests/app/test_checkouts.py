"""Workspaces cloned, diffed and published over real smart HTTP, with the token in a header."""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

import app.checkouts
from app.checkouts import CheckoutError, Checkouts, PushResult
from app.git_auth import authorization_header
from loops.processes import CommandResult, run_command
from tests.support.git_http import (
    GitHTTPServer,
    basic_authorization,
    branches,
    commit_files,
    fork_of,
    git,
    log,
    repo_with_pr,
)

APP = "loopwright[bot] <loopwright[bot]@users.noreply.github.com>"


@pytest.fixture
def token() -> str:
    return "ghs_" + secrets.token_hex(16)


@pytest.fixture
def served(tmp_path: Path) -> Path:
    """The directory the server serves, holding ``owner/project.git`` with PR branch
    ``feature``."""
    root = tmp_path / "served"
    root.mkdir()
    repo_with_pr(root)
    return root


@pytest.fixture
def server(served: Path, token: str) -> Iterator[GitHTTPServer]:
    with GitHTTPServer(served, token=token) as srv:
        yield srv


@pytest.fixture
def checkouts(tmp_path: Path) -> Checkouts:
    return Checkouts(tmp_path / "runs", git_timeout=30, clone_timeout=60)


@pytest.fixture
def commands(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, str]]]:
    """Every command line (and environment) app.checkouts hands to run_command."""
    seen: list[tuple[str, dict[str, str]]] = []

    async def recording(command: str, *, env: Mapping[str, str], **kwargs: Any) -> CommandResult:
        seen.append((command, dict(env)))
        return await run_command(command, env=env, **kwargs)

    monkeypatch.setattr(app.checkouts, "run_command", recording)
    return seen


async def clone_pr(checkouts: Checkouts, server: GitHTTPServer, run_id: str = "run1") -> Path:
    return await checkouts.clone(
        run_id=run_id, clone_url=server.url("owner/project.git"), ref="feature", token=server.token
    )


async def publish_feature(checkouts: Checkouts, path: Path, token: str) -> PushResult:
    return await checkouts.publish(
        path, run_id="run1", message="m", branch="feature", token=token, default_branch="main"
    )


def secret_forms(token: str) -> list[str]:
    return [token, basic_authorization(token).split()[1]]


async def test_clone_sends_the_token_in_a_header_only(
    checkouts: Checkouts,
    server: GitHTTPServer,
    token: str,
    commands: list[tuple[str, dict[str, str]]],
) -> None:
    with capture_logs() as logs:
        path = await clone_pr(checkouts, server)

    assert path == checkouts.runs_dir / "run1" / "workspace"
    assert (path / "feature.py").read_text() == "y = 1\n"
    assert git(path, "rev-parse", "--abbrev-ref", "HEAD").strip() == "feature"
    assert git(path, "rev-parse", "--abbrev-ref", "@{upstream}").strip() == "origin/feature"
    assert server.requests, "the server saw no request"
    for request in server.requests:
        assert request.headers.get("Authorization") == basic_authorization(token)
        assert all(s not in request.path + request.query for s in secret_forms(token))
    config_text = (path / ".git" / "config").read_text()
    listed = git(path, "config", "--list")
    remote = git(path, "remote", "get-url", "origin").strip()
    assert remote == server.url("owner/project.git")
    for secret in secret_forms(token):
        assert secret not in config_text
        assert secret not in listed
        assert all(secret not in command for command, _ in commands)
        assert secret not in repr(logs)
    # It travelled through the environment, as a header setting.
    clone_env = next(env for command, env in commands if command.startswith("git clone"))
    assert clone_env["GIT_CONFIG_KEY_0"] == "http.extraHeader"
    assert clone_env["GIT_CONFIG_VALUE_0"] == authorization_header(token)
    assert clone_env["GIT_TERMINAL_PROMPT"] == "0"
    assert any(entry["event"] == "workspace_cloned" for entry in logs)


async def test_commands_without_network_get_no_token(
    checkouts: Checkouts,
    server: GitHTTPServer,
    token: str,
    commands: list[tuple[str, dict[str, str]]],
) -> None:
    path = await clone_pr(checkouts, server)
    (path / "calc.py").write_text("x = 3\n")
    await checkouts.diff(path)
    local = [env for command, env in commands if not command.startswith(("git clone", "git push"))]
    assert local
    assert all(token not in "".join(env.values()) for env in local)


async def test_clone_without_the_token_fails_readably(
    checkouts: Checkouts, server: GitHTTPServer, token: str
) -> None:
    url = server.url("owner/project.git")
    with pytest.raises(CheckoutError, match="authentication failed") as missing:
        await checkouts.clone(run_id="run1", clone_url=url, ref="feature", token=None)
    assert "git clone failed with exit code 128" in str(missing.value)
    wrong = "ghs_wrong" + secrets.token_hex(8)
    with pytest.raises(CheckoutError, match="authentication failed") as refused:
        await checkouts.clone(run_id="run1", clone_url=url, ref="feature", token=wrong)
    for secret in [*secret_forms(wrong), *secret_forms(token)]:
        assert secret not in str(refused.value)
    assert not (checkouts.runs_dir / "run1" / "workspace").exists()
    assert not (checkouts.runs_dir / "run1" / "workspace.partial").exists()
    assert all(r.status == 401 for r in server.requests)


async def test_clone_of_a_missing_branch_is_readable_and_traces_nothing(
    checkouts: Checkouts,
    server: GitHTTPServer,
    token: str,
    monkeypatch: pytest.MonkeyPatch,
    commands: list[tuple[str, dict[str, str]]],
) -> None:
    # An operator's tracing variables must not reach git: with redaction off, curl's trace
    # would write the header wherever git's stderr goes.
    monkeypatch.setenv("GIT_TRACE_CURL", "1")
    monkeypatch.setenv("GIT_TRACE_REDACT", "0")
    monkeypatch.setenv("GIT_CURL_VERBOSE", "1")
    with pytest.raises(CheckoutError, match="Remote branch gone not found") as caught:
        await checkouts.clone(
            run_id="run1", clone_url=server.url("owner/project.git"), ref="gone", token=token
        )
    assert "Recv header" not in str(caught.value)
    for secret in secret_forms(token):
        assert secret not in str(caught.value)
    for _, env in commands:
        assert not [name for name in env if name.startswith(("GIT_TRACE", "GIT_CURL"))]


async def test_clone_refuses_credentials_in_the_url(checkouts: Checkouts, token: str) -> None:
    url = f"https://x-access-token:{token}@github.example/o/r.git"
    with pytest.raises(CheckoutError, match="must not carry credentials") as caught:
        await checkouts.clone(run_id="run1", clone_url=url, ref="main", token=None)
    assert token not in str(caught.value)
    with pytest.raises(CheckoutError, match="plain http"):
        await checkouts.clone(
            run_id="run1", clone_url="http://github.example/o/r.git", ref="main", token=token
        )


async def test_clone_on_resume_reuses_the_workspace(
    checkouts: Checkouts, server: GitHTTPServer, commands: list[tuple[str, dict[str, str]]]
) -> None:
    path = await clone_pr(checkouts, server)
    (path / "work.txt").write_text("kept\n")
    calls = len(commands)
    with capture_logs() as logs:
        again = await checkouts.clone(
            run_id="run1", clone_url="https://unreachable.invalid/x.git", ref="feature", token=None
        )
    assert again == path
    assert (path / "work.txt").read_text() == "kept\n"
    assert len(commands) == calls
    assert [entry["event"] for entry in logs] == ["workspace_reused"]


async def test_clone_leaves_a_foreign_directory_alone(
    checkouts: Checkouts, server: GitHTTPServer
) -> None:
    target = checkouts.runs_dir / "run1" / "workspace"
    target.mkdir(parents=True)
    (target / "mine.txt").write_text("not a clone\n")
    with pytest.raises(CheckoutError, match="not a prepared clone"):
        await clone_pr(checkouts, server)
    assert (target / "mine.txt").exists()


async def test_diff_includes_modified_and_new_files(
    checkouts: Checkouts, server: GitHTTPServer
) -> None:
    path = await clone_pr(checkouts, server)
    (path / "calc.py").write_text("x = 3\n")
    (path / "docs").mkdir()
    (path / "docs" / "new.md").write_text("brand new\n")
    (path / "feature.py").write_text("y = 4\n")
    git(path, "commit", "-qam", "the maker committed this one")
    status_before = git(path, "status", "--porcelain")

    diff = await checkouts.diff(path)

    assert "diff --git a/calc.py b/calc.py" in diff
    assert "-x = 2\n+x = 3" in diff
    assert "diff --git a/docs/new.md b/docs/new.md" in diff
    assert "+brand new" in diff
    assert "+y = 4" in diff  # against the clone's start, so commits made since are included
    assert git(path, "status", "--porcelain") == status_before  # real index untouched
    assert not list(path.parent.glob(".diff-index-*"))


async def test_diff_is_capped(tmp_path: Path, server: GitHTTPServer) -> None:
    small = Checkouts(tmp_path / "runs", diff_cap=2_000)
    path = await clone_pr(small, server)
    (path / "big.txt").write_text("line\n" * 5_000)
    diff = await small.diff(path)
    assert len(diff) < 2_500
    assert "bytes elided" in diff


async def test_publish_pushes_a_commit_by_the_app_to_the_pr_branch(
    checkouts: Checkouts, server: GitHTTPServer, served: Path, token: str
) -> None:
    path = await clone_pr(checkouts, server)
    (path / "calc.py").write_text("x = 3\n")
    (path / "added.py").write_text("z = 1\n")
    server.requests.clear()

    result = await checkouts.publish(
        path,
        run_id="run1",
        message="Loopwright run run1: fix the calculator",
        branch="feature",
        token=token,
        default_branch="main",
    )

    bare = served / "owner" / "project.git"
    assert result.pushed, result.reason
    assert result.branch == "feature"
    assert result.commit == git(bare, "rev-parse", "refs/heads/feature").strip()
    history = log(bare, "feature")
    assert history[0] == f"{APP}|Loopwright run run1: fix the calculator"
    assert history[1].endswith("|add feature")
    assert log(bare, "feature", "%cn <%ce>")[0] == APP
    assert git(bare, "show", "refs/heads/feature:added.py") == "z = 1\n"
    pushes = [r for r in server.requests if "receive-pack" in r.path + r.query]
    assert pushes
    assert all(r.headers.get("Authorization") == basic_authorization(token) for r in pushes)
    assert token not in (path / ".git" / "config").read_text()


async def test_publish_pushes_a_large_change(
    checkouts: Checkouts, server: GitHTTPServer, served: Path, token: str
) -> None:
    path = await clone_pr(checkouts, server)
    (path / "data.bin").write_bytes(secrets.token_bytes(2_500_000))  # over git's postBuffer
    server.requests.clear()
    result = await publish_feature(checkouts, path, token)
    assert result.pushed, result.reason
    chunked = [r for r in server.requests if r.headers.get("Transfer-Encoding") == "chunked"]
    assert chunked
    assert all(r.headers.get("Authorization") == basic_authorization(token) for r in chunked)
    size = git(served / "owner" / "project.git", "cat-file", "-s", "refs/heads/feature:data.bin")
    assert size.strip() == "2500000"


async def test_nothing_changed_means_nothing_to_commit(
    checkouts: Checkouts, server: GitHTTPServer, served: Path, token: str
) -> None:
    path = await clone_pr(checkouts, server)
    bare = served / "owner" / "project.git"
    before = log(bare, "feature")
    result = await publish_feature(checkouts, path, token)
    url = server.url("owner/project.git")
    to_run_branch = await checkouts.push_run_branch(
        path, run_id="run1", base_clone_url=url, token=token
    )
    for outcome in (result, to_run_branch):
        assert not outcome.pushed
        assert outcome.reason == "nothing to commit"
    assert log(bare, "feature") == before
    assert "loopwright/run-run1" not in branches(bare)


@pytest.mark.parametrize("branch", ["main", "refs/heads/main"])
async def test_publish_refuses_the_default_branch(
    checkouts: Checkouts, server: GitHTTPServer, served: Path, token: str, branch: str
) -> None:
    path = await clone_pr(checkouts, server)
    (path / "calc.py").write_text("x = 3\n")
    before = log(served / "owner" / "project.git", "main")
    server.requests.clear()
    with capture_logs() as logs:
        result = await checkouts.publish(
            path, run_id="run1", message="m", branch=branch, token=token, default_branch="main"
        )
    assert not result.pushed
    assert result.reason == "refusing to push to the default branch 'main'"
    assert log(served / "owner" / "project.git", "main") == before
    assert not server.requests
    assert [entry["event"] for entry in logs] == ["push_refused"]


async def test_publish_reports_a_rejected_non_fast_forward_without_forcing(
    checkouts: Checkouts, server: GitHTTPServer, served: Path, token: str
) -> None:
    path = await clone_pr(checkouts, server)
    bare = served / "owner" / "project.git"
    theirs = commit_files(bare, "feature", {"feature.py": "y = 99\n"}, "someone else pushed")
    (path / "calc.py").write_text("x = 3\n")

    result = await publish_feature(checkouts, path, token)

    assert not result.pushed
    assert result.rejected
    assert "rejected" in result.reason
    assert "not forced" in result.reason
    assert git(bare, "rev-parse", "refs/heads/feature").strip() == theirs


async def test_publish_refuses_a_rerouted_remote(
    checkouts: Checkouts, server: GitHTTPServer, token: str
) -> None:
    path = await clone_pr(checkouts, server)
    (path / "calc.py").write_text("x = 3\n")
    git(path, "remote", "set-url", "--push", "origin", "http://127.0.0.1:9/elsewhere.git")
    with pytest.raises(CheckoutError, match="points at"):
        await publish_feature(checkouts, path, token)
    git(path, "remote", "set-url", "--delete", "--push", "origin", "http://127.0.0.1:9/.*")
    git(path, "config", "http.proxy", "http://127.0.0.1:9")
    with pytest.raises(CheckoutError, match=r"http\.proxy"):
        await publish_feature(checkouts, path, token)


async def test_hooks_in_the_workspace_never_run(
    checkouts: Checkouts, server: GitHTTPServer, token: str, tmp_path: Path
) -> None:
    path = await clone_pr(checkouts, server)
    marker = tmp_path / "hook-ran"
    for name in ("pre-commit", "pre-push", "post-commit"):
        hook = path / ".git" / "hooks" / name
        hook.write_text(f"#!/bin/sh\nenv >> {marker}\n")
        hook.chmod(0o755)
    (path / "calc.py").write_text("x = 3\n")
    result = await publish_feature(checkouts, path, token)
    assert result.pushed
    assert not marker.exists()


async def test_push_run_branch_in_the_same_repository(
    checkouts: Checkouts, server: GitHTTPServer, served: Path, token: str
) -> None:
    path = await clone_pr(checkouts, server)
    (path / "calc.py").write_text("x = 3\n")
    url = server.url("owner/project.git")

    result = await checkouts.push_run_branch(path, run_id="run1", base_clone_url=url, token=token)

    bare = served / "owner" / "project.git"
    assert result.pushed, result.reason
    assert result.branch == "loopwright/run-run1"
    assert "loopwright/run-run1" in branches(bare)
    assert log(bare, "loopwright/run-run1")[0] == f"{APP}|Loopwright run run1"
    assert git(path, "remote", "get-url", "base").strip() == url

    # Resumed later, more work goes on top as a fast-forward.
    (path / "calc.py").write_text("x = 4\n")
    again = await checkouts.push_run_branch(
        path, run_id="run1", base_clone_url=url, token=token, message="second round"
    )
    assert again.pushed, again.reason
    assert log(bare, "loopwright/run-run1", "%s")[:2] == ["second round", "Loopwright run run1"]


@pytest.mark.parametrize("depth", [1, None])
async def test_push_run_branch_from_a_fork_to_its_base(
    tmp_path: Path, server: GitHTTPServer, served: Path, token: str, depth: int | None
) -> None:
    base = served / "owner" / "project.git"
    fork = fork_of(served, base, "contributor/project.git")
    commit_files(fork, "feature", {"feature.py": "y = 2\n"}, "fork-only work")
    checkouts = Checkouts(tmp_path / "runs", depth=depth)
    path = await checkouts.clone(
        run_id="run7", clone_url=server.url("contributor/project.git"), ref="feature", token=token
    )
    (path / "fixed.txt").write_text("done\n")
    assert (path / ".git" / "shallow").exists() == (depth == 1)

    result = await checkouts.push_run_branch(
        path, run_id="run7", base_clone_url=server.url("owner/project.git"), token=token
    )

    assert result.pushed, result.reason
    assert log(base, "loopwright/run-run7", "%s")[:2] == ["Loopwright run run7", "fork-only work"]
    assert "loopwright/run-run7" not in branches(fork)


async def test_push_errors_are_scrubbed_of_the_token(
    checkouts: Checkouts, server: GitHTTPServer, token: str
) -> None:
    path = await clone_pr(checkouts, server)
    (path / "calc.py").write_text("x = 3\n")
    wrong = "ghs_wrong" + secrets.token_hex(8)
    with pytest.raises(CheckoutError, match="authentication failed") as caught:
        await publish_feature(checkouts, path, wrong)
    for secret in secret_forms(wrong):
        assert secret not in str(caught.value)


def test_unsafe_run_ids_are_refused(checkouts: Checkouts) -> None:
    with pytest.raises(CheckoutError, match="not safe"):
        checkouts.workspace_path("../escape")
