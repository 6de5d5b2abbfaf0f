"""Running the bot: long polling (default) or a webhook server, until SIGINT/SIGTERM."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from telegram import Update

from bot.app import build_application
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
