"""Schema migrations (Alembic, configured in code; no ``alembic.ini`` needed at runtime).

Public API, used by ``deskbot db ...`` and at start-up:

- :func:`upgrade_database` - bring a database to a revision (default: the newest, ``head``);
- :func:`current_revision` - the revision a database is at (``None``: never migrated);
- :func:`check_schema_matches` - differences between the models and a database's schema;
- :func:`ensure_database_current` - called on start: SQLite is upgraded automatically,
  PostgreSQL (shared by several instances) must be upgraded explicitly;
- :func:`stamp_database` - adopt a database created before migrations existed.

Developer commands (pre-release; see DEVELOPERS.md)::

    python -m crm_core.migrate revision -m "add foo to customer"   # autogenerate next revision
    python -m crm_core.migrate regenerate-initial                  # rewrite 0001_initial
    python -m crm_core.migrate heads
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import inspect, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel

from crm_core import models  # noqa: F401  (registers the tables in SQLModel.metadata)
from crm_core.db import create_engine, database_url_problem
from crm_core.errors import DomainError

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
VERSIONS_DIR = MIGRATIONS_DIR / "versions"
INITIAL_REVISION = "0001_initial"
VERSION_TABLE = "alembic_version"
PG_CONNECT_TIMEOUT_S = 10
MIGRATION_LOCK_KEY = 0x6465736B626F74  # "deskbot": the advisory lock that serialises upgrades

T = TypeVar("T")


class DatabaseUnavailable(DomainError):
    """The database cannot be reached or the URL is unusable."""


class SchemaOutOfDate(DomainError):
    """The database is not at the revision this code needs."""


class MigrationFailed(DomainError):
    """A migration or schema inspection failed; its transaction was rolled back."""


# --------------------------------------------------------------------------------------------
# Alembic configuration
# --------------------------------------------------------------------------------------------


def alembic_config(url: str | None = None) -> Config:
    """An Alembic ``Config`` pointing at the packaged migrations (works from an installed wheel)."""
    config = Config()
    # ConfigParser interpolation: a '%' in the path must be doubled.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    # Revision ids are chosen by us ("0002_add_foo"), so the file name is just the id.
    config.set_main_option("file_template", "%%(rev)s")
    config.attributes["url"] = url
    return config


def configure_context_options(connection: Connection) -> dict[str, Any]:
    """Options for ``context.configure`` shared by env.py and :func:`check_schema_matches`."""
    return {
        "target_metadata": SQLModel.metadata,
        "compare_type": True,
        # SQLite cannot ALTER most things: batch mode recreates the table instead.
        "render_as_batch": connection.dialect.name == "sqlite",
        "version_table": VERSION_TABLE,
    }


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "no migrations packaged"
    return head


# --------------------------------------------------------------------------------------------
# Connections with clear errors
# --------------------------------------------------------------------------------------------


def _display_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparsable URL>"


def _check_driver(url: str) -> None:
    _parse_url(url)  # an unparsable URL gets its own message, quoting what was given
    problem = database_url_problem(url)
    if problem is not None:
        raise DatabaseUnavailable(f"invalid database URL {_display_url(url)}: {problem}")


def _engine_for(url: str) -> AsyncEngine:
    _check_driver(url)
    try:
        if _is_sqlite(url):
            return create_engine(url)
        return create_engine(url, connect_args={"timeout": PG_CONNECT_TIMEOUT_S})
    except (ArgumentError, SQLAlchemyError, ImportError, ValueError) as exc:
        raise DatabaseUnavailable(f"invalid database URL {_display_url(url)}: {exc}") from None


def _parse_url(url: str) -> URL:
    try:
        return make_url(url)
    except ArgumentError:
        raise DatabaseUnavailable(
            f"invalid database URL “{url}”: expected e.g. sqlite+aiosqlite:///./deskbot.db "
            "or postgresql+asyncpg://user:password@host:5432/deskbot"
        ) from None


def _is_sqlite(url: str) -> bool:
    return _parse_url(url).get_backend_name() == "sqlite"


def is_memory_sqlite(url: str) -> bool:
    """An in-memory SQLite database lives only as long as its connection."""
    return _is_sqlite(url) and _sqlite_file(url) is None


def _sqlite_file(url: str) -> Path | None:
    """The file of a file-backed SQLite URL, else ``None`` (memory or not SQLite)."""
    parsed = _parse_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


async def _with_connection(url: str, work: Callable[[Connection], T], *, commit: bool) -> T:
    """Run ``work`` on a sync-facing connection in one transaction, with one-line errors."""
    engine = _engine_for(url)
    try:
        try:
            conn = await engine.connect()
        except (OSError, SQLAlchemyError, TimeoutError) as exc:
            raise DatabaseUnavailable(
                f"cannot connect to the database at {_display_url(url)}: {_first_line(exc)}"
            ) from None
        try:
            result = await conn.run_sync(work)
            if commit:
                await conn.commit()
        except CommandError as exc:
            raise MigrationFailed(f"migration failed: {_first_line(exc)}") from None
        except (OSError, SQLAlchemyError) as exc:
            raise MigrationFailed(
                f"database error at {_display_url(url)} (nothing was changed): {_first_line(exc)}"
            ) from None
        finally:
            await conn.close()
        return result
    finally:
        await engine.dispose()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


async def upgrade_database(url: str, revision: str = "head") -> None:
    """Migrate the database at ``url`` to ``revision`` in one transaction."""
    _create_sqlite_folder(url)

    def work(conn: Connection) -> None:
        _serialise_migrations(conn)
        _refuse_unversioned(conn)
        current = _current_revision(conn)
        if current is not None and not _is_known_revision(current):
            raise _unknown_revision(current, head_revision())
        config = alembic_config(url)
        config.attributes["connection"] = conn
        command.upgrade(config, revision)

    await _with_connection(url, work, commit=True)


async def current_revision(url: str) -> str | None:
    """The revision the database is at; ``None`` when it was never migrated (or does not exist)."""
    _check_driver(url)
    sqlite_file = _sqlite_file(url)
    if sqlite_file is not None and not sqlite_file.exists():
        return None  # do not create an empty file just to look at it
    return await _with_connection(url, _current_revision, commit=False)


async def check_schema_matches(url: str) -> list[Any]:
    """Differences between the models and the database's schema (autogenerate's diff).

    Empty when models and database agree; run it after :func:`upgrade_database` to check that
    the migrations produce exactly the models' schema.
    """
    _check_driver(url)
    sqlite_file = _sqlite_file(url)
    if sqlite_file is not None and not sqlite_file.exists():
        raise DatabaseUnavailable(f"there is no SQLite database at {sqlite_file}")

    def work(conn: Connection) -> list[Any]:
        context = MigrationContext.configure(conn, opts=configure_context_options(conn))
        return list(compare_metadata(context, SQLModel.metadata))

    return await _with_connection(url, work, commit=False)


def describe_difference(difference: Any) -> str:
    """One readable line for an item of :func:`check_schema_matches`' result."""
    if isinstance(difference, list):  # modify_* items come grouped per column
        return "; ".join(describe_difference(item) for item in difference)
    op, *rest = difference
    if op in ("add_table", "remove_table"):
        return f"{op} {rest[0].name}"
    if op in ("add_column", "remove_column"):
        return f"{op} {rest[1]}.{rest[2].name}"
    if op in ("add_index", "remove_index", "add_constraint", "remove_constraint"):
        element = rest[0]
        table = getattr(getattr(element, "table", None), "name", "?")
        return f"{op} {table}.{element.name}"
    if op.startswith("modify_"):
        table, column = rest[1], rest[2]
        return f"{op} {table}.{column}: {rest[-2]!r} -> {rest[-1]!r}"
    return " ".join(str(part) for part in difference)


