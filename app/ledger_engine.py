"""How the ledger connects: engines per dialect, SQLite's pragmas and locking, Alembic's config.

On SQLite the driver's own transaction handling is switched off: it would not BEGIN before a
SELECT or DDL, so reads would not be repeatable and migrations would not be atomic. Instead every
transaction begins explicitly, and a write begins with `BEGIN IMMEDIATE`: it takes the write
lock up front (waiting up to the busy timeout), so a transaction that reads before it writes
never fails halfway because another writer got in between. WAL lets readers go on meanwhile.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic.config import Config
from sqlalchemy.engine import Connection, Engine

BUSY_TIMEOUT_SECONDS = 5.0
MIGRATIONS_DIR = Path(__file__).with_name("migrations")
WRITE_OPTION = "loopwright_write"
"""Execution option marking a connection whose transactions will write."""


def create_engine(url: str) -> Engine:
    """An engine for `url`; SQLite files get their directory created. Raises SQLAlchemyError."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return sa.create_engine(parsed, pool_pre_ping=True)
    return _create_sqlite_engine(parsed)


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    return config


def _create_sqlite_engine(url: sa.URL) -> Engine:
    database = url.database or ""
    in_memory = database in ("", ":memory:") or url.query.get("mode") == "memory"
    options: dict[str, Any] = {}
    if in_memory:
        # One shared connection: each new connection would otherwise be a new, empty database.
        options["poolclass"] = sa.StaticPool
    elif not url.query.get("uri"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(
        url,
        connect_args={"timeout": BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
        **options,
    )
    sa.event.listen(engine, "connect", _on_sqlite_connect)
    sa.event.listen(engine, "begin", _on_sqlite_begin)
    return engine


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # `_on_sqlite_begin` takes over
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _on_sqlite_begin(conn: Connection) -> None:
    write = conn.get_execution_options().get(WRITE_OPTION, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
