"""The runs of GitHub jobs: a checkout to work in, and the work published when the run ends.

A `pr` workflow works in a clone of the pull request's head (from the `clone_url` the API gives
for the head repository, so forks, GitHub Enterprise and local stand-ins all work); a `repo`
workflow in a clone of the repository's default branch. The token comes from the client per
use and travels only in a header (`app.checkouts`).

When the run ends, what happens to the work:

- no change from the commit the clone started at: nothing;
- `passed`, the workflow has `on_success.push`, and the pull request's branch lives in the base
  repository: a commit as the app, pushed to that branch (never forced, never to the default
  branch);
- otherwise, when there is work worth keeping (a fork's pull request, a braked, stuck, cancelled
  or errored run, a push the server rejected, a `repo` workspace): pushed to
  ``loopwright/run-<id>`` in the base repository;
- `passed` without `on_success.push`: the diff, attached to the progress comment;
- and whenever a push is not allowed or fails: the diff instead, with the reason.

What was done is returned for the run's ``extra["publish"]``, where the progress comment reads
it: ``action`` (`pushed`, `run_branch`, `diff`, `nothing`, `failed`), ``branch``, ``commit``,
``reason`` and ``diff``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from app.checkouts import CheckoutError, Checkouts, PushResult
from app.github_client import GitHubClient, GitHubError, PullRequest
from app.ledger import JobRow, RunRow
from loops.errors import WorkspaceError
from loops.events import Outcome
from loops.workflows import Workflow

log = structlog.get_logger("app.github")

KEEP_WORK: frozenset[str] = frozenset({"braked", "stuck", "cancelled", "errored"})
"""Statuses whose work is pushed to the run's own branch, to be looked at or resumed."""


@dataclass(frozen=True, kw_only=True)
class _Target:
    repo: str
    installation_id: int | None
    pr: int | None


class GitHubRunHooks:
    """`app.runner.RunHooks` for jobs from GitHub comments."""

    def __init__(self, client: GitHubClient, checkouts: Checkouts) -> None:
        self.client = client
        self.checkouts = checkouts

    async def workspace(self, run: RunRow, job: JobRow, workflow: Workflow) -> Path:
        target = _target(job)
        try:
            url, ref = await self._source(target, workflow)
            token = await self.client.access_token(
                target.repo, installation_id=target.installation_id
            )
        except GitHubError as exc:
            raise WorkspaceError(f"GitHub did not give what the checkout needs: {exc}") from exc
        return await self.checkouts.clone(run_id=run.id, clone_url=url, ref=ref, token=token)

    async def publish(
        self, run: RunRow, job: JobRow, workflow: Workflow, outcome: Outcome, root: Path
    ) -> dict[str, object]:
        try:
            return await self._publish(run, job, workflow, outcome, root)
        except (GitHubError, CheckoutError) as exc:
            log.warning("publish_failed", run_id=run.id, error=str(exc)[:500])
            return await self._diff_instead(root, f"publishing failed: {exc}", failed=True)

    async def _source(self, target: _Target, workflow: Workflow) -> tuple[str, str]:
        """The clone URL and the branch the workflow works on."""
        if workflow.workspace == "pr":
            if target.pr is None:
                raise WorkspaceError(
                    f"workflow {workflow.name!r} works on a pull request; "
                    "comment on a pull request to run it"
                )
            pull = await self._pull(target)
            if pull.head_clone_url is None:
                raise WorkspaceError(
                    f"the head repository of pull request #{pull.number} no longer exists"
                )
            return pull.head_clone_url, pull.head_ref
        repo = await self.client.repository(target.repo, installation_id=target.installation_id)
        return repo.clone_url, repo.default_branch

    async def _publish(
        self, run: RunRow, job: JobRow, workflow: Workflow, outcome: Outcome, root: Path
    ) -> dict[str, object]:
        target = _target(job)
        diff = await self.checkouts.diff(root)
        if not diff.strip():
            return {"action": "nothing", "reason": "the run changed nothing"}
        message = _commit_message(run, workflow, outcome)
        token = await self.client.access_token(target.repo, installation_id=target.installation_id)
        repo = await self.client.repository(target.repo, installation_id=target.installation_id)
        pushes_branch = outcome.status == "passed" and workflow.on_success.push
        reason = ""
        if pushes_branch and workflow.workspace == "pr" and target.pr is not None:
            pull = await self._pull(target)
            if pull.is_fork:
                reason = "the pull request comes from a fork, where Loopwright cannot push"
            else:
                result = await self.checkouts.publish(
                    root,
                    run_id=run.id,
                    message=message,
                    branch=pull.head_ref,
                    token=token,
                    default_branch=repo.default_branch,
                )
                if result.pushed:
                    return _pushed("pushed", result)
                reason = result.reason
        elif pushes_branch:
            reason = f"a {workflow.workspace!r} workspace is never pushed to its default branch"
        elif outcome.status == "passed":
            return {"action": "diff", "reason": "the workflow does not push", "diff": diff}
        elif outcome.status not in KEEP_WORK:
            return {"action": "nothing", "reason": f"the run ended {outcome.status}"}
        result = await self.checkouts.push_run_branch(
            root, run_id=run.id, base_clone_url=repo.clone_url, token=token, message=message
        )
        if result.pushed:
            return {**_pushed("run_branch", result), "reason": reason}
        because = "; ".join(r for r in (reason, result.reason) if r)
        return {"action": "diff", "reason": because, "diff": diff}

    async def _pull(self, target: _Target) -> PullRequest:
        assert target.pr is not None
        return await self.client.pull_request(
            target.repo, target.pr, installation_id=target.installation_id
        )

    async def _diff_instead(self, root: Path, reason: str, *, failed: bool) -> dict[str, object]:
        try:
            diff = await self.checkouts.diff(root)
        except CheckoutError as exc:
            return {"action": "failed", "reason": f"{reason}; the diff failed too: {exc}"}
        if not diff.strip():
            return {"action": "failed" if failed else "nothing", "reason": reason}
        return {"action": "diff", "reason": reason, "diff": diff}


def _target(job: JobRow) -> _Target:
    reply: dict[str, Any] = dict(job.reply)
    repo = job.repo or str(reply.get("repo", ""))
    if not repo:
        raise WorkspaceError("the job names no repository")
    installation = str(reply.get("installation_id") or "")
    return _Target(
        repo=repo,
        installation_id=int(installation) if installation.isdigit() else None,
        pr=job.pr,
    )


def _pushed(action: str, result: PushResult) -> dict[str, object]:
    return {"action": action, "branch": result.branch, "commit": result.commit or ""}


def _commit_message(run: RunRow, workflow: Workflow, outcome: Outcome) -> str:
    return (
        f"Loopwright run {run.id}: {workflow.name}\n\n"
        f"The run ended {outcome.status} after {outcome.turns} turn(s): {outcome.reason}"[:2000]
    )
