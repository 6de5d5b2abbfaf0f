"""`deskbot sandbox`: try deskbot without Telegram, in the browser."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from bot.settings import ConfigurationError, describe_validation_error

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
DEFAULT_DATA_DIR = Path("deskbot-sandbox")
DEFAULT_PORT = 8765  # bot.sandbox.run imports the whole bot: not for `deskbot --help`


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "sandbox",
        help="try deskbot in the browser, without Telegram",
        description=(
            "Run the bot against a local Telegram Bot API emulator and open it in the browser: "
            "customers' chats, the agents' group with its topics, a supervisor's chat and the "
            "web console. Listens on 127.0.0.1 only; nothing talks to Telegram."
        ),
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA_DIR,
        metavar="DIR",
        help=f"folder for the SQLite database and the sandbox's people "
        f"(default ./{DEFAULT_DATA_DIR})",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        metavar="N",
        help=f"port of the page on 127.0.0.1 (default {DEFAULT_PORT}; 0: any free port)",
    )
    parser.add_argument(
        "--group-limit",
        action="store_true",
        help="make the emulator refuse more than 20 messages a minute per group, as Telegram does",
    )
    parser.set_defaults(func=sandbox_command)


def sandbox_command(args: argparse.Namespace) -> int:
    from bot.logging_setup import setup_logging
    from bot.sandbox.run import SandboxError, serve_forever

    if not 0 <= args.port < 65536:
        return _usage_error(f"--port {args.port} is not a port (1-65535, or 0 for any free one)")
    if args.data.exists() and not args.data.is_dir():
        return _usage_error(f"--data {args.data} is a file, not a folder")
    try:
        setup_logging("WARNING")
        asyncio.run(
            serve_forever(args.data.resolve(), port=args.port, group_rate_limit=args.group_limit)
        )
    except SandboxError as error:
        return _usage_error(str(error))
    except ValidationError as error:
        return _usage_error(describe_validation_error(error))
    except ConfigurationError as error:
        return _usage_error(str(error))
    except KeyboardInterrupt:
        print("sandbox stopped", file=sys.stderr)
    return EXIT_OK


def _usage_error(message: str) -> int:
    print(f"deskbot: {message}", file=sys.stderr)
    return EXIT_USAGE
