from __future__ import annotations

import asyncio
import json
import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from loops.model import ToolCall
from loops.records import ToolCallRecord
from loops.tools import (
    MAX_LIST_ENTRIES,
    MAX_READ_BYTES,
    MAX_SEARCH_MATCHES,
    TOOL_SPECS,
    Toolbox,
)
from loops.workflows import TOOL_NAMES
from loops.workspace import Workspace

SECRETS = {
    "OPENAI_API_KEY": "sk-openai",
    "LOOPWRIGHT_API_TOKEN": "lw-token",
    "GITHUB_TOKEN": "ghp-token",
    "MY_SECRET": "my-secret",
    "OPIK_API_KEY": "opik-key",
}


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    root = tmp_path / "ws"
    root.mkdir()
    return Workspace(root, tmp_path / "run" / "STATE.md")


@pytest.fixture
def box(ws: Workspace) -> Toolbox:
    env = {"PATH": os.environ["PATH"], "HOME": str(ws.root), **SECRETS}
    return Toolbox(ws, TOOL_NAMES, command_timeout=20, env=env)


async def call(
    box: Toolbox, name: str, timeout: float | None = None, **args: Any
) -> ToolCallRecord:
    return await box.call(ToolCall(id="c1", name=name, arguments=json.dumps(args)), timeout=timeout)


