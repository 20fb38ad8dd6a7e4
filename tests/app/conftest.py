"""Fixtures shared by the app tests: a database URL for each backend."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa


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
