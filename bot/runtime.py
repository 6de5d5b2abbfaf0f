"""Running the bot: long polling (default) or a webhook server, until SIGINT/SIGTERM.
SIGHUP reloads the knowledge base without a restart.

Either way updates go through the durable inbox (``bot.inbox_runtime``): polling stores each
fetched batch before confirming it to Telegram, the webhook answers 200 only once the update
is stored, and workers process from the inbox. PTB's ``Application`` still processes each
update (``application.process_update``); its ``Updater`` and ``run_*`` helpers are not used.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from urllib.parse import urlsplit

from aiohttp import web
from telegram import Update
from telegram.ext import Application

from bot.app import RATE_LIMIT_RETRIES, DeskApplication, build_application
from bot.console.serve import serve_console
from bot.inbox_runtime import InboxRuntime
from bot.logging_setup import setup_logging
from bot.metrics import DeskMetrics, MeteredRateLimiter
from bot.settings import Settings
from bot.webhook_server import build_web_app

log = logging.getLogger(__name__)


def run(settings: Settings, *, webhook: bool = False) -> None:
    """Block running the bot until SIGINT/SIGTERM; the updates in hand are finished first."""
    token = settings.telegram_token.get_secret_value() if settings.telegram_token else None
    secret = settings.webhook_secret_token
    setup_logging(
        settings.log_level,
        secrets=(token, secret.get_secret_value() if secret else None),
    )
    asyncio.run(serve(settings, webhook=webhook))


async def serve(settings: Settings, *, webhook: bool) -> None:
    metrics = DeskMetrics()
    application = build_application(
        settings, rate_limiter=MeteredRateLimiter(metrics, max_retries=RATE_LIMIT_RETRIES)
    )
    _reload_knowledge_base_on_sighup(application)
    serve_console(application, settings)  # when DESKBOT_CONSOLE_PORT is set
    runtime = InboxRuntime(application, settings, metrics)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, runtime.request_stop)
    runner: web.AppRunner | None = None
    try:
        if not webhook:  # before talking to Telegram: a second poller changes nothing
            await runtime.acquire_polling_lock()
        await application.initialize()
        if application.post_init is not None:
            await application.post_init(application)
        await application.start()
        await runtime.start()
        if webhook:
            runner = await _serve_http(application, runtime, metrics, settings, webhook=True)
            await _register_webhook(application, settings)
        else:
            if settings.polling_http_port is not None:
                runner = await _serve_http(application, runtime, metrics, settings, webhook=False)
            # getUpdates is refused while a webhook is set.
            await application.bot.delete_webhook(drop_pending_updates=False)
            log.info("starting long polling against %s", settings.telegram_api_url)
            runtime.start_polling()
        await runtime.wait_stopped()
    finally:
        if runner is not None:
            await runner.cleanup()
        await runtime.stop()
        if application.running:
            await application.stop()
        await application.shutdown()
        if application.post_shutdown is not None:
            await application.post_shutdown(application)


async def _serve_http(
    application: DeskApplication,
    runtime: InboxRuntime,
    metrics: DeskMetrics,
    settings: Settings,
    *,
    webhook: bool,
) -> web.AppRunner:
    secret = settings.webhook_secret_token
    app = build_web_app(
        runtime=runtime,
        metrics=metrics,
        session_factory=application.deps.session_factory,
        webhook_path=urlsplit(settings.webhook_url or "").path if webhook else None,
        secret_token=secret.get_secret_value() if secret else None,
        api_application=application if settings.api_enabled else None,
        api_requests_per_minute=settings.api_requests_per_minute,
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = settings.webhook_port if webhook else settings.polling_http_port
    await web.TCPSite(runner, settings.webhook_listen, port).start()
    log.info(
        "%s server on %s:%s%s",
        "webhook" if webhook else "HTTP",
        settings.webhook_listen,
        port,
        " (with the REST API at /api/v1)" if settings.api_enabled else "",
    )
    return runner


async def _register_webhook(application: Application, settings: Settings) -> None:
    assert settings.webhook_url is not None and settings.webhook_secret_token is not None
    await application.bot.set_webhook(
        url=settings.webhook_url,
        secret_token=settings.webhook_secret_token.get_secret_value(),
        allowed_updates=Update.ALL_TYPES,  # chat_member updates must be asked for
        drop_pending_updates=False,
    )
    log.info("webhook registered")


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
