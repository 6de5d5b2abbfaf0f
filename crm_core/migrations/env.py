"""Alembic environment, configured in code by :mod:`crm_core.migrate`.

Two ways in:
- ``crm_core.migrate`` hands over an open (sync-facing) connection in
  ``config.attributes["connection"]``; the migration runs inside the caller's transaction;
- otherwise (``python -m crm_core.migrate revision ...``) an async engine is created from
  ``config.attributes["url"]`` and driven with ``connection.run_sync``.
"""

import asyncio
from typing import Any

from alembic import context
from sqlalchemy.engine import Connection

from crm_core.migrate import configure_context_options

config = context.config


def _run(connection: Connection) -> None:
    context.configure(connection=connection, **configure_context_options(connection))
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_own_engine() -> None:
    from crm_core.db import create_engine

    engine = create_engine(config.attributes["url"])
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


def _run_online() -> None:
    connection: Any = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
    else:
        asyncio.run(_run_with_own_engine())


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run against a database")
_run_online()
