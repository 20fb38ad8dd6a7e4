"""How the ledger connects: engines per dialect, SQLite's pragmas and locking, Alembic's config.

On SQLite the driver's own transaction handling is switched off: it would not BEGIN before a
SELECT or DDL, so reads would not be repeatable and migrations would not be atomic. Instead every
transaction begins explicitly, and a write begins with `BEGIN IMMEDIATE`: it takes the write
lock up front (waiting up to the busy timeout), so a transaction that reads before it writes
never fails halfway because another writer got in between. WAL lets readers go on meanwhile.

Writers within one process also queue on a lock per database file (`write_lock`) before they
BEGIN: SQLite's busy handler polls with growing sleeps, so threads that meet at `BEGIN IMMEDIATE`
wait several milliseconds (and, under load, seconds) after the lock is free, while the
in-process lock hands it over at once. The busy timeout still covers other processes.
"""

from __future__ import annotations

import contextlib
import os
import threading
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

if TYPE_CHECKING:
    from alembic.config import Config

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


_FILE_LOCKS: dict[str, threading.RLock] = {}
_FILE_LOCKS_GUARD = threading.Lock()


def write_lock(engine: Engine) -> AbstractContextManager[object]:
    """What a write transaction on `engine` holds from before BEGIN until after COMMIT.

    SQLite: a lock shared by every engine on the same file in this process (re-entrant, so a
    nested write fails by the busy timeout as it would without it, rather than hanging).
    PostgreSQL locks rows, not the database, so there it is a no-op.
    """
    url = engine.url
    if url.get_backend_name() != "sqlite":
        return contextlib.nullcontext()
    database = url.database or ""
    if in_memory(url):
        return threading.RLock()  # its own database: nothing else can write to it
    key = database if url.query.get("uri") else os.path.realpath(database)
    with _FILE_LOCKS_GUARD:
        return _FILE_LOCKS.setdefault(key, threading.RLock())


def alembic_config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    return config


def _create_sqlite_engine(url: sa.URL) -> Engine:
    database = url.database or ""
    options: dict[str, Any] = {}
    if in_memory(url):
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


def in_memory(url: sa.URL) -> bool:
    """Whether a SQLite URL names an in-memory database."""
    return url.database in (None, "", ":memory:") or url.query.get("mode") == "memory"


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
