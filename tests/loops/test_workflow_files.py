from __future__ import annotations

from pathlib import Path

import pytest

from loops.brakes import Brakes
from loops.errors import WorkflowError, WorkflowProblem
from loops.workflow_files import (
    TEMPLATE_VARIABLES,
    check_paths,
    load_workflow,
    load_workflows,
    parse_workflow,
    render_task,
)
from loops.workflows import TOOL_NAMES, CheckSpec, JudgeSpec, ReplyTarget, Schedule, Workflow

SHIPPED = Path(__file__).resolve().parents[2] / "workflows"

MINIMAL = """\
---
name: demo
exit:
  checks: [pytest -q]
---
{{ instruction }}
"""

SCHEDULED_BRAKES = """\
brakes:
  max_turns: 4
  max_wall_seconds: 600
  max_cost_usd: 1.0
"""

NO_VARIABLES: dict[str, object] = dict.fromkeys(TEMPLATE_VARIABLES)


def problems_of(text: str) -> list[WorkflowProblem]:
    with pytest.raises(WorkflowError) as info:
        parse_workflow(text, "wf.md")
    assert str(info.value) == "\n".join(str(p) for p in info.value.problems)
    return info.value.problems


def only_problem(text: str) -> WorkflowProblem:
    found = problems_of(text)
    assert len(found) == 1, found
    assert found[0].path == "wf.md"
    return found[0]


def with_front(front: str, body: str = "{{ instruction }}\n") -> str:
    return f"---\n{front}---\n{body}"


# --- the shipped workflows -------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(SHIPPED.glob("*.md")), ids=lambda p: p.name)
def test_every_shipped_workflow_parses_and_renders(path: Path) -> None:
    workflow = load_workflow(path)

    assert workflow.name == path.stem
    assert workflow.description
    assert workflow.exit.checks or workflow.exit.judge
    assert render_task(workflow, **NO_VARIABLES).strip()
    full = render_task(
        workflow,
        **NO_VARIABLES | {"instruction": "INSTR", "findings": "FINDINGS", "state": "STATE"},
    )
    assert "INSTR" in full
    assert "FINDINGS" in full
    assert "STATE" in full


def test_shipped_workflows_load_together() -> None:
    workflows, problems = load_workflows(SHIPPED)

    assert problems == []
    assert set(workflows) >= {"fix-tests", "lint-fix", "review", "nightly-deps"}
    fix = workflows["fix-tests"]
    assert fix.workspace == "pr"
    assert fix.tools == TOOL_NAMES
    assert [c.run for c in fix.exit.checks] == ["python -m pytest -q"]
    assert fix.exit.passes == 2
    lint = workflows["lint-fix"]
    assert [c.run for c in lint.exit.checks] == ["ruff check .", "ruff format --check ."]
    assert lint.exit.passes == 1
    review = workflows["review"]
    assert review.tools == ("read_file", "list_files", "search", "note")
    assert review.exit.checks == ()
    assert review.exit.judge is not None
    assert review.exit.judge.threshold == 0.8
    nightly = workflows["nightly-deps"]
    assert nightly.schedule is not None
    assert nightly.schedule.timezone == "UTC"
    assert nightly.schedule.reply is not None
    assert nightly.schedule.reply.slack_channel


# --- valid files ------------------------------------------------------------------------------


def test_minimal_workflow_gets_the_defaults() -> None:
    workflow = parse_workflow(MINIMAL, "demo.md")

    assert workflow == Workflow(
        name="demo",
        template="{{ instruction }}\n",
        source=MINIMAL,
        path="demo.md",
        exit=workflow.exit,
    )
    assert workflow.workspace == "repo"
    assert workflow.tools == TOOL_NAMES
    assert workflow.brakes == Brakes()
    assert workflow.exit.checks == (CheckSpec(run="pytest -q"),)
    assert workflow.exit.passes == 1
    assert workflow.schedule is None
    assert workflow.on_success.push is False


