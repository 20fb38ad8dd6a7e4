"""The command grammar of comments and messages."""

from __future__ import annotations

import pytest

from triggers.commands import (
    MAX_COMMANDS,
    MAX_INSTRUCTION_CHARS,
    USAGE,
    InvalidCommand,
    MentionCommand,
    ResumeCommand,
    RunCommand,
    StatusCommand,
    StopCommand,
    parse_commands,
)

BOT = "loopwright"


def parse(text: str, bot_name: str | None = BOT):
    return parse_commands(text, bot_name=bot_name)


@pytest.mark.parametrize(
    ("line", "command"),
    [
        ("/loop fix-tests", RunCommand("fix-tests", "")),
        ("/loop fix-tests make CI green", RunCommand("fix-tests", "make CI green")),
        ("/loop fix_tests2   spaces   inside  ", RunCommand("fix_tests2", "spaces   inside")),
        ("/loop\tfix-tests\tthe tab case", RunCommand("fix-tests", "the tab case")),
        ("/loop stop", StopCommand()),
        ("/loop status", StatusCommand()),
        ("/loop resume", ResumeCommand(None)),
        ("/loop resume 3f2a9c", ResumeCommand("3f2a9c")),
        ("/loop   STOP  ", StopCommand()),
        ("/LOOP status", StatusCommand()),
        ("@loopwright fix the flaky test", MentionCommand("fix the flaky test")),
        ("@LoopWright please look", MentionCommand("please look")),
        ("@loopwright[bot] fix it", MentionCommand("fix it")),
        ("@loopwright: fix it", MentionCommand("fix it")),
        ("@loopwright, fix it", MentionCommand("fix it")),
        ("   /loop fix-tests indented", RunCommand("fix-tests", "indented")),
        ("\t@loopwright indented", MentionCommand("indented")),
        ("@loopwright /loop stop", StopCommand()),
        ("@loopwright[bot]: /loop fix-tests now", RunCommand("fix-tests", "now")),
        ("@loopwright /loopy day", MentionCommand("/loopy day")),
    ],
)
def test_each_command_form(line, command):
    assert parse(line) == [command]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Looks good to me!",
        "please /loop fix-tests",
        "/loopy fix-tests",
        "/loop-fix tests",
        "`/loop fix-tests`",
        "@loopwright-dev fix it",
        "@loopwrights fix it",
        "@loopwright[botx] fix it",
        "@someone /loop fix-tests",
        "cc @loopwright fix it",
    ],
)
def test_lines_not_addressed_to_the_service_are_not_commands(text):
    assert parse(text) == []


def test_several_commands_in_one_comment_come_in_order():
    text = (
        "Two things:\n"
        "/loop fix-tests first the tests\n"
        "and then\n"
        "@loopwright[bot] update the changelog\n"
        "/loop status\n"
    )

    assert parse(text) == [
        RunCommand("fix-tests", "first the tests"),
        MentionCommand("update the changelog"),
        StatusCommand(),
    ]


@pytest.mark.parametrize("newline", ["\r\n", "\r", "\n"])
def test_every_kind_of_line_break_ends_a_command(newline):
    text = newline.join(["/loop fix-tests one", "/loop stop", "@loopwright two", ""])

    assert parse(text) == [RunCommand("fix-tests", "one"), StopCommand(), MentionCommand("two")]


@pytest.mark.parametrize(
    "text",
    [
        "> /loop fix-tests",
        ">/loop fix-tests",
        "  > @loopwright fix it",
        "> > /loop stop",
        "```\n/loop fix-tests\n```",
        "~~~\n@loopwright fix it\n~~~",
        "```bash\n/loop fix-tests\n```",
        "  ```\n  /loop stop\n  ```",
        "````\n```\n/loop fix-tests\n````",
        "~~~\n```\n/loop stop\n~~~",
        "```\n/loop fix-tests never closed",
        "<!-- /loop fix-tests -->",
        "<!--\n/loop fix-tests\n-->",
        "<!-- a template\n@loopwright fix it\nend -->",
    ],
)
def test_quoted_fenced_and_hidden_lines_are_never_commands(text):
    assert parse(text) == []


def test_a_reply_quoting_a_command_runs_only_its_own():
    text = "> /loop fix-tests quoted\n\n```\n/loop stop\n```\n/loop status"

    assert parse(text) == [StatusCommand()]


def test_commands_after_a_closed_fence_or_comment_count_again():
    text = "```\n/loop stop\n```\n<!--\n/loop stop\n-->\n/loop fix-tests after"

    assert parse(text) == [RunCommand("fix-tests", "after")]


