"""deskbot's own HTTP server (aiohttp): the webhook Telegram posts updates to,
``/healthz``, ``/readyz``, ``/metrics`` and the REST API (``/api/v1``, :mod:`bot.api`); in
polling mode the same server without the webhook, on ``DESKBOT_HTTP_PORT``.

The webhook answers
- 403 when ``X-Telegram-Bot-Api-Secret-Token`` is missing or wrong (compared in constant
  time), before reading the body; nothing is written;
- 413 for a body over :data:`MAX_BODY_BYTES`, 400 for one that is not a Telegram update;
- 503 while the inbox is full (``DESKBOT_INBOX_MAX_DEPTH``) or the database is away: Telegram
  keeps the update and delivers it again later;
- 200 only once the update is committed to the inbox (a redelivery is a 200 that writes
  nothing). Processing happens from the inbox, never in the request.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any

from aiohttp import web
from telegram import Update

from bot.app import DeskApplication
from bot.inbox_runtime import InboxRuntime, incoming
from bot.metrics import CONTENT_TYPE_LATEST, DeskMetrics
from crm_core.db import SessionFactory
from crm_core.services.runtime_stats import database_reachable

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
# Telegram's updates are a few kilobytes; a megabyte is generous and bounds what a caller
# can make the server hold.
MAX_BODY_BYTES = 1024 * 1024


def build_web_app(
    *,
    runtime: InboxRuntime | None,
    metrics: DeskMetrics,
    session_factory: SessionFactory,
    webhook_path: str | None = None,
    secret_token: str | None = None,
    api_application: DeskApplication | None = None,
    api_requests_per_minute: int | None = None,
) -> web.Application:
    """The aiohttp app; with ``webhook_path`` (and ``runtime``) it also receives updates, with
    ``api_application`` (the running bot) it serves the REST API."""
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    if api_application is not None:
        from bot.api import add_api  # its models and schema are built only when served

        add_api(app, api_application, requests_per_minute=api_requests_per_minute)

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        try:
            async with session_factory() as session:
                await database_reachable(session=session)
        except Exception as error:
            log.warning("readiness: database unreachable: %s", error)
            return web.Response(status=503, text="database unreachable\n")
        return web.Response(text="ready\n")

    async def metrics_page(_: web.Request) -> web.Response:
        try:
            await metrics.refresh(session_factory)
        except Exception as error:  # still serve the process's own counters
            log.warning("metrics: database figures unavailable: %s", error)
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_page)
    if webhook_path is not None:
        assert runtime is not None and secret_token
        app.router.add_post(
            "/" + webhook_path.lstrip("/"), _webhook_handler(runtime, secret_token.encode())
        )
    return app


def _webhook_handler(runtime: InboxRuntime, secret: bytes) -> Any:
    async def receive(request: web.Request) -> web.Response:
        given = request.headers.get(SECRET_HEADER, "").encode()
        if not hmac.compare_digest(given, secret):
            return web.Response(status=403, text="forbidden\n")
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            return web.Response(status=413, text="body too large\n")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return web.Response(status=413, text="body too large\n")
        update = _parse_update(body)
        if update is None:
            return web.Response(status=400, text="not a Telegram update\n")
        data, parsed = update
        if runtime.depth >= runtime.settings.inbox_max_depth:
            return web.Response(status=503, text="inbox full, deliver later\n")
        try:
            await runtime.store([incoming(parsed, data)], source="webhook")
        except Exception as error:  # not stored: Telegram must deliver it again
            log.warning("webhook: storing update %s failed: %s", parsed.update_id, error)
            return web.Response(status=503, text="not stored, deliver later\n")
        return web.Response(text="ok\n")

    return receive


def _parse_update(body: bytes) -> tuple[dict[str, Any], Update] | None:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    update_id = data.get("update_id")
    if not isinstance(update_id, int) or isinstance(update_id, bool) or update_id < 0:
        return None
    if len(data) < 2:  # an update carries exactly one kind of content besides its id
        return None
    try:
        update = Update.de_json(data, None)
    except Exception:
        return None
    if update is None:
        return None
    return data, update
