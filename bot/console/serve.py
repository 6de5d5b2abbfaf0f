"""The console in production: ``deskbot run`` serves it on ``DESKBOT_CONSOLE_LISTEN:PORT``
(an aiohttp server in the bot's own event loop, started after the bot is initialised and
stopped with it). Behind an HTTPS proxy, the Login Widget needs the domain linked to the bot
with @BotFather's /setdomain."""

from __future__ import annotations

import logging

from aiohttp import web
from telegram.ext import Application

from bot.app import DeskApplication
from bot.console import ConsoleConfig, add_console
from bot.logging_setup import protect_secret
from bot.settings import Settings

log = logging.getLogger(__name__)


def console_app(application: DeskApplication, settings: Settings) -> web.Application:
    assert settings.telegram_token is not None
    password = settings.console_password
    if password is not None:
        protect_secret(password.get_secret_value())
    app = web.Application()
    add_console(
        app,
        ConsoleConfig(
            application=lambda: application,
            bot_token=settings.telegram_token.get_secret_value(),
            bot_username=application.bot.username,
            supervisor_ids=frozenset(settings.supervisor_ids),
            password=password if password and password.get_secret_value() else None,
            show_widget=True,
            timezone=str(settings.timezone),
        ),
    )
    return app


def serve_console(application: Application, settings: Settings) -> None:
    """Chain start-up and shut-down steps that run the console beside the bot (a no-op when
    DESKBOT_CONSOLE_PORT is unset)."""
    if settings.console_port is None:
        return
    port = settings.console_port
    previous_init, previous_shutdown = application.post_init, application.post_shutdown
    runner: list[web.AppRunner] = []

    async def post_init(app: Application) -> None:
        if previous_init is not None:
            await previous_init(app)
        assert isinstance(app, DeskApplication)
        started = web.AppRunner(console_app(app, settings), access_log=None)
        await started.setup()
        await web.TCPSite(started, settings.console_listen, port).start()
        runner.append(started)
        log.info("web console on http://%s:%s/console", settings.console_listen, port)

    async def post_shutdown(app: Application) -> None:
        for started in runner:
            await started.cleanup()
        if previous_shutdown is not None:
            await previous_shutdown(app)

    application.post_init = post_init
    application.post_shutdown = post_shutdown