async def ensure_database_current(url: str) -> None:
    """Make sure the schema is what this code needs, before serving.

    SQLite (one embedded instance) is upgraded automatically, creating its folder if needed.
    PostgreSQL may be shared by instances running different versions, so an out-of-date
    database is refused with a clear message instead: upgrade it deliberately.
    """
    head = head_revision()
    if _is_sqlite(url):
        current = await current_revision(url)
        if current is not None and not _is_known_revision(current):
            raise _unknown_revision(current, head)
        await upgrade_database(url)
        return
    current = await _with_connection(url, _checked_current_revision, commit=False)
    if current == head:
        return
    if current is None:
        raise SchemaOutOfDate(
            f"database {_display_url(url)} has no deskbot schema yet; "
            "run `deskbot db upgrade` to create it"
        )
    if not _is_known_revision(current):
        raise _unknown_revision(current, head)
    raise SchemaOutOfDate(f"database is at {current}, code needs {head}; run `deskbot db upgrade`")


def _unknown_revision(current: str, head: str) -> SchemaOutOfDate:
    return SchemaOutOfDate(
        f"database is at {current}, which this version of deskbot does not know "
        f"(it needs {head}); was it upgraded by a newer deskbot?"
    )


async def stamp_database(url: str, revision: str = "head") -> None:
    """Record ``revision`` in a database created before migrations existed (``create_all``).

    Refuses unless its schema already matches the models, so nothing is silently skipped.
    """
    differences = await check_schema_matches(url)
    if differences:
        raise SchemaOutOfDate(
            f"cannot stamp: the schema differs from the models in {len(differences)} way(s) "
            "(see `deskbot db check`); migrate the data into a fresh database instead"
        )

    def work(conn: Connection) -> None:
        config = alembic_config(url)
        config.attributes["connection"] = conn
        command.stamp(config, revision)

    await _with_connection(url, work, commit=True)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _create_sqlite_folder(url: str) -> None:
    sqlite_file = _sqlite_file(url)
    if sqlite_file is None:
        return
    try:
        sqlite_file.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatabaseUnavailable(
            f"cannot create the folder for the SQLite database {sqlite_file}: {exc.strerror}"
        ) from None