async def raw_call(box: Toolbox, name: str, arguments: str) -> ToolCallRecord:
    return await box.call(ToolCall(id="c1", name=name, arguments=arguments))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a killed child not yet reaped by its new parent is a zombie: dead all the same
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def wait_dead(pid: int, within: float = 3.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


# --- specs ---


def test_specs_cover_the_fixed_names_with_strict_schemas() -> None:
    assert tuple(TOOL_SPECS) == TOOL_NAMES
    for name, spec in TOOL_SPECS.items():
        assert spec.name == name
        assert spec.description
        assert spec.parameters["type"] == "object"
        assert spec.parameters["additionalProperties"] is False
        assert set(spec.parameters["required"]) <= set(spec.parameters["properties"])
    assert TOOL_SPECS["write_file"].parameters["required"] == ["path", "content"]
    assert TOOL_SPECS["list_files"].parameters["required"] == []
    assert TOOL_SPECS["search"].parameters["required"] == ["pattern"]


def test_specs_are_the_enabled_ones_in_canonical_order(ws: Workspace) -> None:
    box = Toolbox(ws, ("note", "run", "read_file"), command_timeout=42, env={})
    specs = box.specs()
    assert [s.name for s in specs] == ["read_file", "run", "note"]
    assert "Timeout: 42s." in specs[1].description
    assert specs[0].to_openai()["function"]["name"] == "read_file"


def test_unknown_enabled_name_is_a_configuration_error(ws: Workspace) -> None:
    with pytest.raises(ValueError, match="unknown tool names \\['shell'\\]"):
        Toolbox(ws, ("read_file", "shell"), env={})


# --- dispatch and argument errors ---


async def test_disabled_and_unknown_tools_are_error_records(ws: Workspace) -> None:
    box = Toolbox(ws, ("read_file",), env={})
    record = await call(box, "run", command="echo hi")
    assert record.is_error
    assert record.result == "error: tool not enabled here: 'run'; available tools: read_file"
    record = await call(box, "delete_everything")
    assert record.result.startswith("error: unknown tool: 'delete_everything'")


async def test_invalid_json_arguments(box: Toolbox) -> None:
    record = await raw_call(box, "read_file", '{"path": "a.txt"')
    assert record.is_error
    assert record.result.startswith("error: arguments for read_file are not valid JSON")
    assert record.arguments == '{"path": "a.txt"'
    record = await raw_call(box, "read_file", '["a.txt"]')
    assert record.result == "error: arguments for read_file must be a JSON object"


async def test_missing_extra_and_wrong_typed_arguments(box: Toolbox) -> None:
    record = await call(box, "write_file", path="a.txt")
    assert record.result == "error: missing required argument 'content' for write_file"
    record = await call(box, "read_file", path="a.txt", mode="r")
    assert record.result == "error: unexpected argument 'mode' for read_file; expected: path"
    record = await call(box, "read_file", path=3)
    assert record.result == "error: argument 'path' of read_file must be a string, not a number"
    record = await call(box, "read_file", path=None)
    assert record.result == "error: argument 'path' of read_file must be a string, not null"
    assert all(r.is_error for r in [record])


async def test_optional_arguments_may_be_absent_null_or_empty(box: Toolbox, ws: Workspace) -> None:
    (ws.root / "a.txt").write_text("x")
    assert (await raw_call(box, "list_files", "")).result == "a.txt"
    assert (await call(box, "list_files", path=None)).result == "a.txt"


async def test_record_carries_name_arguments_and_duration(box: Toolbox) -> None:
    record = await call(box, "note", text="hello")
    assert record == ToolCallRecord(
        name="note",
        arguments='{"text": "hello"}',
        result="noted",
        is_error=False,
        duration_s=record.duration_s,
    )
    assert record.duration_s >= 0


# --- read_file ---


async def test_read_file(box: Toolbox, ws: Workspace) -> None:
    (ws.root / "src").mkdir()
    (ws.root / "src" / "a.py").write_text("print('hi')\n")
    record = await call(box, "read_file", path="src/a.py")
    assert not record.is_error
    assert record.result == "print('hi')\n"


async def test_read_file_errors(box: Toolbox, ws: Workspace, tmp_path: Path) -> None:
    (ws.root / "dir").mkdir()
    os.mkfifo(ws.root / "fifo")
    (ws.root / "blob.bin").write_bytes(b"\x89PNG\0\0\0")
    (tmp_path / "secret.txt").write_text("s3cr3t")
    (ws.root / "link").symlink_to(tmp_path / "secret.txt")
    cases = {
        "missing.txt": "error: no such file or directory: 'missing.txt'",
        "blob.bin/x": "error: a parent of that path is a file, not a directory: 'blob.bin/x'",
        "dir": "error: 'dir' is a directory; use list_files to see what it holds",
        "fifo": "error: 'fifo' is not a regular file",
        "blob.bin": "error: 'blob.bin' looks binary (it contains NUL bytes); only text is read",
        "../secret.txt": "error: path '../secret.txt' is outside the workspace",
        "link": "error: path 'link' is outside the workspace",
        str(tmp_path / "secret.txt"): "error: path",
    }
    for path, expected in cases.items():
        record = await call(box, "read_file", path=path)
        assert record.is_error, path
        assert record.result.startswith(expected), record.result
        assert "s3cr3t" not in record.result


async def test_read_file_truncates_large_files_at_a_line(box: Toolbox, ws: Workspace) -> None:
    line = "x" * 99 + "\n"
    (ws.root / "big.txt").write_text(line * 1_500)  # 150 000 bytes
    record = await call(box, "read_file", path="big.txt")
    assert not record.is_error
    body, _, notice = record.result.rpartition("\n[truncated: ")
    assert body == line * (MAX_READ_BYTES // 100)
    assert notice.startswith(f"showed the first {MAX_READ_BYTES} of 150000 bytes")


async def test_read_file_of_empty_file(box: Toolbox, ws: Workspace) -> None:
    (ws.root / "empty").touch()
    assert (await call(box, "read_file", path="empty")).result == "[empty file]"


# --- write_file ---


async def test_write_file_creates_parents(box: Toolbox, ws: Workspace) -> None:
    record = await call(box, "write_file", path="pkg/sub/mod.py", content="x = 'é'\n")
    assert not record.is_error
    assert record.result == "wrote 9 bytes to pkg/sub/mod.py"
    assert (ws.root / "pkg" / "sub" / "mod.py").read_text() == "x = 'é'\n"


async def test_write_file_overwrites_keeping_mode(box: Toolbox, ws: Workspace) -> None:
    script = ws.root / "run.sh"
    script.write_text("old")
    script.chmod(0o755)
    record = await call(box, "write_file", path="./run.sh", content="#!/bin/sh\n")
    assert record.result == "wrote 10 bytes to run.sh"
    assert script.read_text() == "#!/bin/sh\n"
    assert stat.S_IMODE(script.stat().st_mode) == 0o755
    assert sorted(os.listdir(ws.root)) == ["run.sh"]


async def test_write_file_errors(box: Toolbox, ws: Workspace, tmp_path: Path) -> None:
    (ws.root / "dir").mkdir()
    (ws.root / ".git").mkdir()
    (ws.root / "file").write_text("x")
    cases = {
        "../evil.txt": "error: path '../evil.txt' is outside the workspace",
        "/tmp/evil.txt": "error: path '/tmp/evil.txt' is absolute",
        ".git/hooks/pre-commit": "error: path '.git/hooks/pre-commit' is inside .git/",
        "dir": "error: 'dir' is a directory",
        "file/child.txt": "error: a parent of 'file/child.txt' is a file, not a directory",
    }
    for path, expected in cases.items():
        record = await call(box, "write_file", path=path, content="boom")
        assert record.is_error, path
        assert record.result.startswith(expected), record.result
    assert not (tmp_path / "evil.txt").exists()
    assert list((ws.root / ".git").iterdir()) == []


async def test_write_file_refuses_unencodable_content(box: Toolbox, ws: Workspace) -> None:
    record = await raw_call(box, "write_file", '{"path": "a.txt", "content": "\\ud800"}')
    assert record.is_error
    assert record.result.startswith("error: 'utf-8' codec can't encode")
    assert not (ws.root / "a.txt").exists()


# --- list_files ---


async def test_list_files_is_recursive_and_skips_noise(box: Toolbox, ws: Workspace) -> None:
    for rel in ["README.md", "src/app.py", "src/__pycache__/app.pyc", "node_modules/x/i.js"]:
        (ws.root / rel).parent.mkdir(parents=True, exist_ok=True)
        (ws.root / rel).write_text("")
    (ws.root / ".git").mkdir()
    (ws.root / ".venv" / "bin").mkdir(parents=True)
    (ws.root / "empty").mkdir()
    record = await call(box, "list_files")
    assert record.result == "README.md\nempty/\nsrc/\nsrc/app.py"
    assert (await call(box, "list_files", path="src")).result == "src/app.py"
    assert (await call(box, "list_files", path="src/app.py")).result == "src/app.py"
    assert (await call(box, "list_files", path="empty")).result == "'empty' is empty"


async def test_list_files_caps_entries(box: Toolbox, ws: Workspace) -> None:
    for i in range(MAX_LIST_ENTRIES + 20):
        (ws.root / f"f{i:04d}.txt").touch()
    lines = (await call(box, "list_files", path=".")).result.splitlines()
    assert len(lines) == MAX_LIST_ENTRIES + 1
    assert lines[0] == "f0000.txt"
    assert lines[-1].startswith("[... 20 more entries omitted")


async def test_list_files_errors(box: Toolbox) -> None:
    record = await call(box, "list_files", path="nope")
    assert record.is_error
    assert record.result == "error: no such file or directory: 'nope'"
    assert (await call(box, "list_files", path="..")).result.endswith("outside the workspace")


# --- search ---


async def test_search_reports_path_line_and_text(box: Toolbox, ws: Workspace) -> None:
    (ws.root / "src").mkdir()
    (ws.root / "src" / "a.py").write_text("import os\n\ndef handler():\n    pass\n")
    (ws.root / "src" / "b.py").write_text("def other_handler(x): ...\n")
    (ws.root / "blob.bin").write_bytes(b"def handler\0")
    (ws.root / "__pycache__").mkdir()
    (ws.root / "__pycache__" / "c.py").write_text("def handler(): ...\n")
    record = await call(box, "search", pattern=r"def \w*handler")
    assert not record.is_error
    assert record.result == "src/a.py:3: def handler():\nsrc/b.py:1: def other_handler(x): ..."
    record = await call(box, "search", pattern="handler", path="src/b.py")
    assert record.result == "src/b.py:1: def other_handler(x): ..."


async def test_search_skips_symlinks_that_leave_the_workspace(
    box: Toolbox, ws: Workspace, tmp_path: Path
) -> None:
    (tmp_path / "secret.txt").write_text("password = hunter2\n")
    (ws.root / "link.txt").symlink_to(tmp_path / "secret.txt")
    record = await call(box, "search", pattern="password")
    assert record.result == "no matches for 'password' under '.'"


async def test_search_caps_matches(box: Toolbox, ws: Workspace) -> None:
    (ws.root / "many.txt").write_text("hit\n" * (MAX_SEARCH_MATCHES + 50))
    lines = (await call(box, "search", pattern="hit")).result.splitlines()
    assert len(lines) == MAX_SEARCH_MATCHES + 1
    assert lines[-1].startswith(f"[stopped after {MAX_SEARCH_MATCHES} matches")


async def test_search_errors(box: Toolbox) -> None:
    record = await call(box, "search", pattern="(unclosed")
    assert record.is_error
    assert record.result.startswith("error: invalid regular expression '(unclosed': ")
    record = await call(box, "search", pattern="x", path="../..")
    assert record.result == "error: path '../..' is outside the workspace"
    record = await call(box, "search", pattern="x", path="missing")
    assert record.result == "error: no such file or directory: 'missing'"


# --- run ---


async def test_run_in_the_workspace_root(box: Toolbox, ws: Workspace) -> None:
    record = await call(box, "run", command="pwd; echo oops >&2")
    assert not record.is_error
    assert record.result == f"exit code: 0\n{ws.root}\noops\n"


async def test_run_reports_failure_exit_codes(box: Toolbox) -> None:
    record = await call(box, "run", command="exit 3")
    assert not record.is_error  # the command ran; its failure is information for the model
    assert record.result == "exit code: 3\n[no output]"
    assert (await call(box, "run", command="  ")).result == "error: command is empty"


async def test_run_scrubs_secrets_from_the_environment(box: Toolbox) -> None:
    result = (await call(box, "run", command="env")).result
    for name, value in SECRETS.items():
        assert name not in result
        assert value not in result
    assert f"PATH={os.environ['PATH']}\n" in result
    assert "PYTHONDONTWRITEBYTECODE=1\n" in result


async def test_default_env_is_the_scrubbed_service_environment(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-service")
    box = Toolbox(ws, ("run",))
    monkeypatch.setenv("LATE_ADDITION", "not-seen")  # the env is computed once, at construction
    result = (await call(box, "run", command="env")).result
    assert "sk-from-service" not in result
    assert "LATE_ADDITION" not in result
    assert "PYTHONDONTWRITEBYTECODE=1" in result


async def test_run_output_keeps_head_and_tail(ws: Workspace) -> None:
    box = Toolbox(ws, ("run",), output_cap=900, env={"PATH": os.environ["PATH"]})
    command = "echo HEAD-MARKER; seq 1 5000; echo TAIL-MARKER"
    result = (await call(box, "run", command=command)).result
    assert result.startswith("exit code: 0\nHEAD-MARKER\n")
    assert result.endswith("TAIL-MARKER\n")
    assert "bytes elided" in result
    assert "\n2500\n" not in result


async def test_run_timeout_kills_the_process_group(ws: Workspace) -> None:
    box = Toolbox(ws, ("run",), command_timeout=1, env={"PATH": os.environ["PATH"]})
    started = time.monotonic()
    record = await call(box, "run", command="echo started; sleep 30 & echo $! > child.pid; wait")
    assert time.monotonic() - started < 10
    assert record.is_error
    assert record.result.startswith("error: command timed out (exit code: -1)\nstarted\n")
    assert "timed out after 1s" in record.result
    assert wait_dead(int((ws.root / "child.pid").read_text()))


async def test_run_budget_bounds_the_command_timeout(box: Toolbox, ws: Workspace) -> None:
    started = time.monotonic()
    record = await call(box, "run", timeout=0.5, command="sleep 30 & echo $! > child.pid; wait")
    assert time.monotonic() - started < 10
    assert "timed out after 0.5s" in record.result
    assert wait_dead(int((ws.root / "child.pid").read_text()))
    record = await call(box, "run", timeout=0, command="echo never")
    assert record.is_error
    assert record.result == "error: no wall time left in the run's budget to start a command"


async def test_cancelling_run_kills_its_process_group(box: Toolbox, ws: Workspace) -> None:
    pid_file = ws.root / "child.pid"
    task = asyncio.create_task(call(box, "run", command="sleep 30 & echo $! > child.pid; wait"))
    for _ in range(200):
        if pid_file.exists() and pid_file.read_text().strip():
            break
        await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert wait_dead(int(pid_file.read_text()))


# --- note ---


async def test_note_appends_to_state(box: Toolbox, ws: Workspace) -> None:
    assert (await call(box, "note", text="tried X; it failed")).result == "noted"
    assert (await call(box, "note", text="next: try Y")).result == "noted"
    assert ws.read_state() == "tried X; it failed\n\nnext: try Y\n"
    assert not (ws.root / "STATE.md").exists()


async def test_note_errors(box: Toolbox, ws: Workspace) -> None:
    record = await call(box, "note", text=" ")
    assert record.is_error
    assert record.result == "error: note is empty"
    record = await call(box, "note", text="x" * 10_000)
    assert record.result.startswith("error: note of 10000 bytes is over the limit")
    assert ws.read_state() == ""