def test_design_example_parses() -> None:
    text = """\
---
name: fix-tests                 # the command word: "/loop fix-tests ..."
description: Make the test suite pass
model: openai/gpt-4.1-mini      # maker; optional, defaults to LOOPWRIGHT_MODEL
workspace: pr                   # pr | repo | none
tools: [read_file, write_file, list_files, search, run, note]
brakes: {max_turns: 6, max_steps_per_turn: 30, max_total_tokens: 400000,
         max_cost_usd: 2.0, max_wall_seconds: 1800}
exit:
  checks:
    - run: pytest -q
    - run: ruff check .
  judge: {model: anthropic/claude-haiku-4-5, rubric: "…", threshold: 0.8}   # optional
  passes: 2                     # consecutive passing checks required
schedule: {cron: "0 3 * * 1", timezone: UTC, repo: owner/name, reply: {slack_channel: C0123}}
                                # target: repo (cloned) or workdir: /path
on_success: {push: true}
---
{{ instruction }}

Checker findings from the last turn:
{{ findings }}
"""
    workflow = parse_workflow(text)

    assert workflow.path == "<string>"
    assert workflow.model == "openai/gpt-4.1-mini"
    assert workflow.brakes == Brakes(
        max_turns=6,
        max_steps_per_turn=30,
        max_total_tokens=400000,
        max_cost_usd=2.0,
        max_wall_seconds=1800,
    )
    assert workflow.exit.checks == (CheckSpec(run="pytest -q"), CheckSpec(run="ruff check ."))
    assert workflow.exit.judge == JudgeSpec(
        model="anthropic/claude-haiku-4-5", rubric="…", threshold=0.8
    )
    assert workflow.exit.passes == 2
    assert workflow.schedule == Schedule(
        cron="0 3 * * 1",
        timezone="UTC",
        repo="owner/name",
        reply=ReplyTarget(slack_channel="C0123"),
    )
    assert workflow.on_success.push is True
    assert workflow.template.startswith("{{ instruction }}")


def test_brakes_keep_defaults_for_keys_not_given() -> None:
    text = with_front(
        "name: demo\nbrakes: {max_turns: 3, max_cost_usd: null, max_wall_seconds: 60}\n"
        "exit: {checks: [{run: make test, name: tests, timeout_seconds: 30}], fail_fast: true}\n"
    )
    workflow = parse_workflow(text)

    assert workflow.brakes == Brakes(max_turns=3, max_cost_usd=None, max_wall_seconds=60.0)
    assert workflow.exit.checks == (CheckSpec(run="make test", name="tests", timeout_seconds=30),)
    assert workflow.exit.fail_fast is True


def test_schedule_with_workdir_and_github_reply() -> None:
    text = with_front(
        "name: nightly\n" + SCHEDULED_BRAKES + "exit: {checks: [make test]}\n"
        "schedule:\n"
        "  cron: '0 4 * * *'\n"
        "  timezone: Europe/Berlin\n"
        "  workdir: /srv/app\n"
        "  reply: {github_issue: acme/app#12}\n"
        "  grace_seconds: 0\n"
        "  instruction: keep it green\n"
    )
    schedule = parse_workflow(text).schedule

    assert schedule == Schedule(
        cron="0 4 * * *",
        timezone="Europe/Berlin",
        workdir="/srv/app",
        reply=ReplyTarget(github_issue="acme/app#12"),
        grace_seconds=0,
        instruction="keep it green",
    )


def test_template_may_use_loop_variables_assignments_and_globals() -> None:
    body = (
        "{% set n = 3 %}{% for i in range(n) %}{{ loop.index }}{% endfor %}\n"
        "{{ instruction }} {{ findings }} {{ state }} {{ turn }} {{ repo }} {{ pr }} "
        "{{ source }} {{ requested_by }}\n"
    )
    workflow = parse_workflow(with_front("name: demo\nexit: {checks: [x]}\n", body))

    assert render_task(workflow, **NO_VARIABLES | {"turn": 2}).startswith("123\nNone None")


# --- problems, each at its line ---------------------------------------------------------------


def test_unknown_top_level_key_with_hint() -> None:
    text = """\
---
name: demo
descripton: typo
exit: {checks: [x]}
---
go
"""
    problem = only_problem(text)

    assert problem.line == 3
    assert problem.reason == "unknown key 'descripton' (did you mean 'description'?)"


def test_unknown_nested_key_in_a_list_item() -> None:
    text = """\
---
name: demo
exit:
  checks:
    - run: pytest
    - run: ruff check .
      timeout: 30
---
go
"""
    problem = only_problem(text)

    assert problem.line == 7
    assert problem.reason == (
        "unknown key 'timeout' in exit.checks[1] (did you mean 'timeout_seconds'?)"
    )


