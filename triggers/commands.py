"""The command grammar of comments and messages, shared by the GitHub and Slack triggers.

One command per line, in order::

    /loop <workflow> [instruction]    RunCommand
    /loop stop                        StopCommand
    /loop status                      StatusCommand
    /loop resume [run]                ResumeCommand
    @<bot> <instruction>              MentionCommand (the caller runs the default workflow)

`@<bot> /loop …` is the same as `/loop …`. A line that starts with `/loop` but does not fit
becomes an `InvalidCommand` whose reason says why and how to write it. Lines that are not shown
as the author's own words never count: fenced code blocks, quoted lines and HTML comments, so
quoting someone's command in a reply does not run it again. Parsing is pure: who may run what
is the handler's decision, not the grammar's.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypeAlias

WORKFLOW_NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,63}$"
RESERVED_WORDS = frozenset({"stop", "status", "resume"})
MAX_INSTRUCTION_CHARS = 4_000
MAX_COMMANDS = 10
MAX_RUN_REF_CHARS = 100
USAGE = "usage: /loop <workflow> [instruction] | /loop stop | /loop status | /loop resume [run]"

_WORKFLOW_NAME = re.compile(WORKFLOW_NAME_PATTERN)
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_LOOP = re.compile(r"/loop(?=\s|$)", re.IGNORECASE)
_FENCE = re.compile(r"`{3,}|~{3,}")
_RUN_REF = re.compile(rf"[\x21-\x7e]{{1,{MAX_RUN_REF_CHARS}}}")
_PREVIEW_CHARS = 40


@dataclass(frozen=True)
class RunCommand:
    """`/loop <workflow> [instruction]`: start a run of `workflow`.

    Attributes:
        workflow: a valid workflow name; whether such a workflow exists is the caller's check.
        instruction: the rest of the line, stripped; may be empty.
    """

    workflow: str
    instruction: str = ""


@dataclass(frozen=True)
class MentionCommand:
    """`@<bot> <instruction>`: start a run of the default workflow with `instruction`."""

    instruction: str


@dataclass(frozen=True)
class StopCommand:
    """`/loop stop`: cancel the active run of this pull request, issue or thread."""


@dataclass(frozen=True)
class StatusCommand:
    """`/loop status`: report on the runs of this pull request, issue or thread."""


@dataclass(frozen=True)
class ResumeCommand:
    """`/loop resume [run]`: resume a run that stopped.

    Attributes:
        run_ref: the run as the user wrote it (one token), or None for the latest one here.
    """

    run_ref: str | None = None


@dataclass(frozen=True)
class InvalidCommand:
    """A line addressed to the service that does not parse; `reason` is meant for its author."""

    reason: str


Command: TypeAlias = (
    RunCommand | MentionCommand | StopCommand | StatusCommand | ResumeCommand | InvalidCommand
)


def parse_commands(text: str, *, bot_name: str | None) -> list[Command]:
    """The commands in `text`, one per line, in order.

    Args:
        text: a comment or message body, as Markdown.
        bot_name: the service's login (`loopwright` or `loopwright[bot]`, any case); mentions
            are only recognised when it is given.

    At most `MAX_COMMANDS` are returned; a further one is replaced by an `InvalidCommand`
    saying so, and the lines after it are not read.
    """
    mention = _mention_pattern(bot_name)
    commands: list[Command] = []
    for line in _visible_lines(text):
        command = _parse_line(line, mention)
        if command is None:
            continue
        if len(commands) == MAX_COMMANDS:
            commands.append(
                InvalidCommand(
                    f"at most {MAX_COMMANDS} commands per comment; "
                    "this one and the ones after it were not read"
                )
            )
            break
        commands.append(command)
    return commands


def bare_login(bot_name: str) -> str:
    """`bot_name` without a leading `@` and a trailing `[bot]`, lower-cased."""
    login = bot_name.strip().removeprefix("@").lower()
    return login.removesuffix("[bot]")


def _visible_lines(text: str) -> Iterator[str]:
    """The stripped lines of `text` that render as the author's own prose."""
    fence: str | None = None
    in_comment = False
    for raw in _LINE_BREAK.split(text):
        line = raw.strip()
        if fence is not None:
            # A fence closes with a line of at least as many of the same character, nothing else.
            if len(line) >= len(fence) and line == fence[0] * len(line):
                fence = None
            continue
        if in_comment:
            in_comment = "-->" not in line
            continue
        if opening := _FENCE.match(line):
            # "```x```" is inline code: a backtick fence's info string holds no backtick. Either
            # way the line itself starts with the fence, so it is no command.
            if not (line[0] == "`" and "`" in line[opening.end() :]):
                fence = opening.group()
        elif line.startswith("<!--"):
            in_comment = "-->" not in line[4:]
        elif not line.startswith(">"):
            yield line


