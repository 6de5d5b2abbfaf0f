"""`deskbot run`: start the bot (long polling, or `--webhook`)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from pydantic import ValidationError
from telegram.error import InvalidToken, NetworkError

from bot.settings import ConfigurationError, Settings, describe_validation_error
from crm_core.errors import DomainError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "run",
        help="run the bot (long polling by default)",
        description="Run the bot until interrupted. Settings come from DESKBOT_* variables.",
    )
    parser.add_argument(
        "--webhook",
        action="store_true",
        help="receive updates on a webhook server (needs DESKBOT_WEBHOOK_URL) instead of polling",
    )
    parser.set_defaults(func=run_command)


def load_settings() -> Settings | str:
    """Settings, or the one clear message that says which setting is wrong."""
    try:
        return Settings()
    except ValidationError as error:
        return describe_validation_error(error)


def run_command(args: argparse.Namespace) -> int:
    settings = load_settings()
    if isinstance(settings, str):
        return _usage_error(settings)
    if settings.telegram_token is None or not settings.telegram_token.get_secret_value().strip():
        return _usage_error(
            "DESKBOT_TELEGRAM_TOKEN is not set: put the bot token from @BotFather into it"
        )
    if args.webhook and not settings.webhook_url:
        return _usage_error("DESKBOT_WEBHOOK_URL is required with --webhook")
    if args.webhook and (
        settings.webhook_secret_token is None
        or not settings.webhook_secret_token.get_secret_value().strip()
    ):
        return _usage_error(
            "DESKBOT_WEBHOOK_SECRET_TOKEN is required with --webhook: without it anyone who "
            "finds the URL can post updates; set a random string (1-256 of A-Z a-z 0-9 _ -)"
        )

    from bot import runtime  # imported late: keeps `deskbot --help` fast
    from crm_core.migrate import ensure_database_current, is_memory_sqlite

    if is_memory_sqlite(settings.database_url):
        # The start-up migration would build its schema in a database that vanishes with it.
        return _usage_error(
            "DESKBOT_DATABASE_URL names an in-memory SQLite database, which would start empty "
            "and lose everything; name a file, e.g. sqlite+aiosqlite:///./deskbot.db"
        )

    try:
        # SQLite is migrated on the spot; PostgreSQL must already be at this code's revision.
        asyncio.run(ensure_database_current(settings.database_url))
    except DomainError as error:
        print(f"deskbot: {error}", file=sys.stderr)
        return EXIT_FAILURE
    try:
        runtime.run(settings, webhook=args.webhook)
    except ConfigurationError as error:
        return _usage_error(str(error))
    except InvalidToken:
        return _usage_error("DESKBOT_TELEGRAM_TOKEN was rejected by Telegram (invalid token)")
    except NetworkError as error:
        print(
            f"cannot reach the Bot API at DESKBOT_TELEGRAM_API_URL={settings.telegram_api_url}: "
            f"{error}",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    return EXIT_OK


def _usage_error(message: str) -> int:
    print(f"deskbot: {message}", file=sys.stderr)
    return EXIT_USAGE
