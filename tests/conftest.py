"""Shared fixtures. Every CRM test that takes ``session`` (or ``session_factory``) runs twice: on
SQLite and on PostgreSQL.

PostgreSQL: each pytest process creates its own throw-away database on the server named by
``DESKBOT_TEST_POSTGRES_URL`` (default: the local server's ``test`` database as the maintenance
connection), so parallel runs never see each other's rows. Outside CI an unreachable server skips
those tests with the reason; under ``CI=true`` they fail.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core import models  # noqa: F401  (registers the tables)
from crm_core.db import SessionFactory, create_engine, create_session_factory

POSTGRES_ADMIN_URL = os.environ.get(
    "DESKBOT_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


async def _create_pg_database() -> str:
    admin = create_async_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"deskbot_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await admin.dispose()
    return make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


async def _drop_pg_database(url: str) -> None:
    admin = create_async_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = make_url(url).database
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a fresh PostgreSQL database for this test process."""
    try:
        url = _run(_create_pg_database())
    except Exception as exc:  # any connection failure means "no server"
        server = make_url(POSTGRES_ADMIN_URL).render_as_string()
        reason = f"PostgreSQL at {server} unreachable: {exc}"
        if IN_CI:
            pytest.fail(f"{reason} (CI=true: PostgreSQL tests must run)", pytrace=False)
        pytest.skip(reason)
    yield url
    _run(_drop_pg_database(url))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL for an empty database, once per backend."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'deskbot.db'}"
    return str(request.getfixturevalue("postgres_url"))


_sqlite_template: Path | None = None


async def _sqlite_schema_file() -> Path:
    """A SQLite file with the current schema, made once per process: a test's new database is
    a copy of it (a millisecond, where creating the tables and indexes takes about 70)."""
    global _sqlite_template
    if _sqlite_template is None:
        path = Path(tempfile.mkdtemp(prefix="deskbot-schema-")) / "schema.db"
        engine = create_engine(f"sqlite+aiosqlite:///{path}")
        async with engine.begin() as conn:
            await conn.run_sync(SQLModel.metadata.create_all)
        await engine.dispose()  # checkpoints the WAL: the file alone is the database
        atexit.register(shutil.rmtree, path.parent, ignore_errors=True)
        _sqlite_template = path
    return _sqlite_template


def _copy_if_new(template: Path, database: Path) -> bool:
    if database.exists():
        return False
    shutil.copyfile(template, database)
    return True


async def _reset_schema(engine: AsyncEngine) -> None:
    """Empty database with the current schema. A new SQLite file is a copy of one made once.
    PostgreSQL keeps one database per process, so when it already has exactly the models'
    tables they are truncated (~4x faster than dropping the schema); anything else (a
    migration test's leftovers) is rebuilt."""
    database = engine.url.database
    if (
        engine.dialect.name == "sqlite"
        and database
        and _copy_if_new(await _sqlite_schema_file(), Path(database))
    ):
        return
    async with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            present = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
            if present == set(SQLModel.metadata.tables):
                tables = ", ".join(f'"{name}"' for name in sorted(present))
                await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
                return
            await conn.execute(text("DROP SCHEMA public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
        await conn.run_sync(SQLModel.metadata.create_all)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on an empty database with the current schema."""
    eng = create_engine(database_url)
    await _reset_schema(eng)
    yield eng
    await eng.dispose()


@pytest.fixture
def session_factory(engine: AsyncEngine) -> SessionFactory:
    return create_session_factory(engine)


@pytest.fixture
async def session(session_factory: SessionFactory) -> AsyncIterator[AsyncSession]:
    async with session_factory() as s:
        yield s
