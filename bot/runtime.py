"""Running the bot: long polling (default) or a webhook server, until SIGINT/SIGTERM.
SIGHUP reloads the knowledge base without a restart."""

from __future__ import annotations

import asyncio
import logging
import signal
from urllib.parse import urlsplit

from telegram import Update
from telegram.ext import Application

from bot.app import build_application
from bot.console.serve import serve_console
from bot.logging_setup import setup_logging
from bot.settings import Settings

log = logging.getLogger(__name__)


def run(settings: Settings, *, webhook: bool = False) -> None:
    """Block running the bot. PTB's ``run_*`` own the event loop and stop on SIGINT/SIGTERM,
    finishing the updates in flight and shutting the Application down cleanly."""
    token = settings.telegram_token.get_secret_value() if settings.telegram_token else None
    secret = settings.webhook_secret_token
    setup_logging(
        settings.log_level,
        secrets=(token, secret.get_secret_value() if secret else None),
    )
    application = build_application(settings)
    _reload_knowledge_base_on_sighup(application)
    serve_console(application, settings)  # when DESKBOT_CONSOLE_PORT is set
    if not webhook:
        log.info("starting long polling against %s", settings.telegram_api_url)
        # ALL_TYPES: chat_member updates are only delivered when asked for explicitly.
        application.run_polling(allowed_updates=Update.ALL_TYPES)
        return
    assert settings.webhook_url is not None  # checked by the CLI
    url_path = urlsplit(settings.webhook_url).path.lstrip("/")
    log.info("starting webhook server on %s:%s", settings.webhook_listen, settings.webhook_port)
    application.run_webhook(
        listen=settings.webhook_listen,
        port=settings.webhook_port,
        url_path=url_path,
        webhook_url=settings.webhook_url,
        secret_token=secret.get_secret_value() if secret else None,
        allowed_updates=Update.ALL_TYPES,
    )


def _reload_knowledge_base_on_sighup(application: Application) -> None:
    """Chain a post-init step that makes SIGHUP reload the knowledge base (in a thread: a large
    folder takes seconds to index, and the bot keeps answering from the old version meanwhile)."""
    previous = application.post_init

    async def post_init(app: Application) -> None:
        if previous is not None:
            await previous(app)
        holder = app.bot_data["deps"].kb_holder
        if holder is None or not hasattr(signal, "SIGHUP"):
            return
        loop = asyncio.get_running_loop()

        async def reload() -> None:
            result = await asyncio.to_thread(holder.reload)
            for problem in result.problems:
                log.warning("knowledge base: %s", problem)
            log.info("SIGHUP: %s", result.summary())

        def on_sighup() -> None:
            app.create_task(reload(), name="kb-reload")

        loop.add_signal_handler(signal.SIGHUP, on_sighup)

    application.post_init = post_init
