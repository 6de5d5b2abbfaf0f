"""The bot process of ``bench/bench_e2e.py``: deskbot (the real Application) or a bare PTB echo
bot, against the bench's fake Bot API until SIGTERM. Not meant to be run by hand.

    python bench/e2e_bot.py desk --api-url URL --token T --database-url URL
                                 [--runtime inbox|ptb] [--webhook-port P]
    python bench/e2e_bot.py echo --api-url URL --token T

deskbot runs what ``deskbot run`` runs (``bot.runtime.serve``: the durable inbox, its own
getUpdates loop or the webhook server, the inbox workers); ``--runtime ptb`` runs the same
Application under PTB's own ``run_polling`` instead (no inbox), to see what the inbox costs.
The echo bot is PTB's ``run_polling``. Telegram's limits are off: the emulator enforces none,
and the rate limiter is kept for its code path but with no limit to wait for (``deskbot run``
would hold the bot to Telegram's 30 messages/s and 20 a minute per group).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from telegram import Update
from telegram.ext import ApplicationBuilder, ContextTypes, MessageHandler, filters

# As bot.app has them (not imported here: the echo bot must not load deskbot's modules).
MAX_CONCURRENT_UPDATES = 64
RATE_LIMIT_RETRIES = 3


WEBHOOK_SECRET = "bench-secret"
WEBHOOK_PATH = "/hook"


def run_desk(args: argparse.Namespace) -> None:
    from bot import runtime
    from bot.app import build_application
    from bot.metrics import MeteredRateLimiter
    from bot.rate_limit import RELAXED_LIMITS, DeskRateLimiter
    from bot.settings import Settings

    webhook: dict[str, Any] = {}
    if args.webhook_port:
        webhook = {
            "webhook_url": f"http://127.0.0.1:{args.webhook_port}{WEBHOOK_PATH}",
            "webhook_listen": "127.0.0.1",
            "webhook_port": args.webhook_port,
            "webhook_secret_token": WEBHOOK_SECRET,
        }
    settings = Settings(
        _env_file=None,
        telegram_token=args.token,
        telegram_api_url=args.api_url,
        telegram_file_api_url=args.api_url.replace("/bot", "/file/bot"),
        database_url=args.database_url,
        log_level="WARNING",
        agent_chat_id=args.agent_chat_id,
        **webhook,
    )
    if args.runtime == "ptb":
        limiter = DeskRateLimiter(**RELAXED_LIMITS, max_retries=RATE_LIMIT_RETRIES)
        application = build_application(settings, rate_limiter=limiter)
        application.run_polling(allowed_updates=Update.ALL_TYPES, poll_interval=0)
        return
    # serve() builds its own limiter: the same one, with Telegram's limits off.
    runtime.MeteredRateLimiter = functools.partial(  # type: ignore[misc,assignment]
        MeteredRateLimiter, **RELAXED_LIMITS
    )
    asyncio.run(runtime.serve(settings, webhook=bool(args.webhook_port)))


async def echo(update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.effective_message is not None and update.effective_message.text is not None
    await update.effective_message.reply_text(update.effective_message.text)


def run_echo(args: argparse.Namespace) -> None:
    application = (
        ApplicationBuilder()
        .token(args.token)
        .base_url(args.api_url)
        .concurrent_updates(MAX_CONCURRENT_UPDATES)
        .build()
    )
    application.add_handler(MessageHandler(filters.TEXT, echo))
    application.run_polling(allowed_updates=Update.ALL_TYPES, poll_interval=0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["desk", "echo"])
    parser.add_argument("--api-url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--database-url")
    parser.add_argument("--agent-chat-id", type=int)
    parser.add_argument("--runtime", choices=["inbox", "ptb"], default="inbox")
    parser.add_argument("--webhook-port", type=int)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.kind == "desk":
        run_desk(args)
    else:
        run_echo(args)


if __name__ == "__main__":
    main()
