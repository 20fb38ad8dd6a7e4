"""Checkers: grade a maker turn behind the `loops.checking.Checker` protocol.

- `CommandChecker` runs one workflow check command (tests, lint) in the workspace.
- `JudgeChecker` asks an LLM judge to score the turn against a rubric.
- `CompositeChecker` runs several in order and passes only if all pass.
- `build_checker` assembles them from a workflow's `ExitCondition`.

Failures of the checked work are results, never exceptions. What does propagate is what no
verdict can describe: a tripped brake, cancellation, or a shell that cannot be started.
"""

from checkers.command import CommandChecker
from checkers.composite import CompositeChecker
from checkers.factory import build_checker
from checkers.judge import JudgeAnswer, JudgeChecker

__all__ = [
    "CommandChecker",
    "CompositeChecker",
    "JudgeAnswer",
    "JudgeChecker",
    "build_checker",
]