def test_unknown_key_without_close_match_lists_the_valid_keys() -> None:
    problem = only_problem(with_front("name: demo\nexit: {checks: [x]}\non_success: {xyz: 1}\n"))

    assert problem.line == 4
    assert problem.reason == "unknown key 'xyz' in on_success; valid keys: push"


@pytest.mark.parametrize(
    ("front", "line", "reason"),
    [
        ("brakes:\n  max_turns: six\n", 4, "brakes.max_turns must be an integer, got 'six'"),
        ("brakes:\n  max_turns: 2.5\n", 4, "brakes.max_turns must be an integer, got 2.5"),
        ("brakes: {max_turns: true}\n", 3, "brakes.max_turns must be an integer, got True"),
        ("brakes:\n  max_turns: 0\n", 4, "brakes.max_turns must be greater than 0, got 0"),
        ("brakes: {max_cost_usd: '2'}\n", 3, "brakes.max_cost_usd must be a number, got '2'"),
        ("brakes: []\n", 3, "brakes must be a mapping, got a list"),
        ("description: 3\n", 3, "description must be a string, got 3"),
        ("workspace: prr\n", 3, "workspace must be one of 'pr', 'repo' or 'none', got 'prr'"),
        ("tools: read_file\n", 3, "tools must be a list, got 'read_file'"),
        ("on_success: {push: 'yes please'}\n", 3, "on_success.push must be true or false"),
        ("model: ''\n", 3, "model must not be empty"),
        ("brakes: {max_cost_usd: .inf}\n", 3, "brakes.max_cost_usd must be a finite number"),
        ("1: one\n", 3, "key 1 is not a string"),
    ],
)
def test_wrong_types(front: str, line: int, reason: str) -> None:
    problem = only_problem(with_front("name: demo\n" + front + "exit: {checks: [x]}\n"))

    assert problem.line == line
    assert problem.reason.startswith(reason)


def test_exit_problems_are_located_inside_exit() -> None:
    text = """\
---
name: demo
exit:
  checks:
    - run: ''
  judge:
    threshold: 1.5
  passes: 0
---
go
"""
    found = [(p.line, p.reason) for p in problems_of(text)]

    assert found == [
        (5, "exit.checks[0].run must not be empty"),
        (6, "missing required key 'rubric' in exit.judge"),
        (7, "exit.judge.threshold must be at most 1, got 1.5"),
        (8, "exit.passes must be greater than 0, got 0"),
    ]


def test_unknown_tool_at_its_list_item() -> None:
    text = """\
---
name: demo
tools:
  - read_file
  - wrte_file
exit: {checks: [x]}
---
go
"""
    problem = only_problem(text)

    assert problem.line == 5
    assert problem.reason == (
        "unknown tool 'wrte_file' (did you mean 'write_file'?); "
        "valid tools: read_file, write_file, list_files, search, run, note"
    )


def test_yaml_anchors_and_merge_keys_work() -> None:
    text = with_front(
        "name: demo\nbrakes:\n  <<: {max_turns: 2}\nexit:\n  checks:\n    - &t {run: a}\n    - *t\n"
    )

    workflow = parse_workflow(text)

    assert workflow.brakes.max_turns == 2
    assert workflow.exit.checks == (CheckSpec(run="a"), CheckSpec(run="a"))


def test_duplicate_tool() -> None:
    problem = only_problem(with_front("name: demo\ntools: [run, note, run]\nexit: {checks: [x]}\n"))

    assert problem.line == 3
    assert problem.reason == "duplicate tool 'run' in tools"


