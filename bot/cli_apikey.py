"""`deskbot apikey create|list|revoke`: bearer keys for the REST API (``/api/v1``)."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.cli_db import add_database_url_option, run_database_command
from crm_core import migrate
from crm_core.db import create_engine, create_session_factory
from crm_core.models import ApiKey, ApiScope

EXIT_OK = 0
SCOPES = ", ".join(scope.value for scope in ApiScope)


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "apikey",
        help="manage the REST API's keys (create, list, revoke)",
        description="Keys for the REST API under /api/v1. The URL defaults to "
        "DESKBOT_DATABASE_URL.",
    )
    commands = parser.add_subparsers(dest="apikey_command", metavar="APIKEY_COMMAND", required=True)

    create = commands.add_parser(
        "create",
        help="create a key and print its token (shown this once only)",
        description=f"Create a key. Scopes: {SCOPES}. The token is printed once; only its "
        "SHA-256 is stored.",
    )
    create.add_argument("--name", required=True, help="who uses it, e.g. shop")
    create.add_argument(
        "--scope",
        action="append",
        required=True,
        metavar="SCOPE",
        help=f"a scope to grant (repeat for several): {SCOPES}",
    )
    add_database_url_option(create)
    create.set_defaults(func=_create)

    listing = commands.add_parser("list", help="list the keys (never their tokens)")
    add_database_url_option(listing)
    listing.set_defaults(func=_list)

    revoke = commands.add_parser("revoke", help="revoke the live key of that name")
    revoke.add_argument("name", help="the key's name")
    add_database_url_option(revoke)
    revoke.set_defaults(func=_revoke)


def _with_session(args: argparse.Namespace, work: Callable[[AsyncSession], Awaitable[int]]) -> int:
    async def action(url: str) -> int:
        await migrate.ensure_database_current(url)
        engine = create_engine(url)
        try:
            async with create_session_factory(engine)() as session:
                return await work(session)
        finally:
            await engine.dispose()

    return run_database_command(args, action)


def _create(args: argparse.Namespace) -> int:
    from crm_core.services.api_keys import create_api_key

    async def work(session: AsyncSession) -> int:
        created = await create_api_key(session=session, name=args.name, scopes=args.scope)
        print(f"API key {created.key.name} ({', '.join(created.key.scopes)}) created.")
        print("Its token, shown this once only (keep it secret):")
        print(created.token)
        return EXIT_OK

    return _with_session(args, work)


def _list(args: argparse.Namespace) -> int:
    from crm_core.services.api_keys import list_api_keys

    async def work(session: AsyncSession) -> int:
        keys = await list_api_keys(session=session)
        if not keys:
            print("no API keys; create one with `deskbot apikey create --name NAME --scope read`")
        for key in keys:
            print(_describe(key))
        return EXIT_OK

    return _with_session(args, work)


def _revoke(args: argparse.Namespace) -> int:
    from crm_core.services.api_keys import revoke_api_key

    async def work(session: AsyncSession) -> int:
        key = await revoke_api_key(session=session, name=args.name)
        print(f"API key {key.name} ({key.prefix}…) revoked; requests with it are refused now.")
        return EXIT_OK

    return _with_session(args, work)


def _describe(key: ApiKey) -> str:
    state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "live"
    used = f"{key.last_used_at:%Y-%m-%d %H:%M} UTC" if key.last_used_at else "never"
    return (
        f"{key.name:<20} {key.prefix}…  {','.join(key.scopes):<48} {state:<22} "
        f"created {key.created_at:%Y-%m-%d %H:%M} UTC, last used {used}"
    )
