"""Engines and sessions for SQLite (embedded default) and PostgreSQL (multi-instance store)."""

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./deskbot.db"
SQLITE_BUSY_TIMEOUT_MS = 30_000
PG_POOL_SIZE = 10
PG_POOL_OVERFLOW = 20

SessionFactory = async_sessionmaker[AsyncSession]
# The asyncio drivers deskbot ships with, by backend.
ASYNC_DRIVERS = {"sqlite": "aiosqlite", "postgresql": "asyncpg"}
EXAMPLE_URLS = (
    "sqlite+aiosqlite:///./deskbot.db or postgresql+asyncpg://user:password@host:5432/deskbot"
)


def database_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be used, in words that name the fix (never echoing a password), or
    ``None``. The library's own errors talk of 'pysqlite is not async' or a missing module."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return f"not a database URL; expected e.g. {EXAMPLE_URLS}"
    backend, driver = parsed.get_backend_name(), parsed.get_driver_name()
    if backend not in ASYNC_DRIVERS:
        return (
            "deskbot stores its data in SQLite (sqlite+aiosqlite:///./deskbot.db) "
            "or PostgreSQL (postgresql+asyncpg://...)"
        )
    if driver != ASYNC_DRIVERS[backend]:
        fixed = parsed.set(drivername=f"{backend}+{ASYNC_DRIVERS[backend]}")
        return f"write it with the asyncio driver, {fixed.render_as_string(hide_password=True)}"
    return None


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def create_engine(url: str = DEFAULT_DATABASE_URL, **kwargs: Any) -> AsyncEngine:
    """Create an async engine; SQLite gets WAL, a busy timeout and serialised write transactions."""
    if is_sqlite(url):
        kwargs.setdefault("connect_args", {}).setdefault("timeout", SQLITE_BUSY_TIMEOUT_MS / 1000)
        # Sessions and connections end their own transactions; the pool's extra ROLLBACK on
        # every check-in is a round trip to the driver's thread twice per update.
        kwargs.setdefault("pool_reset_on_return", None)
        engine = create_async_engine(url, **kwargs)
        _configure_sqlite(engine)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    # Sized for the updates handled at once (bot.app.MAX_CONCURRENT_UPDATES) without taking
    # a connection each: a handler holds one only inside a transaction.
    kwargs.setdefault("pool_size", PG_POOL_SIZE)
    kwargs.setdefault("max_overflow", PG_POOL_OVERFLOW)
    return create_async_engine(url, **kwargs)


def _configure_sqlite(engine: AsyncEngine) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the driver so that we can BEGIN IMMEDIATE below.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        # /forgetme must not leave the erased text in free pages of the file (some SQLite builds
        # default to this, others do not).
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        # A DEFERRED transaction that reads and then writes fails at once with "database is
        # locked" when another writer got there first; busy_timeout does not help it. Taking
        # the write lock up front makes concurrent writers queue for up to the busy timeout.
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def create_session_factory(engine: AsyncEngine) -> SessionFactory:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)
