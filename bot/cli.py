"""The ``deskbot`` command. Each subcommand group lives in its own ``bot/cli_*.py`` module that
exposes ``register(subparsers)``; handlers set ``func`` and return an exit code."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from bot import cli_apikey, cli_db, cli_doctor, cli_import, cli_kb, cli_run, cli_sandbox

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deskbot",
        description="deskbot: a Telegram service desk with a CRM core.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (cli_sandbox, cli_run, cli_db, cli_import, cli_kb, cli_doctor, cli_apikey):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
