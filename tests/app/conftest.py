"""Fixtures shared by the app tests: a database URL for each backend, and the GitHub stand-in
with the service in front of it."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from loops.testing import FunctionModel
from tests.app.github_support import Hook, done, github_app, github_settings, serve_hook, stand_in
from tests.support.github_server import FakeGitHub


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_url: str | None
) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'var' / 'ledger.db'}"
    elif postgres_url is None:
        pytest.skip("no PostgreSQL server (install postgresql or set LOOPWRIGHT_TEST_POSTGRES_URL)")
    else:
        yield from _postgres_schema(postgres_url)


def _postgres_schema(base: str) -> Iterator[str]:
    """A fresh schema per test, made the connection's search path."""
    schema = f"ledger_test_{secrets.token_hex(4)}"
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = sa.make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    """The GitHub stand-in with the comment fixtures' repositories, pull requests and author."""
    with FakeGitHub() as server:
        stand_in(server)
        yield server


@pytest.fixture
async def hook(tmp_path: Path, github: FakeGitHub) -> AsyncIterator[Hook]:
    """The service with its GitHub trigger on against `github`, and a maker that is done at once."""
    app = github_app(tmp_path, FunctionModel(done), github_settings(github))
    async with serve_hook(app) as served:
        yield served


@pytest.fixture(scope="session")
def app_key() -> RSAPrivateKey:
    """A GitHub App's private key (generating one takes a while: once per session)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)
