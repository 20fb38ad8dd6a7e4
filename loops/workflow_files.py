"""Workflow files: YAML front matter between two `---` lines, then a Jinja2 template of the task.

Parsing collects every problem in a file before giving up, each with the 1-based line it is on,
so `loopwright workflows check` can show them all at once. Lines come from the YAML node tree:
the front matter starts on line 2, so a node mark's 0-based line plus 2 is its line in the
file; a template line n is the file line of the closing `---` plus n.

Templates render in a Jinja2 sandbox with `StrictUndefined`: workflow files may come from
repositories, and a misspelt variable must fail loudly instead of rendering as nothing. The
sandbox refuses unsafe attribute access (``''.__class__``); it does not bound the memory or time
a template may use.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from jinja2 import StrictUndefined, Template, TemplateSyntaxError, meta, nodes
from jinja2.sandbox import SandboxedEnvironment
from pydantic import ValidationError

from loops.errors import WorkflowError, WorkflowProblem
from loops.workflow_schema import (
    Loc,
    WorkflowModel,
    cross_field_problems,
    describe_error,
    did_you_mean,
    shown,
    to_workflow,
)
from loops.workflows import Workflow

TEMPLATE_VARIABLES = (
    "instruction",
    "findings",
    "state",
    "turn",
    "repo",
    "pr",
    "source",
    "requested_by",
)
"""What the engine passes to every render (each may be None)."""

_FRONT_MATTER_LINE = 2

Found = tuple[int, str]
"""A problem before it is tied to a path: (line, reason)."""


_ENV = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


@dataclass(frozen=True, kw_only=True)
class _Parts:
    front: str
    body: str
    closing_line: int
    """1-based line of the closing `---`; template line n is file line closing_line + n."""


@dataclass(kw_only=True)
class _FrontMatter:
    data: dict[str, Any] | None = None
    lines: dict[Loc, int] = field(default_factory=dict)
    found: list[Found] = field(default_factory=list)


def parse_workflow(text: str, path: str = "<string>") -> Workflow:
    """Parse and validate one workflow file's text.

    Raises:
        WorkflowError: listing every problem found, each with its line.
    """
    parts = _split(text)
    if isinstance(parts, tuple):
        raise WorkflowError([_problem(path, parts)])
    front = _load_front_matter(parts.front)
    found = list(front.found)
    model: WorkflowModel | None = None
    if front.data is not None:
        model, more = _validate(front.data, front.lines)
        found += more
    found += _check_template(parts)
    if found or model is None:
        raise WorkflowError([_problem(path, f) for f in sorted(found, key=lambda f: f[0])])
    return to_workflow(model, template=parts.body, source=text, path=path)


def load_workflow(path: Path) -> Workflow:
    """Read and parse one workflow file; an unreadable file is a `WorkflowError` too."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        problem = WorkflowProblem(path=str(path), line=0, reason=f"cannot read file: {reason}")
        raise WorkflowError([problem]) from exc
    return parse_workflow(text, str(path))


def load_workflows(directory: Path) -> tuple[dict[str, Workflow], list[WorkflowProblem]]:
    """Every `*.md` file directly in `directory`, in name order.

    Returns:
        The valid workflows by name, and the problems of the others. A name defined twice keeps
        its first file; the second is a problem. Hidden files (editor backups) are skipped.
    """
    if not directory.is_dir():
        return {}, [WorkflowProblem(path=str(directory), line=0, reason="not a directory")]
    files = sorted(p for p in directory.glob("*.md") if p.is_file() and not p.name.startswith("."))
    workflows: dict[str, Workflow] = {}
    problems: list[WorkflowProblem] = []
    for file in files:
        try:
            workflow = load_workflow(file)
        except WorkflowError as exc:
            problems += exc.problems
            continue
        first = workflows.setdefault(workflow.name, workflow)
        if first is not workflow:
            reason = f"duplicate workflow name {workflow.name!r}: also defined in {first.path}"
            problems.append(
                WorkflowProblem(path=workflow.path, line=_name_line(workflow), reason=reason)
            )
    return workflows, problems


def check_paths(paths: Sequence[Path]) -> tuple[list[Workflow], list[WorkflowProblem]]:
    """What `loopwright workflows check PATH...` reports: each path is a file or a directory."""
    workflows: list[Workflow] = []
    problems: list[WorkflowProblem] = []
    for path in paths:
        if path.is_dir():
            found, more = load_workflows(path)
            workflows += found.values()
            problems += more
            continue
        try:
            workflows.append(load_workflow(path))
        except WorkflowError as exc:
            problems += exc.problems
    return workflows, problems


def render_task(workflow: Workflow, **variables: object) -> str:
    """The maker's task: the workflow's template rendered with the engine's variables.

    Raises:
        WorkflowError: the template failed (an undefined variable, a sandbox violation, an
            error raised by an expression), located at the template's line when known.
    """
    try:
        return _compiled(workflow.template).render(**variables)
    except Exception as exc:  # template code is foreign: any failure is the workflow's
        where = _template_line(exc)
        line = _body_offset(workflow) + where if where else 0
        reason = f"cannot render template ({type(exc).__name__}): {exc}"
        problem = WorkflowProblem(path=workflow.path or "<string>", line=line, reason=reason)
        raise WorkflowError([problem]) from exc