@pytest.mark.parametrize(
    ("schedule", "line", "reason"),
    [
        (
            "schedule:\n  cron: '0 3 * *'\n  repo: a/b\n",
            9,
            "schedule.cron '0 3 * *' is not a 5-field cron expression: "
            "Wrong number of fields; got 4, expected 5",
        ),
        (
            "schedule:\n  cron: '61 * * * *'\n  repo: a/b\n",
            9,
            "schedule.cron '61 * * * *' is not a 5-field cron expression",
        ),
        (
            "schedule:\n  cron: '0 3 31 2 *'\n  repo: a/b\n",
            9,
            "schedule.cron '0 3 31 2 *' never fires",
        ),
        (
            "schedule:\n  cron: '0 3 * * *'\n  timezone: Mars/Base\n  repo: a/b\n",
            10,
            "schedule.timezone 'Mars/Base' is not an IANA time zone",
        ),
        (
            "schedule:\n  cron: '0 3 * * *'\n  timezone: ../etc/passwd\n  repo: a/b\n",
            10,
            "schedule.timezone '../etc/passwd' is not an IANA time zone",
        ),
        (
            "schedule:\n  cron: '0 3 * * *'\n  repo: nope\n",
            10,
            "schedule.repo 'nope' is not 'owner/name'",
        ),
        (
            "schedule:\n  cron: '0 3 * * *'\n  repo: a/b\n  workdir: /srv\n",
            8,
            "schedule sets both 'repo' and 'workdir'",
        ),
        ("schedule:\n  cron: '0 3 * * *'\n", 8, "schedule needs a target"),
        (
            "schedule:\n  cron: '0 3 * * *'\n  repo: a/b\n  reply: {github_issue: 'a/b#x'}\n",
            11,
            "schedule.reply.github_issue 'a/b#x' is not 'owner/name#number'",
        ),
    ],
)
def test_schedule_problems(schedule: str, line: int, reason: str) -> None:
    text = with_front("name: demo\n" + SCHEDULED_BRAKES + "exit: {checks: [x]}\n" + schedule)
    problem = only_problem(text)

    assert problem.line == line
    assert problem.reason.startswith(reason)


def test_scheduled_workflow_without_brakes() -> None:
    text = """\
---
name: demo
exit: {checks: [x]}
schedule: {cron: '0 3 * * *', repo: a/b}
---
go
"""
    problem = only_problem(text)

    assert problem.line == 4
    assert problem.reason == (
        "scheduled workflow needs explicit brakes: "
        "missing max_turns, max_wall_seconds, max_cost_usd or max_total_tokens"
    )


def test_scheduled_workflow_with_partial_and_null_brakes() -> None:
    text = """\
---
name: demo
brakes:
  max_turns: 3
  max_cost_usd: null
exit: {checks: [x]}
schedule: {cron: '0 3 * * *', repo: a/b}
---
go
"""
    found = [(p.line, p.reason) for p in problems_of(text)]

    assert found == [
        (
            3,
            "scheduled workflow needs explicit brakes: missing max_wall_seconds, "
            "max_cost_usd or max_total_tokens",
        ),
        (5, "brakes.max_cost_usd may not be null on a scheduled workflow"),
    ]


def test_null_brakes_are_fine_without_a_schedule() -> None:
    text = with_front(
        "name: demo\nbrakes: {max_cost_usd: null, max_wall_seconds: null}\nexit: {checks: [x]}\n"
    )

    assert parse_workflow(text).brakes.max_wall_seconds is None


def test_push_needs_a_workspace() -> None:
    text = with_front(
        "name: demo\nworkspace: none\nexit: {checks: [x]}\non_success:\n  push: true\n"
    )
    problem = only_problem(text)

    assert problem.line == 6
    assert problem.reason == "on_success.push needs workspace 'pr' or 'repo'"


def test_exit_that_checks_nothing() -> None:
    problem = only_problem(with_front("name: demo\nexit:\n  passes: 2\n"))

    assert problem.line == 3
    assert problem.reason.startswith("exit condition checks nothing")


def test_missing_exit_and_name() -> None:
    found = [(p.line, p.reason) for p in problems_of(with_front("description: hi\n"))]

    assert found == [
        (2, "missing required key 'name'"),
        (2, "missing required key 'exit'"),
    ]


@pytest.mark.parametrize("name", ["Fix", "1fix", "fix tests", "a" * 65, "-x", "fix!"])
def test_bad_names(name: str) -> None:
    problem = only_problem(with_front(f"name: '{name}'\nexit: {{checks: [x]}}\n"))

    assert problem.line == 2
    assert problem.reason.startswith(f"name {name!r} is not a command word")


def test_duplicate_yaml_key() -> None:
    problem = only_problem(with_front("name: demo\nexit: {checks: [x]}\nname: other\n"))

    assert problem.line == 4
    assert problem.reason == "duplicate key 'name'"


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("name: demo\n", 1, "missing front matter: the file must start with a '---' line"),
        ("", 1, "missing front matter"),
        ("---\nname: demo\n", 1, "front matter is not closed"),
        ("---\n---\ngo\n", 1, "front matter is empty"),
        ("---\n# only a comment\n---\ngo\n", 1, "front matter is empty"),
        ("---\n- a\n- b\n---\ngo\n", 2, "front matter must be a mapping, got a list"),
        ("---\nname: demo\nexit: {checks: [x]\n---\ngo\n", 4, "invalid YAML"),
        ("---\nname: demo\n  bad: indent\n---\ngo\n", 3, "invalid YAML"),
        ("---\nname: !!python/name:os.system\n---\ngo\n", 2, "invalid YAML"),
    ],
)
def test_front_matter_problems(text: str, line: int, reason: str) -> None:
    problem = only_problem(text)

    assert problem.line == line
    assert problem.reason.startswith(reason)


