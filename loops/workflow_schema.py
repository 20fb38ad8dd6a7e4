"""The front matter of a workflow file as pydantic models, and their conversion to `Workflow`.

The models see plain YAML data and reject anything they do not know (`extra="forbid"`, strict
types: YAML already yields real numbers and booleans, so ``"6"`` is not a turn count). Validators
raise `problem(...)` with a whole sentence; every other pydantic error is phrased by
`describe_error`. `loops.workflow_files` puts line numbers on both.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from loops.brakes import Brakes
from loops.crontab import crontab_trigger
from loops.workflows import (
    TOOL_NAMES,
    CheckSpec,
    ExitCondition,
    JudgeSpec,
    OnSuccess,
    ReplyTarget,
    Schedule,
    ToolName,
    Workflow,
    WorkspaceKind,
)

Loc = tuple[str | int, ...]

_NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}")
_REPO = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
_ISSUE = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+#[1-9][0-9]*")
_CRON_PROBE_START = datetime(2000, 1, 1, tzinfo=UTC)
SCHEDULE_NEEDS = ("max_turns", "max_wall_seconds")
SCHEDULE_NEEDS_ONE_OF = ("max_cost_usd", "max_total_tokens")


def problem(reason: str) -> PydanticCustomError:
    """A validation error whose message is `reason`, verbatim (braces in it are not fields)."""
    return PydanticCustomError("workflow", "{reason}", {"reason": reason})


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _command_word(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise problem(
            f"name {value!r} is not a command word: use 1-64 lowercase letters, digits, "
            "'-' or '_', starting with a letter"
        )
    return value


def _known_tool(value: object) -> object:
    if isinstance(value, str) and value not in TOOL_NAMES:
        raise problem(
            f"unknown tool {value!r}{did_you_mean(value, TOOL_NAMES)}; "
            f"valid tools: {', '.join(TOOL_NAMES)}"
        )
    return value


def _cron(value: str) -> str:
    # Validity does not depend on the zone; the scheduler builds the real trigger with it.
    try:
        trigger = crontab_trigger(value, timezone="UTC")
    except ValueError as exc:
        raise problem(f"schedule.cron {value!r} is not a 5-field cron expression: {exc}") from exc
    if trigger.get_next_fire_time(None, _CRON_PROBE_START) is None:
        raise problem(f"schedule.cron {value!r} never fires")
    return value


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise problem(
            f"schedule.timezone {value!r} is not an IANA time zone (such as 'Europe/Berlin')"
        ) from exc
    return value


def _repo(value: str) -> str:
    if not _REPO.fullmatch(value):
        raise problem(f"schedule.repo {value!r} is not 'owner/name'")
    return value


def _issue(value: str) -> str:
    if not _ISSUE.fullmatch(value):
        raise problem(f"schedule.reply.github_issue {value!r} is not 'owner/name#number'")
    return value


Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
Tool = Annotated[ToolName, BeforeValidator(_known_tool)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


class BrakesModel(_Strict):
    max_turns: PositiveInt = Brakes.max_turns
    max_steps_per_turn: PositiveInt = Brakes.max_steps_per_turn
    max_input_tokens: PositiveInt | None = Brakes.max_input_tokens
    max_output_tokens: PositiveInt | None = Brakes.max_output_tokens
    max_total_tokens: PositiveInt | None = Brakes.max_total_tokens
    max_cost_usd: PositiveFloat | None = Brakes.max_cost_usd
    max_wall_seconds: PositiveFloat | None = Brakes.max_wall_seconds
    per_call_timeout_seconds: PositiveFloat = Brakes.per_call_timeout_seconds


class CheckModel(_Strict):
    run: Text
    name: str = CheckSpec.name
    timeout_seconds: PositiveFloat = CheckSpec.timeout_seconds

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: object) -> object:
        """`- pytest -q` means `- {run: pytest -q}`."""
        return {"run": data} if isinstance(data, str) else data


class JudgeModel(_Strict):
    rubric: Text
    model: Text | None = JudgeSpec.model
    threshold: Annotated[float, Field(ge=0, le=1)] = JudgeSpec.threshold


class ExitModel(_Strict):
    checks: list[CheckModel] = Field(default_factory=list)
    judge: JudgeModel | None = None
    passes: PositiveInt = ExitCondition.passes
    fail_fast: bool = ExitCondition.fail_fast

    @model_validator(mode="after")
    def _checks_something(self) -> Self:
        if not self.checks and self.judge is None:
            raise problem("exit condition checks nothing: add exit.checks, exit.judge, or both")
        return self


class ReplyModel(_Strict):
    slack_channel: Text | None = None
    github_issue: Annotated[str, AfterValidator(_issue)] | None = None


class ScheduleModel(_Strict):
    cron: Annotated[str, AfterValidator(_cron)]
    timezone: Annotated[str, AfterValidator(_timezone)] = Schedule.timezone
    repo: Annotated[str, AfterValidator(_repo)] | None = None
    workdir: Text | None = None
    reply: ReplyModel | None = None
    grace_seconds: NonNegativeInt = Schedule.grace_seconds
    instruction: str = Schedule.instruction

    @model_validator(mode="after")
    def _one_target(self) -> Self:
        if self.repo is not None and self.workdir is not None:
            raise problem("schedule sets both 'repo' and 'workdir': a scheduled run has one target")
        if self.repo is None and self.workdir is None:
            raise problem("schedule needs a target: 'repo' (owner/name, cloned) or 'workdir'")
        return self


class OnSuccessModel(_Strict):
    push: bool = OnSuccess.push


class WorkflowModel(_Strict):
    name: Annotated[str, AfterValidator(_command_word)]
    description: str = ""
    model: Text | None = None
    workspace: WorkspaceKind = "repo"
    tools: list[Tool] = Field(default_factory=lambda: list(TOOL_NAMES))
    brakes: BrakesModel = Field(default_factory=BrakesModel)
    exit: ExitModel
    schedule: ScheduleModel | None = None
    on_success: OnSuccessModel = Field(default_factory=OnSuccessModel)

    @field_validator("tools")
    @classmethod
    def _no_duplicate_tools(cls, tools: list[ToolName]) -> list[ToolName]:
        twice = sorted({tool for tool in tools if tools.count(tool) > 1})
        if twice:
            plural = "s" if len(twice) > 1 else ""
            raise problem(f"duplicate tool{plural} {', '.join(map(repr, twice))} in tools")
        return tools


SECTIONS: dict[tuple[str, ...], type[BaseModel]] = {
    (): WorkflowModel,
    ("brakes",): BrakesModel,
    ("exit",): ExitModel,
    ("exit", "checks"): CheckModel,
    ("exit", "judge"): JudgeModel,
    ("schedule",): ScheduleModel,
    ("schedule", "reply"): ReplyModel,
    ("on_success",): OnSuccessModel,
}
"""Which model validates the mapping at a key path (list indexes left out)."""


def to_workflow(model: WorkflowModel, *, template: str, source: str, path: str) -> Workflow:
    return Workflow(
        name=model.name,
        template=template,
        source=source,
        path=path,
        description=model.description,
        model=model.model,
        workspace=model.workspace,
        tools=tuple(model.tools),
        brakes=Brakes(**model.brakes.model_dump()),
        exit=_exit(model.exit),
        schedule=None if model.schedule is None else _schedule(model.schedule),
        on_success=OnSuccess(push=model.on_success.push),
    )


def _exit(model: ExitModel) -> ExitCondition:
    judge = model.judge
    return ExitCondition(
        checks=tuple(CheckSpec(**check.model_dump()) for check in model.checks),
        judge=None if judge is None else JudgeSpec(**judge.model_dump()),
        passes=model.passes,
        fail_fast=model.fail_fast,
    )


def _schedule(model: ScheduleModel) -> Schedule:
    reply = model.reply
    return Schedule(
        **model.model_dump(exclude={"reply"}),
        reply=None if reply is None else ReplyTarget(**reply.model_dump()),
    )


def cross_field_problems(data: Mapping[str, Any]) -> list[tuple[Loc, str]]:
    """Rules that span sections, checked on the raw data so they are reported even when a
    section also has type errors."""
    found: list[tuple[Loc, str]] = []
    if data.get("schedule") is not None:
        found += _scheduled_brakes(data)
    on_success = data.get("on_success")
    pushes = isinstance(on_success, dict) and on_success.get("push") is True
    if pushes and data.get("workspace") == "none":
        found.append((("on_success", "push"), "on_success.push needs workspace 'pr' or 'repo'"))
    return found


def _scheduled_brakes(data: Mapping[str, Any]) -> list[tuple[Loc, str]]:
    """An unattended run must be bounded by limits its author chose, not by defaults."""
    brakes = data.get("brakes")
    if "brakes" in data and not isinstance(brakes, dict):
        return []  # a type error, reported by the model
    given = brakes or {}
    found: list[tuple[Loc, str]] = [
        (("brakes", key), f"brakes.{key} may not be null on a scheduled workflow")
        for key, value in given.items()
        if value is None and key in BrakesModel.model_fields
    ]
    missing = [key for key in SCHEDULE_NEEDS if key not in given]
    if not any(given.get(key) is not None for key in SCHEDULE_NEEDS_ONE_OF):
        missing.append(" or ".join(SCHEDULE_NEEDS_ONE_OF))
    if missing:
        where: Loc = ("brakes",) if "brakes" in data else ("schedule",)
        found.append(
            (where, f"scheduled workflow needs explicit brakes: missing {', '.join(missing)}")
        )
    return found


_PHRASES = {
    "missing": "missing required key {key!r}{parent}",
    "invalid_key": "key {got}{parent} is not a string",
    "string_type": "{where} must be a string, got {got}",
    "int_type": "{where} must be an integer, got {got}",
    "float_type": "{where} must be a number, got {got}",
    "bool_type": "{where} must be true or false, got {got}",
    "list_type": "{where} must be a list, got {got}",
    "dict_type": "{where} must be a mapping, got {got}",
    "model_type": "{where} must be a mapping, got {got}",
    "model_attributes_type": "{where} must be a mapping, got {got}",
    "greater_than": "{where} must be greater than {gt:g}, got {got}",
    "greater_than_equal": "{where} must be at least {ge:g}, got {got}",
    "less_than": "{where} must be less than {lt:g}, got {got}",
    "less_than_equal": "{where} must be at most {le:g}, got {got}",
    "literal_error": "{where} must be one of {expected}, got {got}",
    "string_too_short": "{where} must not be empty",
    "finite_number": "{where} must be a finite number, got {got}",
}
"""Pydantic error types as sentences; the fields are `describe_error`'s and the error's ctx."""


def describe_error(error: ErrorDetails) -> str:
    """One pydantic error as a sentence that names the key and, where useful, the value."""
    kind, loc, ctx = error["type"], error["loc"], error.get("ctx", {})
    if kind == "workflow":
        return str(ctx["reason"])
    if kind == "extra_forbidden":
        return unknown_key(loc)
    where = dotted(loc)
    if kind not in _PHRASES:
        return f"{where}: {error['msg']}"
    parent = f" in {dotted(loc[:-1])}" if loc[:-1] else ""
    fields = {"where": where, "got": shown(error["input"]), "key": loc[-1], "parent": parent}
    return _PHRASES[kind].format(**fields, **ctx)


def unknown_key(loc: Loc) -> str:
    section = tuple(part for part in loc[:-1] if isinstance(part, str))
    allowed = tuple(SECTIONS[section].model_fields) if section in SECTIONS else ()
    key = str(loc[-1])
    where = f" in {dotted(loc[:-1])}" if loc[:-1] else ""
    hint = did_you_mean(key, allowed)
    if not hint and allowed:
        hint = f"; valid keys: {', '.join(allowed)}"
    return f"unknown key {key!r}{where}{hint}"


def dotted(loc: Loc) -> str:
    """`('exit', 'checks', 0, 'run')` as `exit.checks[0].run`."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text.lstrip(".")


def shown(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."
