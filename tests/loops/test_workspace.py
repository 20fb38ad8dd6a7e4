from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from loops.errors import WorkspaceError
from loops.workspace import MAX_NOTE_BYTES, MAX_STATE_BYTES, Workspace, walk, write_atomically

GIT_IDENTITY = ["-c", "user.name=Test", "-c", "user.email=test@example.com"]


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    root = tmp_path / "ws"
    root.mkdir()
    return Workspace(root, tmp_path / "run" / "STATE.md")


def git(root: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *GIT_IDENTITY, *args], cwd=root, check=True, capture_output=True, text=True
    )
    return done.stdout


def init_repo(root: Path) -> None:
    git(root, "init", "-q")
    (root / "a.txt").write_text("old\n")
    git(root, "add", "a.txt")
    git(root, "commit", "-q", "-m", "first")


# --- confinement ---


def test_root_is_stored_resolved(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    ws = Workspace(tmp_path / "alias" / ".." / "alias", tmp_path / "STATE.md")
    assert ws.root == (tmp_path / "real").resolve()
    assert ws.root.is_absolute()


def test_resolve_relative_path_inside(ws: Workspace) -> None:
    assert ws.resolve("src/a.py") == ws.root / "src" / "a.py"
    assert ws.resolve(".") == ws.root
    assert ws.resolve("src/../b.txt") == ws.root / "b.txt"


@pytest.mark.parametrize("path", ["../x", "a/../../x", "..", "src/../../ws-sibling"])
def test_resolve_refuses_dotdot_escape(ws: Workspace, path: str) -> None:
    with pytest.raises(WorkspaceError, match=rf"^path {path!r} is outside the workspace$"):
        ws.resolve(path)


def test_resolve_refuses_absolute_paths_even_inside(ws: Workspace) -> None:
    with pytest.raises(WorkspaceError, match="is absolute"):
        ws.resolve("/etc/passwd")
    with pytest.raises(WorkspaceError, match="is absolute"):
        ws.resolve(str(ws.root / "a.txt"))


def test_resolve_refuses_nul_byte(ws: Workspace) -> None:
    with pytest.raises(WorkspaceError, match="NUL byte"):
        ws.resolve("a\0b")


def test_resolve_refuses_symlink_escaping_the_root(ws: Workspace, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("s3cr3t")
    (ws.root / "escape").symlink_to(outside)
    (ws.root / "sub").mkdir()
    (ws.root / "sub" / "file-link").symlink_to(outside / "secret.txt")
    (ws.root / "dangling").symlink_to(outside / "not-yet")
    for path in ["escape", "escape/secret.txt", "sub/file-link", "dangling"]:
        with pytest.raises(WorkspaceError, match="outside the workspace"):
            ws.resolve(path)
        with pytest.raises(WorkspaceError, match="outside the workspace"):
            ws.resolve(path, for_write=True)


def test_resolve_follows_symlink_inside(ws: Workspace) -> None:
    (ws.root / "real").mkdir()
    (ws.root / "real" / "f.txt").write_text("x")
    (ws.root / "alias").symlink_to("real")
    assert ws.resolve("alias/f.txt") == ws.root / "real" / "f.txt"
    assert ws.resolve("alias/new.txt", for_write=True) == ws.root / "real" / "new.txt"


@pytest.mark.parametrize("path", [".git/config", ".git", "vendor/lib/.git/HEAD", ".GIT/hooks/x"])
def test_resolve_refuses_writes_into_git(ws: Workspace, path: str) -> None:
    with pytest.raises(WorkspaceError, match=r"inside \.git/"):
        ws.resolve(path, for_write=True)
    assert ws.resolve(path).is_relative_to(ws.root)  # reading is fine


def test_resolve_refuses_writes_through_symlink_to_git(ws: Workspace) -> None:
    (ws.root / ".git").mkdir()
    (ws.root / "g").symlink_to(".git")
    with pytest.raises(WorkspaceError, match=r"inside \.git/"):
        ws.resolve("g/config", for_write=True)


# --- STATE.md ---


def test_read_state_is_empty_before_any_note(ws: Workspace) -> None:
    assert ws.read_state() == ""


def test_append_state_creates_parents_and_separates_paragraphs(ws: Workspace) -> None:
    ws.append_state("first note\n")
    ws.append_state("  - second note  ")
    assert ws.state_file.parent.is_dir()
    assert ws.read_state() == "first note\n\n- second note\n"


def test_append_state_continues_a_file_without_trailing_newline(ws: Workspace) -> None:
    ws.state_file.parent.mkdir(parents=True)
    ws.state_file.write_text("# Task")
    ws.append_state("note")
    assert ws.read_state() == "# Task\n\nnote\n"


def test_append_state_refuses_empty_and_oversized_notes(ws: Workspace) -> None:
    with pytest.raises(WorkspaceError, match="note is empty"):
        ws.append_state("  \n ")
    with pytest.raises(WorkspaceError, match=rf"note of {MAX_NOTE_BYTES + 1} bytes"):
        ws.append_state("x" * (MAX_NOTE_BYTES + 1))
    assert ws.read_state() == ""


def test_append_state_refuses_when_state_is_full(ws: Workspace) -> None:
    ws.state_file.parent.mkdir(parents=True)
    ws.state_file.write_text("x" * (MAX_STATE_BYTES - 10))
    with pytest.raises(WorkspaceError, match=r"STATE\.md is full"):
        ws.append_state("a note that does not fit")


# --- git ---


async def test_diff_and_head_outside_git(ws: Workspace) -> None:
    (ws.root / "a.txt").write_text("x")
    assert await ws.diff() == ""
    assert await ws.snapshot_head() is None


async def test_diff_ignores_an_enclosing_repository(tmp_path: Path) -> None:
    init_repo(tmp_path)
    inner = tmp_path / "runs" / "ws"
    inner.mkdir(parents=True)
    (inner / "new.txt").write_text("x")
    (tmp_path / "a.txt").write_text("changed\n")
    ws = Workspace(inner, tmp_path / "STATE.md")
    assert await ws.diff() == ""
    assert await ws.snapshot_head() is None


async def test_diff_shows_tracked_changes_and_untracked_files(ws: Workspace) -> None:
    init_repo(ws.root)
    (ws.root / "a.txt").write_text("new\n")
    (ws.root / "b c.txt").write_text("untracked\n")
    (ws.root / "ünï.txt").write_text("untracked\n")
    text = await ws.diff()
    assert "-old\n+new" in text
    assert "Untracked files:\n" in text
    assert "  b c.txt" in text
    assert "  ünï.txt" in text  # core.quotepath=off: no octal escapes


async def test_diff_includes_staged_changes(ws: Workspace) -> None:
    init_repo(ws.root)
    (ws.root / "a.txt").write_text("staged\n")
    git(ws.root, "add", "a.txt")
    assert "+staged" in await ws.diff()


async def test_diff_of_a_clean_repo_is_empty(ws: Workspace) -> None:
    init_repo(ws.root)
    assert await ws.diff() == ""


async def test_diff_before_first_commit(ws: Workspace) -> None:
    git(ws.root, "init", "-q")
    (ws.root / "a.txt").write_text("hello\n")
    git(ws.root, "add", "a.txt")
    assert await ws.snapshot_head() is None
    assert "+hello" in await ws.diff()


async def test_diff_is_capped(ws: Workspace) -> None:
    init_repo(ws.root)
    (ws.root / "a.txt").write_text("".join(f"line {i}\n" for i in range(20_000)))
    text = await ws.diff(cap=2_000)
    assert len(text.encode()) < 2_200
    assert "bytes elided" in text


async def test_snapshot_head_is_the_commit_sha(ws: Workspace) -> None:
    init_repo(ws.root)
    assert await ws.snapshot_head() == git(ws.root, "rev-parse", "HEAD").strip()


# --- helpers ---


def test_walk_skips_noise_and_goes_depth_first(tmp_path: Path) -> None:
    for rel in ["b.txt", "a/x.py", "a/__pycache__/x.pyc", ".git/HEAD", "node_modules/m/i.js"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("")
    (tmp_path / ".venv").mkdir()
    names = [Path(e.path).relative_to(tmp_path).as_posix() for e in walk(tmp_path)]
    assert names == ["a", "a/x.py", "b.txt"]


def test_write_atomically_keeps_mode_and_leaves_no_temp(tmp_path: Path) -> None:
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    write_atomically(script, b"#!/bin/sh\necho hi\n")
    assert script.read_bytes() == b"#!/bin/sh\necho hi\n"
    assert stat.S_IMODE(script.stat().st_mode) == 0o755
    assert os.listdir(tmp_path) == ["run.sh"]