def _problem(path: str, found: Found) -> WorkflowProblem:
    return WorkflowProblem(path=path, line=found[0], reason=found[1])


def _split(text: str) -> _Parts | Found:
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        return 1, "missing front matter: the file must start with a '---' line"
    for index, line in enumerate(lines[1:], start=1):
        if line.strip() == "---":
            return _Parts(
                front="".join(lines[1:index]),
                body="".join(lines[index + 1 :]),
                closing_line=index + 1,
            )
    return 1, "front matter is not closed: no second '---' line"


def _load_front_matter(text: str) -> _FrontMatter:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = None if node is None else loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        return _FrontMatter(found=[_yaml_problem(exc)])
    except yaml.YAMLError as exc:
        return _FrontMatter(found=[(1, f"invalid YAML in front matter: {exc}")])
    finally:
        loader.dispose()
    if node is None or data is None:
        return _FrontMatter(
            found=[(1, "front matter is empty: it needs at least 'name' and 'exit'")]
        )
    if not isinstance(data, dict):
        line = node.start_mark.line + _FRONT_MATTER_LINE
        return _FrontMatter(found=[(line, f"front matter must be a mapping, got {shown(data)}")])
    front = _FrontMatter(data=data)
    _index(node, (), front)
    return front


def _yaml_problem(exc: yaml.MarkedYAMLError) -> Found:
    mark = exc.problem_mark or exc.context_mark
    line = 1 if mark is None else mark.line + _FRONT_MATTER_LINE
    what = " ".join(part for part in (exc.context, exc.problem) if part)
    return line, f"invalid YAML: {what}"


def _index(node: yaml.Node, path: Loc, front: _FrontMatter) -> None:
    """Record the line of every key and list item, and flag keys given twice (YAML would
    silently keep the last)."""
    front.lines.setdefault(path, node.start_mark.line + _FRONT_MATTER_LINE)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = str(key_node.value)
            line = key_node.start_mark.line + _FRONT_MATTER_LINE
            if (*path, key) in front.lines:
                front.found.append((line, f"duplicate key {key!r}"))
                continue
            front.lines[(*path, key)] = line
            _index(value_node, (*path, key), front)
    elif isinstance(node, yaml.SequenceNode):
        for position, item in enumerate(node.value):
            _index(item, (*path, position), front)


def _validate(
    data: dict[str, Any], lines: dict[Loc, int]
) -> tuple[WorkflowModel | None, list[Found]]:
    found = [(_line_of(lines, loc), reason) for loc, reason in cross_field_problems(data)]
    try:
        model = WorkflowModel.model_validate(data)
    except ValidationError as exc:
        found += [(_line_of(lines, error["loc"]), describe_error(error)) for error in exc.errors()]
        return None, found
    return model, found


def _line_of(lines: dict[Loc, int], loc: Loc) -> int:
    """The line of the deepest key on `loc` that is in the file (a missing key: its parent).
    A non-string key such as `1:` is indexed by its text, so a part is tried both ways."""
    path: Loc = ()
    for part in loc:
        step = next((p for p in (part, str(part)) if (*path, p) in lines), None)
        if step is None:
            break
        path = (*path, step)
    return lines.get(path, 1)


def _check_template(parts: _Parts) -> list[Found]:
    if not parts.body.strip():
        return [
            (parts.closing_line, "the template is empty: write the task after the front matter")
        ]
    try:
        tree = _ENV.parse(parts.body)
        _ENV.compile(tree)
    except TemplateSyntaxError as exc:
        line = parts.closing_line + (exc.lineno or 1)
        return [(line, f"template syntax error: {exc.message or exc}")]
    unknown = meta.find_undeclared_variables(tree) - set(TEMPLATE_VARIABLES) - set(_ENV.globals)
    return [
        (
            parts.closing_line + _first_use(tree, name),
            f"template uses unknown variable {name!r}{did_you_mean(name, TEMPLATE_VARIABLES)}; "
            f"known variables: {', '.join(TEMPLATE_VARIABLES)}",
        )
        for name in sorted(unknown)
    ]


def _name_line(workflow: Workflow) -> int:
    parts = _split(workflow.source)
    if isinstance(parts, tuple):
        return 0
    return _load_front_matter(parts.front).lines.get(("name",), 0)


def _first_use(tree: nodes.Template, name: str) -> int:
    lines = [n.lineno for n in tree.find_all(nodes.Name) if n.name == name and n.ctx == "load"]
    return min(lines, default=1)


@functools.lru_cache(maxsize=64)
def _compiled(template: str) -> Template:
    return _ENV.from_string(template)


def _body_offset(workflow: Workflow) -> int:
    """The file line of the closing `---`, when the template is the tail of the source."""
    if not workflow.source.endswith(workflow.template):
        return 0
    return workflow.source[: len(workflow.source) - len(workflow.template)].count("\n")


def _template_line(exc: Exception) -> int:
    """The template line an exception was raised from (Jinja rewrites tracebacks so template
    frames carry template line numbers), 0 when there is none."""
    if isinstance(exc, TemplateSyntaxError) and exc.lineno:
        return exc.lineno
    line, tb = 0, exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line