def _mention_pattern(bot_name: str | None) -> re.Pattern[str] | None:
    if bot_name is None or not bare_login(bot_name):
        return None
    login = re.escape(bare_login(bot_name))
    # `@loopwright-dev` and `@loopwrightx` are someone else; `@loopwright:` is still us.
    return re.compile(rf"@{login}(?:\[bot\])?[:,]?(?=\s|$)", re.IGNORECASE)


def _parse_line(line: str, mention: re.Pattern[str] | None) -> Command | None:
    if mention is not None and (addressed := mention.match(line)):
        rest = line[addressed.end() :].strip()
        if not _LOOP.match(rest):
            return _parse_mention(line[: addressed.end()], rest)
        line = rest  # "@bot /loop stop" means "/loop stop", not the default workflow
    if loop := _LOOP.match(line):
        return _parse_loop(line[loop.end() :].strip())
    return None


def _parse_loop(rest: str) -> Command:
    parts = rest.split(maxsplit=1)
    if not parts:
        return InvalidCommand(f"'/loop' needs a workflow name or stop, status, resume; {USAGE}")
    word = parts[0]
    tail = parts[1].strip() if len(parts) > 1 else ""
    keyword = word.lower()
    if keyword in ("stop", "status"):
        if tail:
            return InvalidCommand(
                f"'/loop {keyword}' takes no arguments, got {_preview(tail)!r}; {USAGE}"
            )
        return StopCommand() if keyword == "stop" else StatusCommand()
    if keyword == "resume":
        return _parse_resume(tail)
    if not _WORKFLOW_NAME.fullmatch(word):
        return InvalidCommand(
            f"{_preview(word)!r} is not a workflow name (a lowercase letter, then up to 63 "
            f"lowercase letters, digits, '-' or '_'); {USAGE}"
        )
    problem = _instruction_problem(tail)
    return InvalidCommand(problem) if problem else RunCommand(word, tail)


def _parse_resume(tail: str) -> Command:
    if not tail:
        return ResumeCommand()
    if not _RUN_REF.fullmatch(tail):
        return InvalidCommand(
            f"'/loop resume' takes at most one run (one word of up to {MAX_RUN_REF_CHARS} "
            f"characters), got {_preview(tail)!r}; {USAGE}"
        )
    return ResumeCommand(tail)


def _parse_mention(address: str, instruction: str) -> Command:
    handle = address.rstrip(":,")
    if not instruction:
        return InvalidCommand(f"say what to do after {handle!r}: '{handle} <instruction>'")
    problem = _instruction_problem(instruction)
    return InvalidCommand(problem) if problem else MentionCommand(instruction)


def _instruction_problem(instruction: str) -> str | None:
    if len(instruction) > MAX_INSTRUCTION_CHARS:
        return (
            f"the instruction is {len(instruction)} characters long; "
            f"the limit is {MAX_INSTRUCTION_CHARS}"
        )
    # Jobs are stored as text: PostgreSQL refuses NUL, and UTF-8 refuses lone surrogates.
    if "\x00" in instruction:
        return "the instruction must not contain NUL characters"
    try:
        instruction.encode("utf-8")
    except UnicodeEncodeError:
        return "the instruction must be valid Unicode text (it contains a lone surrogate)"
    return None


def _preview(text: str) -> str:
    return text if len(text) <= _PREVIEW_CHARS else text[: _PREVIEW_CHARS - 1] + "…"