def test_inline_code_with_three_backticks_opens_no_fence():
    assert parse("```x```\n/loop status") == [StatusCommand()]


@pytest.mark.parametrize("bot_name", ["loopwright", "Loopwright[bot]", "@loopwright", "LOOPWRIGHT"])
def test_the_bot_may_be_named_as_an_app_login_or_a_handle(bot_name):
    assert parse("@LoopWright[BOT] fix it", bot_name) == [MentionCommand("fix it")]


def test_mentions_need_a_bot_name():
    assert parse("@loopwright fix it\n/loop status", bot_name=None) == [StatusCommand()]


def test_a_bot_name_with_regex_characters_is_matched_literally():
    assert parse("@a.b fix it", "a.b") == [MentionCommand("fix it")]
    assert parse("@axb fix it", "a.b") == []


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("/loop", "'/loop' needs a workflow name or stop, status, resume; usage: /loop <workflow>"),
        ("/loop   ", "'/loop' needs a workflow name"),
        ("/loop Fix-tests now", "'Fix-tests' is not a workflow name (a lowercase letter"),
        ("/loop 1st-try", "'1st-try' is not a workflow name"),
        ("/loop fix.tests", "'fix.tests' is not a workflow name"),
        ("/loop -x", "'-x' is not a workflow name"),
        ("/loop " + "a" * 65, "is not a workflow name"),
        ("/loop stop now", "'/loop stop' takes no arguments, got 'now'"),
        ("/loop status please", "'/loop status' takes no arguments, got 'please'"),
        ("/loop resume run 12", "'/loop resume' takes at most one run"),
        ("/loop resume " + "r" * 101, "'/loop resume' takes at most one run"),
        ("@loopwright", "say what to do after '@loopwright': '@loopwright <instruction>'"),
        ("@LoopWright[bot]:", "say what to do after '@LoopWright[bot]'"),
        ("/loop fix-tests a\x00b", "the instruction must not contain NUL characters"),
        ("/loop fix-tests \ud800", "lone surrogate"),
    ],
)
def test_malformed_commands_say_why_and_how(line, reason):
    [command] = parse(line)

    assert isinstance(command, InvalidCommand)
    assert reason in command.reason


def test_reasons_about_loop_lines_end_with_the_usage():
    for line in ["/loop", "/loop Bad", "/loop stop now", "/loop resume a b"]:
        [command] = parse(line)
        assert isinstance(command, InvalidCommand)
        assert command.reason.endswith(USAGE)


def test_the_longest_workflow_name_is_64_characters():
    assert parse("/loop " + "a" * 64) == [RunCommand("a" * 64)]


@pytest.mark.parametrize("word", ["stop", "status", "resume"])
def test_reserved_words_are_never_workflow_names(word):
    [command] = parse(f"/loop {word}")

    assert not isinstance(command, RunCommand)


def test_a_long_quoted_word_is_shortened_in_the_reason():
    [command] = parse("/loop " + "X" * 500)

    assert isinstance(command, InvalidCommand)
    assert len(command.reason) < 300


def test_instructions_are_capped_and_the_reason_names_the_figures():
    at_limit = "x" * MAX_INSTRUCTION_CHARS
    over = at_limit + "y"

    assert parse(f"/loop fix-tests {at_limit}") == [RunCommand("fix-tests", at_limit)]
    assert parse(f"@loopwright {over}") == [
        InvalidCommand(
            f"the instruction is {MAX_INSTRUCTION_CHARS + 1} characters long; "
            f"the limit is {MAX_INSTRUCTION_CHARS}"
        )
    ]


def test_a_comment_runs_at_most_a_fixed_number_of_commands():
    text = "\n".join(f"/loop fix-tests part {n}" for n in range(MAX_COMMANDS + 5))

    commands = parse(text)

    assert commands[:MAX_COMMANDS] == [
        RunCommand("fix-tests", f"part {n}") for n in range(MAX_COMMANDS)
    ]
    assert commands[MAX_COMMANDS:] == [
        InvalidCommand(
            f"at most {MAX_COMMANDS} commands per comment; "
            "this one and the ones after it were not read"
        )
    ]


def test_exactly_the_limit_of_commands_is_fine():
    text = "\n".join(["/loop status"] * MAX_COMMANDS + ["just prose"])

    assert parse(text) == [StatusCommand()] * MAX_COMMANDS