def test_template_syntax_error_at_its_file_line() -> None:
    text = """\
---
name: demo
exit: {checks: [x]}
---
{{ instruction }}

{% if findings %}
{{ findings }
"""
    problem = only_problem(text)

    assert problem.line == 8
    assert problem.reason.startswith("template syntax error: unexpected '}'")


def test_unknown_filter_is_a_template_error() -> None:
    problem = only_problem(
        with_front("name: demo\nexit: {checks: [x]}\n", "x\n{{ state | shout }}\n")
    )

    assert problem.line == 6
    assert problem.reason == "template syntax error: No filter named 'shout'."


def test_unknown_template_variable_at_its_first_use() -> None:
    text = """\
---
name: demo
exit: {checks: [x]}
---
{{ instruction }}
{% if finding %}
{{ finding }}
{% endif %}
"""
    problem = only_problem(text)

    assert problem.line == 6
    assert problem.reason == (
        "template uses unknown variable 'finding' (did you mean 'findings'?); "
        "known variables: instruction, findings, state, turn, repo, pr, source, requested_by"
    )


def test_empty_template() -> None:
    problem = only_problem(with_front("name: demo\nexit: {checks: [x]}\n", "\n  \n"))

    assert problem.line == 4
    assert problem.reason.startswith("the template is empty")


def test_every_problem_is_reported_at_once_in_line_order() -> None:
    text = """\
---
name: Demo
workspace: cloud
tools: [run, shell]
brakes:
  max_turns: -1
exit:
  passes: 1
schedule:
  cron: every day
  timezone: Nowhere/City
  repo: a/b
colour: blue
---
{{ instructions }}
"""
    found = problems_of(text)

    assert [p.line for p in found] == [2, 3, 4, 5, 6, 7, 10, 11, 13, 15]
    reasons = "\n".join(p.reason for p in found)
    for needle in [
        "'Demo'",
        "'cloud'",
        "'shell'",
        "explicit brakes",
        "brakes.max_turns",
        "checks nothing",
        "'every day'",
        "'Nowhere/City'",
        "'colour'",
        "'instructions'",
    ]:
        assert needle in reasons


# --- rendering --------------------------------------------------------------------------------


def test_render_task_renders_the_variables() -> None:
    workflow = parse_workflow(
        with_front(
            "name: demo\nexit: {checks: [x]}\n",
            "Do: {{ instruction }}\n{% if findings %}Findings:\n{{ findings }}\n{% endif %}"
            "Turn {{ turn }} on {{ repo }}#{{ pr }}\n",
        )
    )

    assert render_task(workflow, **NO_VARIABLES | {"instruction": "fix it", "turn": 1}) == (
        "Do: fix it\nTurn 1 on None#None\n"
    )
    rendered = render_task(
        workflow,
        **NO_VARIABLES
        | {"instruction": "<b>&", "findings": "1 failed", "turn": 2, "repo": "a/b", "pr": 7},
    )
    assert rendered == "Do: <b>&\nFindings:\n1 failed\nTurn 2 on a/b#7\n"


def test_render_task_refuses_a_missing_variable() -> None:
    workflow = parse_workflow(MINIMAL, "demo.md")

    with pytest.raises(WorkflowError) as info:
        render_task(workflow, findings=None)

    [problem] = info.value.problems
    assert problem.path == "demo.md"
    assert problem.line == 6
    assert "'instruction' is undefined" in problem.reason


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (
            "{{ instruction.__class__ }}",
            "access to attribute '__class__' of 'str' object is unsafe",
        ),
        ("{{ ''.__class__.__mro__ }}", "is unsafe"),
        ("{{ ''.format.__globals__ }}", "is unsafe"),
        ("{{ cycler.__init__.__globals__ }}", "is unsafe"),
    ],
)
def test_render_task_is_sandboxed(body: str, reason: str) -> None:
    workflow = parse_workflow(with_front("name: demo\nexit: {checks: [x]}\n", body))

    with pytest.raises(WorkflowError) as info:
        render_task(workflow, **NO_VARIABLES | {"instruction": "x"})

    [problem] = info.value.problems
    assert problem.reason.startswith("cannot render template (SecurityError)")
    assert reason in problem.reason