def _serialise_migrations(conn: Connection) -> None:
    """Two instances upgrading one PostgreSQL database at once: the second waits for the first
    to commit, then finds the database at head (instead of failing on half-created tables).
    SQLite's write transactions are serial already (BEGIN IMMEDIATE)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})


def _current_revision(conn: Connection) -> str | None:
    return MigrationContext.configure(
        conn, opts={"version_table": VERSION_TABLE}
    ).get_current_revision()


def _checked_current_revision(conn: Connection) -> str | None:
    _refuse_unversioned(conn)
    return _current_revision(conn)


def _refuse_unversioned(conn: Connection) -> None:
    """A database with our tables but no migration history was made by ``create_all``."""
    tables = set(inspect(conn).get_table_names())
    if VERSION_TABLE in tables:
        return
    ours = tables & set(SQLModel.metadata.tables)
    if ours:
        raise SchemaOutOfDate(
            "the database has deskbot tables but no migration history (it was created before "
            "migrations existed). If `deskbot db check` reports no differences, adopt it with "
            "`deskbot db stamp`; otherwise move the data to a fresh database."
        )


def is_known_revision(revision: str) -> bool:
    """Whether this code has the migration ``revision`` (else a newer deskbot wrote it)."""
    return _is_known_revision(revision)


def _is_known_revision(revision: str) -> bool:
    script = ScriptDirectory.from_config(alembic_config())
    try:
        return script.get_revision(revision) is not None
    except CommandError:
        return False


# --------------------------------------------------------------------------------------------
# Developer command: python -m crm_core.migrate ...
# --------------------------------------------------------------------------------------------


def _slug(message: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", message.lower()).strip("_")[:40] or "change"


def _next_revision_id(message: str) -> str:
    numbers = [
        int(m.group(1)) for p in VERSIONS_DIR.glob("*.py") if (m := re.match(r"(\d{4})_", p.name))
    ]
    return f"{max(numbers, default=0) + 1:04d}_{_slug(message)}"


def _autogenerate(message: str, rev_id: str) -> None:
    """Autogenerate a revision against a throw-away SQLite database upgraded to head."""
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite+aiosqlite:///{Path(folder) / 'autogenerate.db'}"
        config = alembic_config(url)
        if any(VERSIONS_DIR.glob("[0-9]*.py")):
            asyncio.run(upgrade_database(url))
        command.revision(config, message=message, autogenerate=True, rev_id=rev_id)


def _regenerate_initial() -> None:
    others = [p for p in VERSIONS_DIR.glob("[0-9]*.py") if p.stem != INITIAL_REVISION]
    if others:
        sys.exit(f"refusing: later revisions exist ({', '.join(p.name for p in others)})")
    path = VERSIONS_DIR / f"{INITIAL_REVISION}.py"
    path.unlink(missing_ok=True)
    _autogenerate("initial schema", INITIAL_REVISION)


def _dev_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m crm_core.migrate", description="Developer commands for migrations."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    rev = sub.add_parser("revision", help="autogenerate the next revision from the models")
    rev.add_argument("-m", "--message", required=True)
    sub.add_parser("regenerate-initial", help="rewrite 0001_initial (pre-release only)")
    sub.add_parser("heads", help="print the newest revision")
    args = parser.parse_args(argv)
    if args.command == "revision":
        _autogenerate(args.message, _next_revision_id(args.message))
    elif args.command == "regenerate-initial":
        _regenerate_initial()
    else:
        print(head_revision())
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(_dev_main())
