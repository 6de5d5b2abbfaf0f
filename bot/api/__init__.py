"""The REST API: ``/api/v1`` on deskbot's own aiohttp server (webhook mode, or the polling
mode's HTTP server), its OpenAPI 3.1 document at ``/api/openapi.json``.

Other channels (web forms, e-mail, the shop) write into the same CRM through it, with bearer
keys (``deskbot apikey create``) scoped to what they may do. See ``bot.api.routing`` for how a
request is checked, ``bot.api.endpoints`` for the operations."""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version

from aiohttp import web

from bot.api.endpoints import ENDPOINTS
from bot.api.openapi import build_openapi
from bot.api.routing import APPLICATION, RATES, KeyRates, api_problem_middleware, serve
from bot.app import DeskApplication

OPENAPI_PATH = "/api/openapi.json"


def _version() -> str:
    try:
        return version("deskbot")
    except PackageNotFoundError:  # running from a source tree
        return "0"


def add_api(
    app: web.Application, application: DeskApplication, *, requests_per_minute: int | None = None
) -> None:
    """Mount the API on ``app``; ``application`` is the running bot (its database, its
    Telegram connection for telling customers); ``requests_per_minute`` per key (None: no
    limit)."""
    app[APPLICATION] = application
    if requests_per_minute is not None:
        app[RATES] = KeyRates(requests_per_minute)
    app.middlewares.append(api_problem_middleware())
    document = json.dumps(build_openapi(ENDPOINTS, version=_version())).encode()

    async def openapi(_: web.Request) -> web.Response:
        return web.Response(body=document, content_type="application/json")

    app.router.add_get(OPENAPI_PATH, openapi)
    for endpoint in ENDPOINTS:
        app.router.add_route(endpoint.method, endpoint.path, serve(endpoint))
