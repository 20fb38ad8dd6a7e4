"""The GitHub client against the local GitHub stand-in: the endpoints a PR comment command
needs, and the one request path's headers, retries, rate limits and errors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from pydantic import SecretStr

from app.github_auth import AppAuth, TokenAuth
from app.github_client import (
    API_VERSION,
    GitHubClient,
    GitHubError,
    GitHubNotFound,
    Permission,
)
from tests.support.github_server import FakeClock, FakeGitHub, RecordingSleep, pem

APP_ID = "4242"
REPO = "acme/widgets"
REPO_PATH = f"/repos/{REPO}"
WORKFLOWS = {
    ".loopwright/workflows/fix-tests.md": "---\nname: fix-tests\n---\nFix — ✓\n",
    ".loopwright/workflows/review.md": "---\nname: review\n---\n",
    ".loopwright/workflows/drafts/old.md": "old",
    "README.md": "# widgets\n",
}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sleep(clock: FakeClock) -> RecordingSleep:
    return RecordingSleep(clock)


@pytest.fixture
def github(app_key: RSAPrivateKey, clock: FakeClock) -> Iterator[FakeGitHub]:
    with FakeGitHub(app_id=APP_ID, public_key=app_key.public_key(), clock=clock) as server:
        server.add_repo(REPO, clone_url="/srv/git/widgets", files=WORKFLOWS)
        server.add_installation(1, [REPO])
        yield server


@pytest.fixture
async def http(github: FakeGitHub) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=github.url) as client:
        yield client


@pytest.fixture
def client(
    http: httpx.AsyncClient, app_key: RSAPrivateKey, clock: FakeClock, sleep: RecordingSleep
) -> GitHubClient:
    auth = AppAuth(APP_ID, SecretStr(pem(app_key)), clock=clock)
    return GitHubClient(http, auth, clock=clock, sleep=sleep)


async def test_requests_carry_githubs_headers(client: GitHubClient, github: FakeGitHub) -> None:
    await client.repository(REPO)

    (request,) = github.requests_to(REPO_PATH)
    assert request.headers["accept"] == "application/vnd.github+json"
    assert request.headers["x-github-api-version"] == API_VERSION == "2022-11-28"
    assert request.headers["user-agent"] == "loopwright"
    assert request.headers["authorization"] == f"Bearer {next(iter(github.issued))}"


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        ("admin", True),
        ("maintain", True),
        ("write", True),
        ("triage", False),
        ("read", False),
        ("none", False),
    ],
)
async def test_permission_and_who_may_trigger(
    client: GitHubClient, github: FakeGitHub, role: Permission, allowed: bool
) -> None:
    github.set_role(REPO, "alice", role)

    assert await client.permission(REPO, "alice") == role
    assert await client.can_trigger(REPO, "alice") is allowed


async def test_a_custom_role_counts_as_its_base_role(
    client: GitHubClient, github: FakeGitHub
) -> None:
    github.set_role(REPO, "deployer", "release-manager", legacy="write")

    assert await client.permission(REPO, "deployer") == "write"
    assert await client.can_trigger(REPO, "deployer") is True


async def test_an_unknown_user_has_no_permission(client: GitHubClient, github: FakeGitHub) -> None:
    assert await client.permission(REPO, "mallory") == "none"
    assert await client.can_trigger(REPO, "dependabot[bot]") is False
    (bot,) = [r for r in github.requests if "dependabot" in r.path]
    assert bot.path == f"{REPO_PATH}/collaborators/dependabot[bot]/permission"


async def test_can_trigger_is_remembered_briefly(
    client: GitHubClient, github: FakeGitHub, clock: FakeClock
) -> None:
    path = f"{REPO_PATH}/collaborators/alice/permission"
    github.set_role(REPO, "alice", "write")
    assert await client.can_trigger(REPO, "alice") is True

    github.set_role(REPO, "alice", "read")
    clock.advance(59)
    assert await client.can_trigger(REPO, "Alice") is True  # same user, still cached
    assert len(github.requests_to(path)) == 1

    clock.advance(2)
    assert await client.can_trigger(REPO, "alice") is False
    assert len(github.requests_to(path)) == 2


async def test_reactions_on_issue_and_review_comments(
    client: GitHubClient, github: FakeGitHub
) -> None:
    github.add_pull(REPO, 5, head_ref="feature")
    issue_comment = github.add_comment(REPO, 5, "/loop fix-tests")
    review_comment = github.add_comment(REPO, 5, "@loopwright tidy this", kind="review")

    await client.add_reaction(REPO, issue_comment, kind="issue")
    await client.add_reaction(REPO, review_comment, kind="review", content="rocket")
    await client.add_reaction(REPO, issue_comment, kind="issue")  # a repeat: GitHub says 200

    assert [(r["kind"], r["comment_id"], r["content"]) for r in github.reactions] == [
        ("issue", issue_comment, "eyes"),
        ("review", review_comment, "rocket"),
    ]
    issue_path = f"{REPO_PATH}/issues/comments/{issue_comment}/reactions"
    review_path = f"{REPO_PATH}/pulls/comments/{review_comment}/reactions"
    assert [r.json for r in github.requests_to(issue_path, "POST")] == [{"content": "eyes"}] * 2
    assert [r.json for r in github.requests_to(review_path, "POST")] == [{"content": "rocket"}]


async def test_a_reaction_on_the_wrong_kind_of_comment_is_not_found(
    client: GitHubClient, github: FakeGitHub
) -> None:
    github.add_issue(REPO, 9)
    comment = github.add_comment(REPO, 9, "/loop fix-tests")

    with pytest.raises(GitHubNotFound, match=rf"POST {REPO_PATH}/pulls/comments/{comment}/"):
        await client.add_reaction(REPO, comment, kind="review")


async def test_create_then_update_a_comment(client: GitHubClient, github: FakeGitHub) -> None:
    github.add_pull(REPO, 5, head_ref="feature")

    comment_id = await client.create_comment(REPO, 5, "⏳ fix-tests: queued")
    await client.update_comment(REPO, comment_id, "✓ fix-tests: passed")

    assert github.comments[comment_id].body == "✓ fix-tests: passed"
    assert github.comments[comment_id].user == "loopwright[bot]"
    (patch,) = github.requests_to(f"{REPO_PATH}/issues/comments/{comment_id}", "PATCH")
    assert patch.json == {"body": "✓ fix-tests: passed"}


async def test_comment_errors_carry_githubs_message(
    client: GitHubClient, github: FakeGitHub
) -> None:
    github.add_issue(REPO, 3)
    with pytest.raises(GitHubNotFound):
        await client.create_comment(REPO, 404, "hello")

    with pytest.raises(
        GitHubError, match="answered 422: Validation Failed; IssueComment body"
    ) as e:
        await client.create_comment(REPO, 3, "")
    assert type(e.value) is GitHubError
    assert (e.value.status, e.value.message) == (
        422,
        "Validation Failed; IssueComment body missing_field",
    )


async def test_pull_request_from_the_same_repository(
    client: GitHubClient, github: FakeGitHub
) -> None:
    github.add_pull(REPO, 7, head_ref="fix/flaky", head_sha="a" * 40)

    pull = await client.pull_request(REPO, 7)

    assert (pull.number, pull.state, pull.head_ref, pull.head_sha) == (
        7,
        "open",
        "fix/flaky",
        "a" * 40,
    )
    assert (pull.head_repo, pull.base_repo, pull.base_ref) == (REPO, REPO, "main")
    assert pull.head_clone_url == pull.base_clone_url == "/srv/git/widgets"
    assert pull.is_fork is False


async def test_pull_request_from_a_fork(client: GitHubClient, github: FakeGitHub) -> None:
    github.add_pull(
        REPO,
        8,
        head_ref="main",
        head_repo="bob/widgets",
        head_clone_url="/srv/git/bob",
        maintainer_can_modify=True,
    )
    github.add_pull(REPO, 9, head_ref="gone", head_repo=None)

    fork = await client.pull_request(REPO, 8)
    deleted = await client.pull_request(REPO, 9)

    assert (fork.head_repo, fork.head_clone_url, fork.is_fork) == (
        "bob/widgets",
        "/srv/git/bob",
        True,
    )
    assert fork.maintainer_can_modify is True
    assert (deleted.head_repo, deleted.head_clone_url, deleted.is_fork) == (None, None, True)
    with pytest.raises(GitHubNotFound):
        await client.pull_request(REPO, 10)


async def test_repository(client: GitHubClient, github: FakeGitHub) -> None:
    github.add_repo(
        "acme/secret", clone_url="/srv/git/secret", default_branch="trunk", private=True
    )
    github.add_installation(2, ["acme/secret"])

    repo = await client.repository("acme/secret")

    assert (repo.full_name, repo.default_branch, repo.clone_url) == (
        "acme/secret",
        "trunk",
        "/srv/git/secret",
    )
    assert repo.private is True
    assert repo.permissions is None  # GitHub reports them to users, not to installations


async def test_workflow_files_from_a_branch(client: GitHubClient, github: FakeGitHub) -> None:
    github.add_files(REPO, "next", {".loopwright/workflows/new.md": "new"})
    folder = ".loopwright/workflows"

    assert await client.list_dir(REPO, folder, "main") == ["fix-tests.md", "review.md"]
    assert await client.list_dir(REPO, folder, "next") == ["new.md"]
    assert (
        await client.file_text(REPO, f"{folder}/fix-tests.md", "main")
        == WORKFLOWS[f"{folder}/fix-tests.md"]
    )
    (request,) = github.requests_to(f"{REPO_PATH}/contents/{folder}/fix-tests.md")
    assert request.query == {"ref": "main"}


async def test_missing_files_and_folders(client: GitHubClient) -> None:
    assert await client.file_text(REPO, "nope.md", "main") is None
    assert await client.file_text(REPO, "README.md", "no-such-ref") is None
    assert await client.file_text(REPO, ".loopwright/workflows", "main") is None  # a folder
    assert await client.list_dir(REPO, ".github/loops", "main") == []
    assert await client.list_dir(REPO, "README.md", "main") == []  # a file


def test_repository_names_are_checked(client: GitHubClient) -> None:
    with pytest.raises(ValueError, match="repo must be 'owner/name', got 'widgets'"):
        client.remember_installation("widgets", 1)
    with pytest.raises(ValueError, match=r"got 'acme/\.\./x'"):
        client.remember_installation("acme/../x", 1)


async def test_paths_must_stay_inside_the_repository(client: GitHubClient) -> None:
    with pytest.raises(ValueError, match=r"without \. or \.\."):
        await client.file_text(REPO, "../../orgs/acme", "main")


async def test_an_api_root_with_a_path_as_github_enterprise_has() -> None:
    with FakeGitHub(prefix="/api/v3") as enterprise:
        enterprise.add_repo(REPO, clone_url="https://ghe.example.com/acme/widgets.git")
        enterprise.add_plain_token("ghp_enterprise")
        async with httpx.AsyncClient(base_url=enterprise.url) as http:
            client = GitHubClient(http, TokenAuth(SecretStr("ghp_enterprise")))
            repo = await client.repository(REPO)

    assert enterprise.url.endswith("/api/v3")
    assert repo.clone_url == "https://ghe.example.com/acme/widgets.git"
    assert [r.path for r in enterprise.requests] == [REPO_PATH]
