"""Focus a check command's output on what the maker needs to read next turn.

Findings become the maker's next instruction, so they must be short: a page of test output,
not a log. Pytest output is cut to its failure sections when they can be recognized; anything
else keeps its tail, where compilers, linters and test runners put their verdict.
"""

from __future__ import annotations

import re

MAX_LINES = 60
MAX_CHARS = 6_000

_SECTION = re.compile(r"^=+ (FAILURES|ERRORS) =+$", re.MULTILINE)
_SHORT_SUMMARY = re.compile(r"^=+ short test summary info =+$", re.MULTILINE)


def focus_output(output: str, *, max_lines: int = MAX_LINES, max_chars: int = MAX_CHARS) -> str:
    """The relevant part of `output`, at most about `max_lines` lines and `max_chars` characters.

    Pytest's ``FAILURES``/``ERRORS`` sections and its short test summary are preferred when
    present; otherwise, and for any other tool, the tail is kept.
    """
    text = output.strip("\n")
    if not text.strip():
        return "(no output)"
    focused = _pytest_failures(text, max_lines=max_lines, max_chars=max_chars)
    if focused is not None:
        return focused
    return tail(text, max_lines=max_lines, max_chars=max_chars)


def tail(text: str, *, max_lines: int, max_chars: int) -> str:
    """The last lines of `text` within both limits, marked when anything was dropped."""
    lines = text.splitlines()
    kept = lines[-max_lines:] if max_lines > 0 else []
    while kept and len("\n".join(kept)) > max_chars:
        kept = kept[1:]
    if not kept and lines:
        # A single line longer than the budget: keep its end rather than nothing.
        kept = [lines[-1][-max_chars:]]
    dropped = len(lines) - len(kept)
    body = "\n".join(kept)
    return f"[... {dropped} earlier lines omitted ...]\n{body}" if dropped else body


def head(text: str, *, max_lines: int, max_chars: int) -> str:
    """The first lines of `text` within both limits, marked when anything was dropped."""
    lines = text.splitlines()
    kept = lines[:max_lines] if max_lines > 0 else []
    while kept and len("\n".join(kept)) > max_chars:
        kept = kept[:-1]
    dropped = len(lines) - len(kept)
    body = "\n".join(kept)
    return f"{body}\n[... {dropped} more lines omitted ...]" if dropped else body


def ends(text: str, *, max_lines: int, max_chars: int) -> str:
    """The first lines and the last few lines of `text` within both limits, the middle marked."""
    lines = text.splitlines()
    if len(lines) <= max_lines and len(text) <= max_chars:
        return text
    bottom = tail(text, max_lines=max(1, max_lines // 4), max_chars=max_chars // 4)
    bottom_lines = bottom.splitlines()
    if bottom_lines and bottom_lines[0].startswith("[... "):
        bottom_lines = bottom_lines[1:]
    lines_left = max_lines - len(bottom_lines) - 1
    chars_left = max_chars - len(bottom) - 60
    top: list[str] = []
    used = 0
    for line in lines[: max(0, len(lines) - len(bottom_lines))]:
        if len(top) >= lines_left or used + len(line) + 1 > chars_left:
            break
        top.append(line)
        used += len(line) + 1
    dropped = len(lines) - len(top) - len(bottom_lines)
    return "\n".join([*top, f"[... {dropped} lines omitted ...]", *bottom_lines])


def _pytest_failures(text: str, *, max_lines: int, max_chars: int) -> str | None:
    """Pytest's failure details plus its short summary, or None if this is not pytest output.

    When both do not fit, the summary is kept whole (it lists every failing test) and the
    details are cut from their end, so the first failure's traceback stays readable.
    """
    details_at = _first_start(_SECTION, text)
    summary_at = _first_start(_SHORT_SUMMARY, text)
    if summary_at is None:
        if details_at is None:
            return None
        # No summary: not printed, or elided from the middle of a long capture. The first
        # failure is at the top of the details and the verdict line at the bottom.
        return ends(text[details_at:], max_lines=max_lines, max_chars=max_chars)
    summary = tail(text[summary_at:], max_lines=max_lines, max_chars=max_chars)
    if details_at is None or details_at > summary_at:
        return summary
    details = text[details_at:summary_at].strip("\n")
    lines_left = max_lines - len(summary.splitlines()) - 1
    chars_left = max_chars - len(summary) - 1
    if lines_left < 5 or chars_left < 200:
        return summary
    return head(details, max_lines=lines_left, max_chars=chars_left) + "\n" + summary


def _first_start(pattern: re.Pattern[str], text: str) -> int | None:
    match = pattern.search(text)
    return match.start() if match else None