def test_render_error_from_an_expression_names_its_line() -> None:
    workflow = parse_workflow(
        with_front("name: demo\nexit: {checks: [x]}\n", "a\n{{ turn / 0 }}\n")
    )

    with pytest.raises(WorkflowError) as info:
        render_task(workflow, **NO_VARIABLES | {"turn": 1})

    [problem] = info.value.problems
    assert (problem.line, problem.reason) == (
        6,
        "cannot render template (ZeroDivisionError): division by zero",
    )


# --- files and directories --------------------------------------------------------------------


def test_load_workflow_reads_the_file(tmp_path: Path) -> None:
    path = tmp_path / "demo.md"
    path.write_text(MINIMAL, encoding="utf-8")

    workflow = load_workflow(path)

    assert workflow.path == str(path)
    assert workflow.source == MINIMAL


def test_load_workflow_problems_carry_the_path(tmp_path: Path) -> None:
    path = tmp_path / "demo.md"
    path.write_text(MINIMAL.replace("name: demo", "name: Demo"), encoding="utf-8")

    with pytest.raises(WorkflowError) as info:
        load_workflow(path)

    assert str(info.value).startswith(f"{path}:2: name 'Demo' is not a command word")


def test_unreadable_files_are_workflow_errors(tmp_path: Path) -> None:
    binary = tmp_path / "binary.md"
    binary.write_bytes(b"---\nname: \xff\n---\n")

    for path in (tmp_path / "missing.md", binary, tmp_path):
        with pytest.raises(WorkflowError) as info:
            load_workflow(path)
        [problem] = info.value.problems
        assert problem.path == str(path)
        assert problem.line == 0
        assert problem.reason.startswith("cannot read file: ")


def test_load_workflows_keeps_valid_files_and_reports_the_rest(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text(MINIMAL.replace("demo", "alpha"), encoding="utf-8")
    (tmp_path / "b.md").write_text("no front matter\n", encoding="utf-8")
    (tmp_path / "c.md").write_text(MINIMAL.replace("demo", "gamma"), encoding="utf-8")
    (tmp_path / "notes.txt").write_text("not a workflow", encoding="utf-8")
    (tmp_path / ".a.md").write_text("editor backup", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.md").write_text("nested: ignored", encoding="utf-8")

    workflows, problems = load_workflows(tmp_path)

    assert list(workflows) == ["alpha", "gamma"]
    assert [(p.path, p.line) for p in problems] == [(str(tmp_path / "b.md"), 1)]


def test_load_workflows_reports_duplicate_names(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text(MINIMAL, encoding="utf-8")
    (tmp_path / "b.md").write_text(
        "---\n# same name\nname: demo\nexit: {checks: [y]}\n---\ngo\n", encoding="utf-8"
    )

    workflows, problems = load_workflows(tmp_path)

    assert workflows["demo"].path == str(tmp_path / "a.md")
    assert problems == [
        WorkflowProblem(
            path=str(tmp_path / "b.md"),
            line=3,
            reason=f"duplicate workflow name 'demo': also defined in {tmp_path / 'a.md'}",
        )
    ]


def test_load_workflows_on_a_missing_directory(tmp_path: Path) -> None:
    workflows, problems = load_workflows(tmp_path / "nope")

    assert workflows == {}
    assert problems == [
        WorkflowProblem(path=str(tmp_path / "nope"), line=0, reason="not a directory")
    ]


def test_check_paths_takes_files_and_directories(tmp_path: Path) -> None:
    directory = tmp_path / "flows"
    directory.mkdir()
    (directory / "one.md").write_text(MINIMAL.replace("demo", "one"), encoding="utf-8")
    (directory / "bad.md").write_text(MINIMAL.replace("demo", "Bad"), encoding="utf-8")
    single = tmp_path / "two.md"
    single.write_text(MINIMAL.replace("demo", "two"), encoding="utf-8")

    workflows, problems = check_paths([directory, single, tmp_path / "missing.md"])

    assert [w.name for w in workflows] == ["one", "two"]
    assert [(Path(p.path).name, p.line) for p in problems] == [("bad.md", 2), ("missing.md", 0)]
