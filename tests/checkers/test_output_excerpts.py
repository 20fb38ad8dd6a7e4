from checkers.excerpts import focus_output, head, tail


def test_empty_output_is_named() -> None:
    assert focus_output("") == "(no output)"
    assert focus_output("\n  \n") == "(no output)"


def test_short_output_is_kept_whole() -> None:
    assert focus_output("\nerror: x is undefined\n1 error\n") == "error: x is undefined\n1 error"


def test_tail_respects_line_and_char_limits() -> None:
    text = "\n".join(f"line {i}" for i in range(100))

    by_lines = tail(text, max_lines=3, max_chars=1_000)
    by_chars = tail(text, max_lines=50, max_chars=20)

    assert by_lines == "[... 97 earlier lines omitted ...]\nline 97\nline 98\nline 99"
    assert by_chars == "[... 98 earlier lines omitted ...]\nline 98\nline 99"


def test_tail_keeps_the_end_of_a_single_huge_line() -> None:
    assert tail("a" * 50 + "END", max_lines=10, max_chars=5) == "aaEND"


def test_head_marks_what_it_drops() -> None:
    assert head("a\nb\nc", max_lines=2, max_chars=100) == "a\nb\n[... 1 more lines omitted ...]"


def test_pytest_output_drops_progress_before_the_failures() -> None:
    output = "\n".join(
        [
            *(f"noise {i}" for i in range(40)),
            "=================================== FAILURES ===================================",
            "___________________________________ test_a ____________________________________",
            "E   assert 1 == 2",
            "=========================== short test summary info ============================",
            "FAILED test_x.py::test_a - assert 1 == 2",
            "1 failed, 3 passed in 0.01s",
        ]
    )

    focused = focus_output(output, max_lines=30, max_chars=6_000)

    assert "noise" not in focused
    assert focused.startswith("=" * 35 + " FAILURES")
    assert focused.endswith("1 failed, 3 passed in 0.01s")


def test_pytest_summary_survives_long_failure_details() -> None:
    details = [f"E   detail {i}" for i in range(500)]
    summary = [f"FAILED test_x.py::test_{i}" for i in range(10)]
    output = "\n".join(
        [
            "==== FAILURES ====",
            "____ test_0 ____",
            *details,
            "==== short test summary info ====",
            *summary,
        ]
    )

    focused = focus_output(output, max_lines=40, max_chars=6_000)

    assert focused.startswith("==== FAILURES ====\n____ test_0 ____\nE   detail 0")
    assert "more lines omitted" in focused
    assert all(line in focused for line in summary)
    assert len(focused.splitlines()) <= 40


def test_pytest_errors_without_summary_keep_the_section_tail() -> None:
    output = "collecting\n==== ERRORS ====\nImportError: no module named x\n1 error"

    assert focus_output(output) == "==== ERRORS ====\nImportError: no module named x\n1 error"


def test_other_tools_keep_their_tail() -> None:
    output = "\n".join(f"src/a.py:{i}: E501 line too long" for i in range(200))

    focused = focus_output(output, max_lines=10, max_chars=6_000)

    assert focused.endswith("src/a.py:199: E501 line too long")
    assert "src/a.py:189:" not in focused
