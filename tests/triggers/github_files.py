"""The real GitHub payloads in the shared fixtures, and what each one is."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "github"
NO_FIXTURES = pytest.mark.skipif(
    not FIXTURES.is_dir(), reason=f"the shared GitHub fixtures are not at {str(FIXTURES)!r}"
)
PR_COMMENT = "issue_comment__on-pull-request__atlantis-githubIssueCommentEvent.json"
URLENCODED_PING = "gidgethub-ping-urlencoded"

# What each payload file is: "issue" / "pr" comments become events, the rest are ignored.
EXPECTED = {
    "installation__created.payload.json": "ignored",
    "issue_comment__created.payload.json": "issue",
    "issue_comment__created.with-installation.payload.json": "issue",
    "issue_comment__created__atlantis-githubIssueCommentEvent_notAllowlisted.json": "issue",
    "issue_comment__deleted.payload.json": "ignored",
    "issue_comment__edited.payload.json": "ignored",
    PR_COMMENT: "pr",
    "ping__payload.json": "ignored",
    "ping__with-app_id.payload.json": "ignored",
    "pull_request__opened.payload.json": "ignored",
    "pull_request_review__submitted.payload.json": "ignored",
    "pull_request_review_comment__created.payload.json": "review",
    "pull_request_review_comment__edited.payload.json": "ignored",
    "push__payload.json": "ignored",
}


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_bytes())


def event_name(file_name: str) -> str:
    return file_name.split("__", 1)[0]
