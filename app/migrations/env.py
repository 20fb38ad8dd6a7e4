"""Alembic environment for the ledger.

`Ledger.migrate` passes an open connection, already inside the transaction the whole upgrade
runs in, as `config.attributes["connection"]`. Without one (the `alembic` command line), the
URL comes from the `sqlalchemy.url` option. Logging is left to the application.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from app.ledger_schema import metadata


def _run(connection: sa.Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def _main() -> None:
    config = context.config
    url = config.get_main_option("sqlalchemy.url")
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    if not url:
        raise RuntimeError("set sqlalchemy.url, or pass a connection in config.attributes")
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            _run(conn)
    finally:
        engine.dispose()


_main()
