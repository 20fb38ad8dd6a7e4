"""The API trigger's pure parts: the job request, its `LoopJob`, and the bearer check."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from triggers.api import JobRequest, to_loop_job, verify_bearer


@pytest.mark.parametrize(
    ("fields", "workdir", "key"),
    [
        ({"repo": "octo/calc", "pr": 7}, "/srv/calc", "repo:octo/calc#7"),
        ({"repo": "octo/calc"}, "/srv/calc", "repo:octo/calc"),
        ({}, "/srv/calc", "workdir:/srv/calc"),
        ({}, None, None),
    ],
)
def test_runs_of_one_pr_repository_or_directory_share_a_concurrency_key(fields, workdir, key):
    request = JobRequest(workflow="fix-tests", **fields)

    job = to_loop_job(request, workdir=workdir)

    assert job.concurrency_key == key
    assert job.workdir == workdir


def test_the_job_carries_the_request_and_comes_from_the_api():
    request = JobRequest.model_validate(
        {
            "workflow": "fix-tests",
            "instruction": "Fix it.",
            "repo": "octo/calc",
            "pr": 7.0,
            "model": "openai/gpt-4.1-mini",
            "idempotency_key": "ci-42",
            "requested_by": "ci",
        }
    )

    job = to_loop_job(request, workdir="/srv/calc")

    assert job.source == "api"
    assert (job.workflow, job.instruction, job.pr) == ("fix-tests", "Fix it.", 7)
    assert (job.model, job.idempotency_key, job.requested_by) == (
        "openai/gpt-4.1-mini",
        "ci-42",
        "ci",
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"workflow": "fix-tests", "pr": 3}, "pr 3 needs repo ('owner/name')"),
        ({"workflow": "fix-tests", "instruction": "a\x00b"}, "must not contain NUL characters"),
        ({"workflow": "fix-tests", "requested_by": "\ud800"}, "lone surrogate"),
        ({"workflow": "fix-tests", "repo": "a/b", "pr": True}, "valid integer"),
        ({"workflow": "fix-tests", "repo": "a/b", "pr": 2.5}, "valid integer"),
        ({"workflow": "fix-tests", "brakes": {}}, "Extra inputs are not permitted"),
    ],
)
def test_requests_that_cannot_be_stored_or_run_are_invalid(fields, message):
    with pytest.raises(ValidationError, match=re.escape(message)):
        JobRequest.model_validate(fields)


@pytest.mark.parametrize(
    ("authorization", "token", "reason"),
    [
        ("Bearer s3cret", "s3cret", None),
        ("bearer  s3cret ", "s3cret", None),
        (None, "s3cret", "missing bearer token"),
        ("Bearer ", "s3cret", "missing bearer token"),
        ("Basic s3cret", "s3cret", "missing bearer token"),
        ("Bearer s3cre", "s3cret", "wrong bearer token"),
        ("Bearer s3cret", None, "the API is disabled: LOOPWRIGHT_API_TOKEN is not set"),
        ("Bearer ", "", "the API is disabled: LOOPWRIGHT_API_TOKEN is not set"),
    ],
)
def test_bearer_tokens(authorization, token, reason):
    assert verify_bearer(authorization, token) == reason
