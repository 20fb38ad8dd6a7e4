"""The endpoints of the GitHub stand-in (`tests.support.github_server`), in GitHub's shapes.

Each handler gets the server (its state is locked while handlers run), the authenticated
caller, the path match, the query and the JSON body, and returns an `Answer`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tests.support.github_state import (
    Answer,
    Caller,
    CommentState,
    RepoState,
    blob_sha,
    encode_content,
    error,
    iso,
    validation_failed,
)

if TYPE_CHECKING:
    from tests.support.github_server import FakeGitHub

REACTIONS = frozenset({"+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes"})


Handler = Callable[["FakeGitHub", Caller, "re.Match[str]", dict[str, str], Any], Answer]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    jwt: bool
    handle: Handler


ROUTES: list[Route] = []


def route(method: str, pattern: str, *, jwt: bool = False) -> Callable[[Handler], Handler]:
    compiled = re.compile(pattern.replace("{repo}", r"(?P<repo>[^/]+/[^/]+)"))

    def register(handle: Handler) -> Handler:
        ROUTES.append(Route(method, compiled, jwt, handle))
        return handle

    return register


@route("POST", r"/app/installations/(?P<id>\d+)/access_tokens", jwt=True)
def create_installation_token(
    gh: FakeGitHub, caller: Caller, match: re.Match[str], query: dict[str, str], body: Any
) -> Answer:
    installation_id = int(match["id"])
    if installation_id not in gh.installations:
        return error(404, "Not Found")
    token, expires_at = gh.issue_token(installation_id)
    permissions = {"contents": "write", "issues": "write", "pull_requests": "write"}
    return Answer(
        201,
        {
            "token": token,
            "expires_at": iso(expires_at),
            "permissions": {**permissions, "metadata": "read"},
            "repository_selection": "selected",
        },
    )


@route("GET", r"/repos/{repo}/installation", jwt=True)
def repo_installation(
    gh: FakeGitHub, caller: Caller, match: re.Match[str], query: dict[str, str], body: Any
) -> Answer:
    name = match["repo"].lower()
    for installation_id, repos in sorted(gh.installations.items()):
        if name in repos:
            owner = match["repo"].split("/")[0]
            payload = {
                "id": installation_id,
                "app_id": int(gh.app_id) if gh.app_id.isdigit() else gh.app_id,
                "account": _user(owner, "Organization"),
                "target_type": "Organization",
                "repository_selection": "selected",
            }
            return Answer(200, payload)
    return error(404, "Not Found")


@route("GET", r"/repos/{repo}/collaborators/(?P<login>[^/]+)/permission")
def collaborator_permission(
    gh: FakeGitHub, caller: Caller, match: re.Match[str], query: dict[str, str], body: Any
) -> Answer:
    repo = _visible(gh, caller, match["repo"])
    if isinstance(repo, Answer):
        return repo
    role = repo.roles.get(match["login"].lower())
    if role is None:
        return error(404, "Not Found")
    role_name, legacy = role
    payload = {"permission": legacy, "role_name": role_name, "user": _user(match["login"])}
    return Answer(200, payload)


@route("POST", r"/repos/{repo}/issues/comments/(?P<id>\d+)/reactions")
def react_to_issue_comment(
    gh: FakeGitHub, caller: Caller, match: re.Match[str], query: dict[str, str], body: Any
) -> Answer:
    return _react(gh, caller, match, body, "issue")


@route("POST", r"/repos/{repo}/pulls/comments/(?P<id>\d+)/reactions")
def react_to_review_comment(
    gh: FakeGitHub, caller: Caller, match: re.Match[str], query: dict[str, str], body: Any
) -> Answer:
    return _react(gh, caller, match, body, "review")


@route("POST", r"/repos/{repo}/issues/(?P<number>\d+)/comments")
def create_issue_comment(
    gh: FakeGitHub, caller: Caller, match: re.Match[str], query: dict[str, str], body: Any
) -> Answer:
    repo = _visible(gh, caller, match["repo"])
    if isinstance(repo, Answer):
        return repo
    number = int(match["number"])
    if number not in repo.issues:
        return error(404, "Not Found")
    text = body.get("body") if isinstance(body, dict) else None
    if not isinstance(text, str) or not text:
        return validation_failed("IssueComment", "body", "missing_field")
    comment_id = gh.new_comment(repo.full_name, "issue", number, text, caller.login)
    return Answer(201, _comment(gh, gh.comments[comment_id]))


@route("PATCH", r"/repos/{repo}/issues/comments/(?P<id>\d+)")
def update_issue_comment(
    gh: FakeGitHub, caller: Caller, match: re.Match[str], query: dict[str, str], body: Any
) -> Answer:
    comment = _comment_in(gh, caller, match, "issue")
    if isinstance(comment, Answer):
        return comment
    text = body.get("body") if isinstance(body, dict) else None
    if not isinstance(text, str) or not text:
        return validation_failed("IssueComment", "body", "missing_field")
    comment.body = text
    comment.updated_at = gh.now_iso()
    return Answer(200, _comment(gh, comment))


@route("GET", r"/repos/{repo}/pulls/(?P<number>\d+)")
def get_pull(
    gh: FakeGitHub, caller: Caller, match: re.Match[str], query: dict[str, str], body: Any
) -> Answer:
    repo = _visible(gh, caller, match["repo"])
    if isinstance(repo, Answer):
        return repo
    pull = gh.pulls.get((repo.full_name.lower(), int(match["number"])))
    if pull is None:
        return error(404, "Not Found")
    head_repo = None
    if pull.head_repo is not None:
        known = gh.repos.get(pull.head_repo.lower())
        clone_url = known.clone_url if known else pull.head_clone_url or ""
        head_repo = _repo(gh, pull.head_repo, clone_url, fork=known is not repo)
    head_owner = (pull.head_repo or "ghost/").split("/")[0]
    payload = {
        "url": f"{gh.url}/repos/{repo.full_name}/pulls/{pull.number}",
        "id": pull.number * 1000,
        "number": pull.number,
        "state": pull.state,
        "title": f"Pull request {pull.number}",
        "user": _user(head_owner),
        "draft": False,
        "merged": False,
        "maintainer_can_modify": pull.maintainer_can_modify,
        "head": {
            "label": f"{head_owner}:{pull.head_ref}",
            "ref": pull.head_ref,
            "sha": pull.head_sha,
            "repo": head_repo,
        },
        "base": {
            "label": f"{repo.full_name.split('/')[0]}:{pull.base_ref}",
            "ref": pull.base_ref,
            "sha": "b" * 40,
            "repo": _repo(gh, repo.full_name, repo.clone_url, default_branch=repo.default_branch),
        },
    }
    return Answer(200, payload)


@route("GET", r"/repos/{repo}")
def get_repo(
    gh: FakeGitHub, caller: Caller, match: re.Match[str], query: dict[str, str], body: Any
) -> Answer:
    repo = _visible(gh, caller, match["repo"])
    if isinstance(repo, Answer):
        return repo
    payload = _repo(
        gh, repo.full_name, repo.clone_url, default_branch=repo.default_branch, private=repo.private
    )
    if caller.kind == "token":  # GitHub tells users, not installations, what they may do
        payload["permissions"] = dict(repo.permissions)
    return Answer(200, payload)


@route("GET", r"/repos/{repo}/contents(?:/(?P<path>.*))?")
def get_contents(
    gh: FakeGitHub, caller: Caller, match: re.Match[str], query: dict[str, str], body: Any
) -> Answer:
    repo = _visible(gh, caller, match["repo"])
    if isinstance(repo, Answer):
        return repo
    ref = query.get("ref") or repo.default_branch
    files = repo.files.get(ref)
    if files is None:
        return error(404, f"No commit found for the ref {ref}")
    path = (match["path"] or "").strip("/")
    if path in files:
        return Answer(200, _file(gh, repo, path, files[path]))
    prefix = f"{path}/" if path else ""
    children: dict[str, str] = {}
    for name in files:
        if name.startswith(prefix):
            child, nested, _ = name[len(prefix) :].partition("/")
            children[child] = "dir" if nested else children.get(child, "file")
    if not children:
        return error(404, "Not Found")
    entries = [
        _entry(gh, repo, f"{prefix}{child}", kind, files.get(f"{prefix}{child}", ""))
        for child, kind in sorted(children.items())
    ]
    return Answer(200, entries)


def _visible(gh: FakeGitHub, caller: Caller, name: str) -> RepoState | Answer:
    # GitHub answers 404, not 403, for a repository these credentials may not see.
    repo = gh.repos.get(name.lower())
    if repo is None or not gh.can_see(caller, repo.full_name):
        return error(404, "Not Found")
    return repo


def _comment_in(
    gh: FakeGitHub, caller: Caller, match: re.Match[str], kind: str
) -> CommentState | Answer:
    repo = _visible(gh, caller, match["repo"])
    if isinstance(repo, Answer):
        return repo
    comment = gh.comments.get(int(match["id"]))
    if comment is None or comment.kind != kind or comment.repo != repo.full_name:
        return error(404, "Not Found")
    return comment


def _react(gh: FakeGitHub, caller: Caller, match: re.Match[str], body: Any, kind: str) -> Answer:
    comment = _comment_in(gh, caller, match, kind)
    if isinstance(comment, Answer):
        return comment
    content = body.get("content") if isinstance(body, dict) else None
    if content not in REACTIONS:
        return validation_failed("Reaction", "content", "invalid")
    for reaction in gh.reactions:
        if (reaction["comment_id"], reaction["user"], reaction["content"]) == (
            comment.id,
            caller.login,
            content,
        ):
            return Answer(200, _reaction(gh, reaction))  # GitHub's answer to a repeat
    reaction = {
        "id": gh.new_id(),
        "repo": comment.repo,
        "kind": kind,
        "comment_id": comment.id,
        "content": content,
        "user": caller.login,
        "created_at": gh.now_iso(),
    }
    gh.reactions.append(reaction)
    return Answer(201, _reaction(gh, reaction))


def _reaction(gh: FakeGitHub, reaction: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": reaction["id"],
        "node_id": f"REA_{reaction['id']}",
        "user": _user(reaction["user"]),
        "content": reaction["content"],
        "created_at": reaction["created_at"],
    }


def _comment(gh: FakeGitHub, comment: CommentState) -> dict[str, Any]:
    api = f"{gh.url}/repos/{comment.repo}"
    return {
        "id": comment.id,
        "node_id": f"IC_{comment.id}",
        "url": f"{api}/issues/comments/{comment.id}",
        "html_url": f"https://github.com/{comment.repo}/pull/{comment.number}"
        f"#issuecomment-{comment.id}",
        "issue_url": f"{api}/issues/{comment.number}",
        "body": comment.body,
        "user": _user(comment.user),
        "created_at": comment.created_at,
        "updated_at": comment.updated_at,
        "author_association": "NONE",
    }


def _repo(
    gh: FakeGitHub,
    full_name: str,
    clone_url: str,
    *,
    default_branch: str = "main",
    private: bool = False,
    fork: bool = False,
) -> dict[str, Any]:
    owner, _, name = full_name.partition("/")
    return {
        "id": sum(full_name.encode()),
        "name": name,
        "full_name": full_name,
        "owner": _user(owner),
        "private": private,
        "fork": fork,
        "html_url": f"https://github.com/{full_name}",
        "url": f"{gh.url}/repos/{full_name}",
        "clone_url": clone_url,
        "default_branch": default_branch,
    }


def _file(gh: FakeGitHub, repo: RepoState, path: str, text: str) -> dict[str, Any]:
    return {
        **_entry(gh, repo, path, "file", text),
        "encoding": "base64",
        "content": encode_content(text),
    }


def _entry(gh: FakeGitHub, repo: RepoState, path: str, kind: str, text: str) -> dict[str, Any]:
    return {
        "type": kind,
        "name": path.rsplit("/", 1)[-1],
        "path": path,
        "sha": blob_sha(text) if kind == "file" else blob_sha(path),
        "size": len(text.encode()) if kind == "file" else 0,
        "url": f"{gh.url}/repos/{repo.full_name}/contents/{path}",
        "html_url": f"https://github.com/{repo.full_name}/blob/{repo.default_branch}/{path}",
        "download_url": None,
    }


def _user(login: str, kind: str | None = None) -> dict[str, Any]:
    user_type = kind or ("Bot" if login.endswith("[bot]") else "User")
    return {"login": login, "id": sum(login.encode()), "type": user_type}
