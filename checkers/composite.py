"""Several checkers graded as one: the verdict passes only if every one of them passed."""

from __future__ import annotations

from collections.abc import Sequence

from loops.checking import CheckContext, Checker, CheckResult, Verdict

NO_CHECKS = CheckResult(
    name="exit condition",
    passed=False,
    findings="no checks are configured, so the exit condition can never hold",
)


class CompositeChecker:
    """Runs its checkers one after another, in order, and combines their results.

    They run sequentially on purpose: commands share the workspace (build outputs, caches,
    lock files) and may conflict if run at once, and the order is the order of the findings.
    With no checkers at all the verdict fails with one result that says so, because an exit
    condition that checks nothing must not pass silently.

    Args:
        checkers: the checkers, in the order their findings should be read.
        fail_fast: stop after the first failing checker (later ones are not run, so an
            expensive judge is not asked about work whose tests fail).
    """

    def __init__(self, checkers: Sequence[Checker], fail_fast: bool = False) -> None:
        self.checkers = tuple(checkers)
        self.fail_fast = fail_fast

    async def check(self, ctx: CheckContext) -> Verdict:
        if not self.checkers:
            return Verdict(passed=False, results=(NO_CHECKS,))
        results: list[CheckResult] = []
        passed = True
        for checker in self.checkers:
            verdict = await checker.check(ctx)
            results.extend(verdict.results)
            passed = passed and verdict.passed
            if not verdict.passed and self.fail_fast:
                break
        return Verdict(passed=passed, results=tuple(results))
