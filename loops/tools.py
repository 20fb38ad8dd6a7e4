"""The maker's tools: fixed names, JSON-schema specs, and a `Toolbox` that runs them.

Every mistake a model can make (an unknown tool, bad JSON, a path outside the workspace, a
missing file) comes back as an error record the model can read and act on; `Toolbox.call`
raises only for cancellation.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from loops.errors import WorkspaceError
from loops.model import ToolCall, ToolSpec
from loops.processes import DEFAULT_OUTPUT_CAP, run_command, scrubbed_env
from loops.records import ToolCallRecord
from loops.workflows import TOOL_NAMES
from loops.workspace import MAX_NOTE_BYTES, Workspace, walk, write_atomically

MAX_READ_BYTES = 100_000
MAX_LIST_ENTRIES = 500
MAX_SEARCH_MATCHES = 200
MAX_SEARCH_FILE_BYTES = 2_000_000
MAX_MATCH_LINE_CHARS = 300
_BINARY_SNIFF_BYTES = 8_192


def _schema(properties: dict[str, str], required: tuple[str, ...]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            name: {"type": "string", "description": text} for name, text in properties.items()
        },
        "required": list(required),
        "additionalProperties": False,
    }


_PATH_ARG = "Path relative to the workspace root, e.g. 'src/app.py'."
_DIR_ARG = "File or directory relative to the workspace root; defaults to '.' (the root)."

TOOL_SPECS: dict[str, ToolSpec] = {
    "read_file": ToolSpec(
        name="read_file",
        description=(
            "Read a text file from the workspace and return its exact contents. Files over "
            f"{MAX_READ_BYTES} bytes are cut at a line boundary and the result says so; "
            "binary files are refused."
        ),
        parameters=_schema({"path": _PATH_ARG}, ("path",)),
    ),
    "write_file": ToolSpec(
        name="write_file",
        description=(
            "Create or overwrite a text file in the workspace with `content`, which must be "
            "the complete new file (there is no partial edit). Missing parent directories are "
            "created. Paths inside .git/ are refused."
        ),
        parameters=_schema(
            {"path": _PATH_ARG, "content": "The full new contents of the file (UTF-8 text)."},
            ("path", "content"),
        ),
    ),
    "list_files": ToolSpec(
        name="list_files",
        description=(
            "List files and directories under `path`, recursively, as paths relative to the "
            "workspace root; directories end with '/'. .git, __pycache__, node_modules and "
            f".venv are skipped. At most {MAX_LIST_ENTRIES} entries are shown."
        ),
        parameters=_schema({"path": _DIR_ARG}, ()),
    ),
    "search": ToolSpec(
        name="search",
        description=(
            "Search the text files under `path` for a Python regular expression, line by "
            "line. Returns 'path:line: text' for each matching line, at most "
            f"{MAX_SEARCH_MATCHES}. Skips the same directories as list_files, binary files "
            "and symlinks."
        ),
        parameters=_schema(
            {
                "pattern": "A Python `re` regular expression, e.g. 'def \\w+_handler'.",
                "path": _DIR_ARG,
            },
            ("pattern",),
        ),
    ),
    "run": ToolSpec(
        name="run",
        description=(
            "Run a shell command (sh -c) in the workspace root and return its exit code and "
            "combined stdout and stderr; long output keeps the head and the tail. Stdin is "
            "empty and the environment holds no credentials. The command and everything it "
            "starts are killed at the timeout, so do not start servers or watchers."
        ),
        parameters=_schema({"command": "The shell command line to run."}, ("command",)),
    ),
    "note": ToolSpec(
        name="note",
        description=(
            "Append a note to STATE.md, the run's memory. Later turns start from fresh "
            "context and see STATE.md, not this conversation: record decisions, progress, "
            f"dead ends and next steps. At most {MAX_NOTE_BYTES} bytes per note."
        ),
        parameters=_schema({"text": "The note, in a sentence or a short paragraph."}, ("text",)),
    ),
}


class _ToolError(Exception):
    """A model mistake; its message is shown to the model after "error: "."""


_Handler = Callable[[dict[str, str], float | None], Awaitable[str]]


class Toolbox:
    """Runs the maker's enabled tools inside one workspace.

    Args:
        workspace: where file tools and commands operate.
        enabled: the workflow's tool names; others are refused when called.
        command_timeout: seconds a `run` command may take before its process group is killed.
        output_cap: bytes of `run` output kept (head and tail).
        env: base environment for `run`; it is scrubbed of secrets either way. None: the
            service's own environment, scrubbed once here.
    """

    def __init__(
        self,
        workspace: Workspace,
        enabled: tuple[str, ...],
        *,
        command_timeout: float = 300,
        output_cap: int = DEFAULT_OUTPUT_CAP,
        env: Mapping[str, str] | None = None,
    ) -> None:
        unknown = [name for name in enabled if name not in TOOL_SPECS]
        if unknown:
            raise ValueError(f"unknown tool names {unknown!r}; known: {', '.join(TOOL_NAMES)}")
        self.workspace = workspace
        self.enabled = tuple(name for name in TOOL_NAMES if name in enabled)
        self.command_timeout = command_timeout
        self.output_cap = output_cap
        self._env = scrubbed_env(env)
        self._handlers: dict[str, _Handler] = {
            "read_file": self._read_file,
            "write_file": self._write_file,
            "list_files": self._list_files,
            "search": self._search,
            "run": self._run,
            "note": self._note,
        }

    def specs(self) -> tuple[ToolSpec, ...]:
        """Specs of the enabled tools, in `TOOL_NAMES` order."""
        specs = []
        for name in self.enabled:
            spec = TOOL_SPECS[name]
            if name == "run":
                spec = replace(
                    spec, description=f"{spec.description} Timeout: {self.command_timeout:g}s."
                )
            specs.append(spec)
        return tuple(specs)

    # `timeout` is a budget handed down to the `run` process, which must kill its own group and
    # report the timeout as a result, so an asyncio.timeout around this coroutine would not do.
    async def call(
        self,
        call: ToolCall,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> ToolCallRecord:
        """Execute one tool call; model mistakes become `is_error=True` records.

        Args:
            call: the call as the model made it.
            timeout: the run's remaining wall-time budget; `run` stops at the smaller of this
                and `command_timeout`.
        """
        started = time.monotonic()
        is_error = True
        try:
            result = await self._dispatch(call, timeout)
            is_error = False
        except (_ToolError, WorkspaceError) as exc:
            result = f"error: {exc}"
        except OSError as exc:
            result = f"error: {_describe_os_error(exc, self.workspace)}"
        except UnicodeError as exc:  # e.g. a lone surrogate in `content`
            result = f"error: {exc}"
        return ToolCallRecord(
            name=call.name,
            arguments=call.arguments,
            result=result,
            is_error=is_error,
            duration_s=time.monotonic() - started,
        )

    async def _dispatch(self, call: ToolCall, budget: float | None) -> str:
        if call.name not in self.enabled:
            known = "unknown tool" if call.name not in TOOL_SPECS else "tool not enabled here"
            available = ", ".join(self.enabled) or "none"
            raise _ToolError(f"{known}: {call.name!r}; available tools: {available}")
        args = _parse_arguments(TOOL_SPECS[call.name], call.arguments)
        return await self._handlers[call.name](args, budget)

    async def _read_file(self, args: dict[str, str], _: float | None) -> str:
        return await asyncio.to_thread(self._read_file_sync, args["path"])

    def _read_file_sync(self, path: str) -> str:
        target = self.workspace.resolve(path)
        if target.is_dir():
            raise _ToolError(f"{path!r} is a directory; use list_files to see what it holds")
        if target.exists() and not target.is_file():
            # A FIFO or device would block the read (and this thread) indefinitely.
            raise _ToolError(f"{path!r} is not a regular file")
        with target.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            data = handle.read(MAX_READ_BYTES + 1)
        if b"\0" in data[:_BINARY_SNIFF_BYTES]:
            raise _ToolError(f"{path!r} looks binary (it contains NUL bytes); only text is read")
        if len(data) <= MAX_READ_BYTES:
            return data.decode("utf-8", errors="replace") if data else "[empty file]"
        cut = data.rfind(b"\n", 0, MAX_READ_BYTES) + 1 or MAX_READ_BYTES
        return (
            data[:cut].decode("utf-8", errors="replace")
            + f"\n[truncated: showed the first {cut} of {size} bytes; "
            "use search or run (e.g. sed -n '2000,2100p') to read the rest]"
        )

    async def _write_file(self, args: dict[str, str], _: float | None) -> str:
        return await asyncio.to_thread(self._write_file_sync, args["path"], args["content"])

    def _write_file_sync(self, path: str, content: str) -> str:
        target = self.workspace.resolve(path, for_write=True)
        if target.is_dir():
            raise _ToolError(f"{path!r} is a directory")
        data = content.encode("utf-8")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except FileExistsError as exc:
            raise _ToolError(f"a parent of {path!r} is a file, not a directory") from exc
        write_atomically(target, data)
        return f"wrote {len(data)} bytes to {self.workspace.relative(target)}"

    async def _list_files(self, args: dict[str, str], _: float | None) -> str:
        return await asyncio.to_thread(self._list_files_sync, args.get("path", "."))

    def _list_files_sync(self, path: str) -> str:
        base = self.workspace.resolve(path)
        if not base.exists():
            raise _ToolError(f"no such file or directory: {path!r}")
        if not base.is_dir():
            return self.workspace.relative(base)
        shown: list[str] = []
        total = 0
        for entry in walk(base):
            total += 1
            if len(shown) < MAX_LIST_ENTRIES:
                rel = self.workspace.relative(Path(entry.path))
                shown.append(rel + "/" if entry.is_dir(follow_symlinks=False) else rel)
        if not shown:
            return f"{path!r} is empty"
        if total > len(shown):
            shown.append(
                f"[... {total - len(shown)} more entries omitted; list a subdirectory to see them]"
            )
        return "\n".join(shown)

    async def _search(self, args: dict[str, str], _: float | None) -> str:
        return await asyncio.to_thread(self._search_sync, args["pattern"], args.get("path", "."))

    def _search_sync(self, pattern: str, path: str) -> str:
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            raise _ToolError(f"invalid regular expression {pattern!r}: {exc}") from exc
        base = self.workspace.resolve(path)
        if not base.exists():
            raise _ToolError(f"no such file or directory: {path!r}")
        matches: list[str] = []
        for file in _search_targets(base):
            matches.extend(self._search_file(regex, file, MAX_SEARCH_MATCHES - len(matches)))
            if len(matches) >= MAX_SEARCH_MATCHES:
                matches.append(
                    f"[stopped after {MAX_SEARCH_MATCHES} matches; narrow the pattern or path]"
                )
                break
        return "\n".join(matches) or f"no matches for {pattern!r} under {path!r}"

    def _search_file(self, regex: re.Pattern[str], file: Path, limit: int) -> list[str]:
        try:
            if file.stat().st_size > MAX_SEARCH_FILE_BYTES:
                return []
            data = file.read_bytes()
        except OSError:
            return []  # unreadable files are skipped, as grep -s would
        if b"\0" in data[:_BINARY_SNIFF_BYTES]:
            return []
        rel = self.workspace.relative(file)
        found: list[str] = []
        for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
            if regex.search(line):
                found.append(f"{rel}:{number}: {_clip(line)}")
                if len(found) >= limit:
                    break
        return found

    async def _run(self, args: dict[str, str], budget: float | None) -> str:
        command = args["command"]
        if not command.strip():
            raise _ToolError("command is empty")
        limit = self.command_timeout if budget is None else min(self.command_timeout, budget)
        if limit <= 0:
            raise _ToolError("no wall time left in the run's budget to start a command")
        result = await run_command(
            command,
            cwd=self.workspace.root,
            timeout=limit,
            env=self._env,
            output_cap=self.output_cap,
        )
        output = result.output if result.output.strip() else "[no output]"
        if result.timed_out:
            raise _ToolError(f"command timed out (exit code: -1)\n{output}")
        return f"exit code: {result.exit_code}\n{output}"

    async def _note(self, args: dict[str, str], _: float | None) -> str:
        await asyncio.to_thread(self.workspace.append_state, args["text"])
        return "noted"


def _parse_arguments(spec: ToolSpec, raw: str) -> dict[str, str]:
    """Check the model's JSON arguments against the tool's (flat, all-string) schema."""
    try:
        parsed: object = json.loads(raw) if raw.strip() else {}
    except json.JSONDecodeError as exc:
        raise _ToolError(
            f"arguments for {spec.name} are not valid JSON ({exc.msg} at position {exc.pos}); "
            "send a JSON object"
        ) from exc
    if not isinstance(parsed, dict):
        raise _ToolError(f"arguments for {spec.name} must be a JSON object")
    properties: dict[str, Any] = spec.parameters["properties"]
    required: list[str] = spec.parameters["required"]
    # A null optional argument means "use the default"; models send that often.
    args = {k: v for k, v in parsed.items() if v is not None or k in required}
    expected = ", ".join(properties) or "none"
    for name, value in args.items():
        if name not in properties:
            raise _ToolError(f"unexpected argument {name!r} for {spec.name}; expected: {expected}")
        if not isinstance(value, str):
            raise _ToolError(
                f"argument {name!r} of {spec.name} must be a string, not {_json_type(value)}"
            )
    missing = [name for name in required if name not in args]
    if missing:
        raise _ToolError(f"missing required argument {missing[0]!r} for {spec.name}")
    return args


def _json_type(value: object) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", list: "an array"}
    return names.get(type(value), "an object" if isinstance(value, dict) else "null")


def _describe_os_error(exc: OSError, workspace: Workspace) -> str:
    reasons = {
        FileNotFoundError: "no such file or directory",
        IsADirectoryError: "that path is a directory",
        NotADirectoryError: "a parent of that path is a file, not a directory",
        PermissionError: "permission denied",
    }
    reason = reasons.get(type(exc)) or exc.strerror or str(exc)
    # Name the file relative to the root: the model never saw the absolute path.
    filename = Path(os.fsdecode(exc.filename)) if exc.filename else None
    if filename is not None and filename.is_relative_to(workspace.root):
        return f"{reason}: {workspace.relative(filename)!r}"
    return reason


def _search_targets(base: Path) -> Iterator[Path]:
    if base.is_file():
        yield base
        return
    for entry in walk(base):
        # Symlinked files are skipped: one could point outside the workspace.
        if entry.is_file(follow_symlinks=False):
            yield Path(entry.path)


def _clip(line: str) -> str:
    if len(line) <= MAX_MATCH_LINE_CHARS:
        return line
    return line[:MAX_MATCH_LINE_CHARS] + f" [... {len(line) - MAX_MATCH_LINE_CHARS} chars]"
