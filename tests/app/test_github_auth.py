"""GitHub credentials against the local GitHub stand-in: App JWTs, installation tokens (cached,
refreshed, shared by concurrent callers), plain tokens, and tokens kept out of every repr,
error and log line."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from pydantic import SecretStr
from structlog.testing import capture_logs

from app.github_auth import AccessToken, AppAuth, TokenAuth, auth_from_settings
from app.github_client import GitHubClient, GitHubError, GitHubForbidden
from app.settings import GitHubSettings
from tests.support.github_server import FakeClock, FakeGitHub, RecordingSleep, pem

APP_ID = "4242"
REPO = "acme/widgets"
INSTALLATION = 77
LOOKUP = f"/repos/{REPO}/installation"
EXCHANGE = f"/app/installations/{INSTALLATION}/access_tokens"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sleep(clock: FakeClock) -> RecordingSleep:
    return RecordingSleep(clock)


@pytest.fixture
def github(app_key: RSAPrivateKey, clock: FakeClock) -> Iterator[FakeGitHub]:
    with FakeGitHub(app_id=APP_ID, public_key=app_key.public_key(), clock=clock) as server:
        server.add_repo(REPO, clone_url="/srv/git/widgets")
        server.add_installation(INSTALLATION, [REPO])
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


async def test_app_jwt_is_rs256_backdated_and_accepted_by_github(
    client: GitHubClient, github: FakeGitHub, clock: FakeClock, app_key: RSAPrivateKey
) -> None:
    token = await client.access_token(REPO)

    assert list(github.issued) == [token]
    lookup, exchange = github.requests
    assert (lookup.method, lookup.path) == ("GET", LOOKUP)
    assert (exchange.method, exchange.path) == ("POST", EXCHANGE)
    for request in (lookup, exchange):
        scheme, _, encoded = request.headers["authorization"].partition(" ")
        assert scheme == "Bearer"
        assert jwt.get_unverified_header(encoded)["alg"] == "RS256"
        claims = jwt.decode(
            encoded,
            app_key.public_key(),
            algorithms=["RS256"],
            options={"verify_exp": False, "verify_iat": False},
        )
        assert claims == {"iat": int(clock.now) - 60, "exp": int(clock.now) + 540, "iss": APP_ID}
        assert claims["exp"] - clock.now <= 600
    assert len(github.jwt_claims) == 2  # the server verified both


async def test_stand_in_refuses_a_jwt_beyond_ten_minutes(
    github: FakeGitHub, http: httpx.AsyncClient, app_key: RSAPrivateKey, clock: FakeClock
) -> None:
    now = int(clock.now)
    claims = {"iat": now - 60, "exp": now + 660, "iss": APP_ID}
    encoded = jwt.encode(claims, app_key, algorithm="RS256")

    response = await http.get(LOOKUP, headers={"Authorization": f"Bearer {encoded}"})

    assert response.status_code == 401
    assert "too far in the future" in response.json()["message"]


async def test_installation_token_is_cached_until_five_minutes_before_expiry(
    client: GitHubClient, github: FakeGitHub, clock: FakeClock
) -> None:
    first = await client.access_token(REPO)
    clock.advance(3600 - 301)
    assert await client.access_token(REPO) == first

    clock.advance(2)  # 299 s left: inside the margin
    second = await client.access_token(REPO)

    assert second != first
    assert len(github.requests_to(EXCHANGE)) == 2
    assert len(github.requests_to(LOOKUP)) == 1


async def test_requests_use_the_cached_installation_token(
    client: GitHubClient, github: FakeGitHub
) -> None:
    await client.repository(REPO)
    await client.repository(REPO)

    (token,) = github.issued
    sent = [r.headers["authorization"] for r in github.requests_to(f"/repos/{REPO}")]
    assert sent == [f"Bearer {token}"] * 2
    assert len(github.requests_to(EXCHANGE)) == 1


async def test_concurrent_callers_share_one_lookup_and_one_refresh(
    client: GitHubClient, github: FakeGitHub
) -> None:
    tokens = await asyncio.gather(*(client.access_token(REPO) for _ in range(10)))
    repos = await asyncio.gather(*(client.repository(REPO) for _ in range(5)))

    assert len(set(tokens)) == 1
    assert {repo.full_name for repo in repos} == {REPO}
    assert len(github.requests_to(LOOKUP)) == 1
    assert len(github.requests_to(EXCHANGE)) == 1


async def test_a_known_installation_id_skips_the_lookup(
    client: GitHubClient, github: FakeGitHub
) -> None:
    await client.access_token(REPO, installation_id=INSTALLATION)
    await client.repository(REPO)  # remembered for the repository

    assert github.requests_to(LOOKUP) == []
    assert len(github.requests_to(EXCHANGE)) == 1


async def test_a_revoked_token_is_replaced_once(client: GitHubClient, github: FakeGitHub) -> None:
    first = await client.access_token(REPO)
    github.revoke_tokens()

    with capture_logs() as logs:
        repo = await client.repository(REPO)

    assert repo.full_name == REPO
    assert await client.access_token(REPO) != first
    assert len(github.requests_to(EXCHANGE)) == 2
    assert [e["event"] for e in logs if e["event"] == "github_token_rejected"] == [
        "github_token_rejected"
    ]


async def test_an_uninstalled_repository_is_not_found(
    client: GitHubClient, github: FakeGitHub
) -> None:
    github.add_repo("acme/other", clone_url="/srv/git/other")

    with pytest.raises(GitHubError, match=r"GET /repos/acme/other/installation answered 404"):
        await client.repository("acme/other")


async def test_plain_token_is_used_as_is(github: FakeGitHub, http: httpx.AsyncClient) -> None:
    github.add_plain_token("ghp_plain_token_value")
    client = GitHubClient(http, TokenAuth(SecretStr("ghp_plain_token_value")))

    repo = await client.repository(REPO)

    assert await client.access_token(REPO) == "ghp_plain_token_value"
    assert [r.headers["authorization"] for r in github.requests] == ["Bearer ghp_plain_token_value"]
    assert repo.permissions is not None
    assert repo.permissions["push"] is True


async def test_a_refused_plain_token_is_forbidden_at_once(
    github: FakeGitHub, http: httpx.AsyncClient, sleep: RecordingSleep
) -> None:
    client = GitHubClient(http, TokenAuth(SecretStr("ghp_wrong")), sleep=sleep)

    with pytest.raises(GitHubForbidden, match="answered 401: Bad credentials") as caught:
        await client.repository(REPO)

    assert caught.value.status == 401
    assert len(github.requests) == 1
    assert sleep.waits == []


async def test_the_token_exchange_is_retried_too(
    client: GitHubClient, github: FakeGitHub, sleep: RecordingSleep
) -> None:
    github.fail(EXCHANGE, 500)

    assert await client.access_token(REPO) in github.issued
    assert sleep.waits == [1.0]


def test_settings_choose_the_app_then_the_token(app_key: RSAPrivateKey) -> None:
    one_line = pem(app_key).strip().replace("\n", "\\n")  # as pasted into an env file
    app = GitHubSettings(app_id=APP_ID, private_key=SecretStr(one_line), token=SecretStr("t"))

    assert isinstance(auth_from_settings(app, clock=FakeClock()), AppAuth)
    plain = GitHubSettings(token=SecretStr("ghp_x"))
    assert isinstance(auth_from_settings(plain, clock=FakeClock()), TokenAuth)
    assert auth_from_settings(GitHubSettings(), clock=FakeClock()) is None


async def test_client_from_settings_is_none_without_credentials() -> None:
    async with httpx.AsyncClient(base_url="http://127.0.0.1:9") as http:
        assert GitHubClient.from_settings(GitHubSettings(), http) is None
        token = GitHubSettings(token=SecretStr("ghp_x"))
        assert isinstance(GitHubClient.from_settings(token, http), GitHubClient)


def test_an_unreadable_private_key_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValueError, match="not a readable PEM private key") as caught:
        AppAuth(
            APP_ID, SecretStr("-----BEGIN RSA PRIVATE KEY-----\nsecretstuff\n"), clock=FakeClock()
        )
    assert "secretstuff" not in str(caught.value)

    ec_key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(ValueError, match="must be RSA"):
        AppAuth(APP_ID, SecretStr(ec_key.decode()), clock=FakeClock())


async def test_tokens_never_reach_reprs_errors_or_logs(
    client: GitHubClient, github: FakeGitHub, app_key: RSAPrivateKey
) -> None:
    github.fail(f"/repos/{REPO}/pulls/1", 502, times=1)
    github.fail(f"/repos/{REPO}/pulls/2", 0, times=10)
    errors: list[BaseException] = []
    with capture_logs() as logs:
        token = await client.access_token(REPO)
        github.revoke_tokens()
        await client.repository(REPO)  # 401, refresh, retry
        for number in (1, 2, 3):
            try:
                await client.pull_request(REPO, number)
            except GitHubError as exc:
                errors.append(exc)
    assert len(errors) == 3

    secrets = [token, *github.issued, *_jwts(github), pem(app_key).splitlines()[1]]
    texts = [repr(client), str(client), repr(client._auth), repr(AccessToken(SecretStr(token)))]
    texts += [repr(logs)]
    for error in errors:
        chain: BaseException | None = error
        while chain is not None:
            texts += [str(chain), repr(chain)]
            chain = chain.__cause__
    for secret in secrets:
        assert all(secret not in text for text in texts)
    assert {e["event"] for e in logs} >= {"github_request_retrying", "github_token_refreshed"}


def _jwts(github: FakeGitHub) -> list[str]:
    return [
        r.headers["authorization"].removeprefix("Bearer ")
        for r in github.requests
        if r.path.startswith("/app/") or r.path.endswith("/installation")
    ]
