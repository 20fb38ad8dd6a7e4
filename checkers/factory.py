"""Build the checker a run's frozen exit condition asks for."""

from __future__ import annotations

from checkers.command import CommandChecker
from checkers.composite import CompositeChecker
from checkers.judge import JudgeChecker
from loops.checking import Checker
from loops.workflows import ExitCondition


def build_checker(exit: ExitCondition, *, default_judge_model: str) -> Checker:
    """The exit condition's command checks, in order, then its judge if it has one.

    Args:
        exit: the run's exit condition.
        default_judge_model: the judge model when the judge spec names none
            (``LOOPWRIGHT_JUDGE_MODEL``).
    """
    checkers: list[Checker] = [CommandChecker(spec) for spec in exit.checks]
    if exit.judge is not None:
        checkers.append(JudgeChecker(exit.judge, exit.judge.model or default_judge_model))
    return CompositeChecker(checkers, fail_fast=exit.fail_fast)
