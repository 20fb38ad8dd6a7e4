"""The GitHub client's one request path against the local GitHub stand-in: retries on 5xx and
dropped connections, rate limits (secondary, primary, 429) and the errors left when it gives up."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from email.utils import formatdate

import httpx
import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from app.github_auth import TokenAuth
from app.github_client import (
    GitHubClient,
    GitHubForbidden,
    GitHubRateLimited,
    GitHubUnavailable,
)
from tests.support.github_server import FakeClock, FakeGitHub, RecordingSleep

REPO = "acme/widgets"
REPO_PATH = f"/repos/{REPO}"
TOKEN = "ghp_retries"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sleep(clock: FakeClock) -> RecordingSleep:
    return RecordingSleep(clock)


@pytest.fixture
def github(clock: FakeClock) -> Iterator[FakeGitHub]:
    with FakeGitHub(clock=clock) as server:
        server.add_repo(REPO, clone_url="/srv/git/widgets")
        server.add_plain_token(TOKEN)
        yield server


@pytest.fixture
async def client(
    github: FakeGitHub, clock: FakeClock, sleep: RecordingSleep
) -> AsyncIterator[GitHubClient]:
    async with httpx.AsyncClient(base_url=github.url) as http:
        yield GitHubClient(http, TokenAuth(SecretStr(TOKEN)), clock=clock, sleep=sleep)


async def test_5xx_is_retried_with_backoff(
    client: GitHubClient, github: FakeGitHub, sleep: RecordingSleep
) -> None:
    github.fail(REPO_PATH, 502, times=2)

    with capture_logs() as logs:
        repo = await client.repository(REPO)

    assert repo.full_name == REPO
    assert sleep.waits == [1.0, 2.0]
    assert len(github.requests_to(REPO_PATH)) == 3
    retries = [e for e in logs if e["event"] == "github_request_retrying"]
    assert [(e["status"], e["attempt"], e["wait_seconds"]) for e in retries] == [
        (502, 1, 1.0),
        (502, 2, 2.0),
    ]
    assert retries[0]["path"] == REPO_PATH


async def test_gives_up_after_the_last_attempt(
    client: GitHubClient, github: FakeGitHub, sleep: RecordingSleep
) -> None:
    github.fail(REPO_PATH, 503, times=10, message="Service Unavailable")

    with pytest.raises(GitHubUnavailable) as caught:
        await client.repository(REPO)

    assert str(caught.value) == (
        f"GitHub GET {REPO_PATH} answered 503: Service Unavailable (after 4 attempts)"
    )
    assert (caught.value.status, caught.value.attempts) == (503, 4)
    assert sleep.waits == [1.0, 2.0, 4.0]


async def test_secondary_rate_limit_honours_retry_after(
    client: GitHubClient, github: FakeGitHub, sleep: RecordingSleep
) -> None:
    github.secondary_rate_limit(REPO_PATH, retry_after=7)
    github.fail(f"{REPO_PATH}/pulls/1", 429, headers={"retry-after": "3"})
    github.add_pull(REPO, 1, head_ref="x")

    await client.repository(REPO)
    await client.pull_request(REPO, 1)

    assert sleep.waits == [7.0, 3.0]


async def test_retry_after_may_be_an_http_date(
    client: GitHubClient, github: FakeGitHub, clock: FakeClock, sleep: RecordingSleep
) -> None:
    github.fail(REPO_PATH, 503, headers={"retry-after": formatdate(clock.now + 5, usegmt=True)})

    await client.repository(REPO)

    assert sleep.waits == [5.0]


async def test_primary_rate_limit_waits_until_the_reset(
    client: GitHubClient, github: FakeGitHub, clock: FakeClock, sleep: RecordingSleep
) -> None:
    github.primary_rate_limit(REPO_PATH, reset=clock.now + 30)

    await client.repository(REPO)

    assert sleep.waits == [31.0]  # one second past the reset, for clocks a little apart


async def test_a_rate_limit_beyond_max_wait_fails_at_once(
    client: GitHubClient, github: FakeGitHub, clock: FakeClock, sleep: RecordingSleep
) -> None:
    github.primary_rate_limit(REPO_PATH, reset=clock.now + 3600)

    with pytest.raises(GitHubRateLimited, match=r"retry in 3601s is beyond max_wait of 60s"):
        await client.repository(REPO)

    assert sleep.waits == []
    assert len(github.requests_to(REPO_PATH)) == 1


async def test_rate_limited_to_the_last_attempt(
    client: GitHubClient, github: FakeGitHub, sleep: RecordingSleep
) -> None:
    github.secondary_rate_limit(REPO_PATH, retry_after=1, times=10)

    with pytest.raises(GitHubRateLimited, match="secondary rate limit") as caught:
        await client.repository(REPO)

    assert (caught.value.status, caught.value.attempts) == (403, 4)
    assert sleep.waits == [1.0, 1.0, 1.0]


async def test_dropped_connections_are_retried_then_unavailable(
    client: GitHubClient, github: FakeGitHub, sleep: RecordingSleep
) -> None:
    github.fail(REPO_PATH, 0, times=1)
    assert (await client.repository(REPO)).full_name == REPO

    github.fail(REPO_PATH, 0, times=10)
    with pytest.raises(GitHubUnavailable, match=rf"GET {REPO_PATH} did not answer") as caught:
        await client.repository(REPO)

    assert caught.value.status == 0
    assert isinstance(caught.value.__cause__, httpx.TransportError)
    assert sleep.waits == [1.0, 1.0, 2.0, 4.0]


async def test_other_client_errors_are_not_retried(
    client: GitHubClient, github: FakeGitHub, sleep: RecordingSleep
) -> None:
    github.fail(REPO_PATH, 403, message="Resource not accessible by integration")

    with pytest.raises(GitHubForbidden, match="403: Resource not accessible by integration"):
        await client.repository(REPO)

    assert sleep.waits == []
    assert len(github.requests_to(REPO_PATH)) == 1
