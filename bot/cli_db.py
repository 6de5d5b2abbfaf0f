"""`deskbot db upgrade|current|check|stamp`: the database schema, managed by migrations;
`deskbot db retention`: the retention sweep (``DESKBOT_RETENTION_DAYS``) run now, to the end."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from pydantic import ValidationError

from bot.settings import Settings, describe_validation_error
from crm_core import migrate
from crm_core.db import create_engine, create_session_factory
from crm_core.errors import DomainError
from crm_core.services.retention import RetentionMode, apply_retention, retention_cutoff

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "db",
        help="manage the database schema (upgrade, current, check, stamp) and retention",
        description="Manage the database schema. The URL defaults to DESKBOT_DATABASE_URL.",
    )
    commands = parser.add_subparsers(dest="db_command", metavar="DB_COMMAND", required=True)

    upgrade = commands.add_parser(
        "upgrade",
        help="migrate the database to the newest schema (creates it when empty)",
        description="Migrate the database to REVISION (default: head, the newest) in one "
        "transaction. Run it before starting a new version on PostgreSQL; SQLite databases "
        "are upgraded automatically on start.",
    )
    add_database_url_option(upgrade)
    upgrade.add_argument("--revision", default="head", help="target revision (default: head)")
    upgrade.set_defaults(func=_upgrade)

    current = commands.add_parser(
        "current",
        help="show the revision the database is at",
        description="Show the "
        "revision the database is at and whether it is the newest this code knows.",
    )
    add_database_url_option(current)
    current.set_defaults(func=_current)

    check = commands.add_parser(
        "check",
        help="compare the database schema with the models (exit 1 when they differ)",
        description="Compare the database's schema with the models. Exit 0 when they agree, "
        "1 when they differ (the differences are listed) or the database is unreachable.",
    )
    add_database_url_option(check)
    check.set_defaults(func=_check)

    stamp = commands.add_parser(
        "stamp",
        help="adopt a database created before migrations (only when its schema matches)",
        description="Record the newest revision in a database created before migrations "
        "existed. Refused unless `deskbot db check` finds no difference.",
    )
    add_database_url_option(stamp)
    stamp.set_defaults(func=_stamp)

    retention = commands.add_parser(
        "retention",
        help="anonymise or delete interactions older than the retention now",
        description="Apply the retention now, to the end, in batches of 1,000 rows (one "
        "transaction each): interactions older than DESKBOT_RETENTION_DAYS lose their text and "
        "personal details (DESKBOT_RETENTION_MODE=anonymise) or are deleted (delete). "
        "Complaints, handoffs and purchases are kept.",
    )
    add_database_url_option(retention)
    retention.add_argument(
        "--days", type=int, help="retention in days (default: DESKBOT_RETENTION_DAYS)"
    )
    retention.add_argument(
        "--mode",
        choices=[mode.value for mode in RetentionMode],
        help="default: DESKBOT_RETENTION_MODE",
    )
    retention.add_argument(
        "--dry-run", action="store_true", help="only report how many rows would be touched"
    )
    retention.set_defaults(func=_retention)


def add_database_url_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url",
        metavar="URL",
        help="SQLAlchemy async URL (default: DESKBOT_DATABASE_URL, else ./deskbot.db)",
    )


def resolve_database_url(args: argparse.Namespace) -> str | None:
    """The URL from the option or the settings; ``None`` after printing why settings are bad."""
    if args.database_url:
        return str(args.database_url)
    try:
        return Settings().database_url
    except ValidationError as exc:
        print(describe_validation_error(exc), file=sys.stderr)
        return None


def run_database_command(
    args: argparse.Namespace, action: Callable[[str], Coroutine[Any, Any, int]]
) -> int:
    """Resolve the URL, run ``action(url)``, turn domain errors into one line and exit 1."""
    url = resolve_database_url(args)
    if url is None:
        return EXIT_USAGE
    try:
        if migrate.is_memory_sqlite(url):
            print(
                "error: an in-memory SQLite database vanishes when this command ends; "
                "name a file, e.g. sqlite+aiosqlite:///./deskbot.db",
                file=sys.stderr,
            )
            return EXIT_USAGE
        return asyncio.run(action(url))
    except DomainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE


def _upgrade(args: argparse.Namespace) -> int:
    async def action(url: str) -> int:
        before = await migrate.current_revision(url)
        await migrate.upgrade_database(url, args.revision)
        after = await migrate.current_revision(url)
        if before == after:
            print(f"database already at {after or '(empty)'}; nothing to do")
        else:
            print(f"database upgraded: {before or '(empty)'} -> {after}")
        return EXIT_OK

    return run_database_command(args, action)


def _current(args: argparse.Namespace) -> int:
    async def action(url: str) -> int:
        revision = await migrate.current_revision(url)
        head = migrate.head_revision()
        if revision is None:
            print(f"(none): no migrations applied; this code needs {head}")
        elif revision == head:
            print(f"{revision} (head)")
        elif not migrate.is_known_revision(revision):
            print(
                f"{revision} (unknown to this deskbot, which needs {head}; "
                "was it upgraded by a newer deskbot?)"
            )
            return EXIT_FAILURE
        else:
            print(f"{revision} (this code needs {head}; run `deskbot db upgrade`)")
        return EXIT_OK

    return run_database_command(args, action)


def _check(args: argparse.Namespace) -> int:
    async def action(url: str) -> int:
        differences = await migrate.check_schema_matches(url)
        if not differences:
            print("schema matches the models")
            return EXIT_OK
        print(f"schema differs from the models in {len(differences)} way(s):")
        for difference in differences:
            print(f"  {migrate.describe_difference(difference)}")
        return EXIT_FAILURE

    return run_database_command(args, action)


def _stamp(args: argparse.Namespace) -> int:
    async def action(url: str) -> int:
        await migrate.stamp_database(url)
        print(f"database stamped at {migrate.head_revision()}")
        return EXIT_OK

    return run_database_command(args, action)


def _retention(args: argparse.Namespace) -> int:
    days, mode = args.days, args.mode
    if days is None or mode is None:
        try:
            settings = Settings()
        except ValidationError as exc:
            print(describe_validation_error(exc), file=sys.stderr)
            return EXIT_USAGE
        days = settings.retention_days if days is None else days
        mode = settings.retention_mode if mode is None else mode
    if days < 0:
        print(f"error: --days must be 0 or more, got {days}", file=sys.stderr)
        return EXIT_USAGE
    if days == 0:
        print("retention is off (DESKBOT_RETENTION_DAYS is 0 or unset): interactions are kept")
        return EXIT_OK

    async def action(url: str) -> int:
        await migrate.ensure_database_current(url)
        engine = create_engine(url)
        try:
            async with create_session_factory(engine)() as session:
                report = await apply_retention(
                    session=session,
                    before=retention_cutoff(days),
                    mode=RetentionMode(mode),
                    dry_run=args.dry_run,
                )
        finally:
            await engine.dispose()
        done = "deleted" if report.mode is RetentionMode.delete else "anonymised"
        when = f"older than {days} day(s) (before {report.before:%Y-%m-%d %H:%M} UTC)"
        if args.dry_run:
            print(f"dry run: {report.touched} interaction(s) {when} would be {done}")
        else:
            print(f"{report.touched} interaction(s) {when} {done}")
        return EXIT_OK

    return run_database_command(args, action)
