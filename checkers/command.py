"""A check that runs one shell command in the workspace and passes on exit status 0."""

from __future__ import annotations

import structlog

from checkers.excerpts import focus_output
from loops.checking import CheckContext, CheckResult, Verdict
from loops.processes import CommandResult, run_command
from loops.workflows import CheckSpec

log = structlog.get_logger(__name__)


class CommandChecker:
    """Runs `spec.run` through the shell in the workspace, with the check environment.

    The timeout is the smaller of the spec's own and the context's, so a check never outlives
    the run's wall-time brake. A failing result's findings name the command, its exit status
    (or the timeout) and the focused end of its output.

    An `OSError` from starting the shell (for example a missing workspace) propagates: it is
    the service's fault, and the maker could not fix it by editing code.

    Args:
        spec: the check from the workflow's exit condition.
    """

    def __init__(self, spec: CheckSpec) -> None:
        self.spec = spec

    @property
    def name(self) -> str:
        return self.spec.label

    async def check(self, ctx: CheckContext) -> Verdict:
        timeout = min(self.spec.timeout_seconds, ctx.timeout)
        result = await run_command(self.spec.run, cwd=ctx.workspace, timeout=timeout, env=ctx.env)
        passed = result.exit_code == 0 and not result.timed_out
        check = CheckResult(
            name=self.name,
            passed=passed,
            findings="" if passed else command_findings(result, timeout=timeout),
            exit_code=None if result.timed_out else result.exit_code,
            duration_s=result.duration_s,
        )
        log.info(
            "check_finished",
            check=self.name,
            passed=passed,
            exit_code=check.exit_code,
            timed_out=result.timed_out,
            duration_s=round(result.duration_s, 3),
        )
        return Verdict(passed=passed, results=(check,))


def command_findings(result: CommandResult, *, timeout: float) -> str:
    """What the maker reads about a failed command: what ran, how it ended, what it said."""
    if result.timed_out:
        status = f"timed out after {timeout:g}s (its process group was killed)"
    else:
        status = f"exited with status {result.exit_code}"
    return f"$ {result.command}\n{status}; output:\n{focus_output(result.output)}"
