"""How an API request is served: one declarative :class:`Endpoint` per operation, from which
both the aiohttp route and the OpenAPI document are made (so they cannot disagree).

Order of checks, each answered as problem details: the bearer key (401), its requests a minute
(429, ``DESKBOT_API_REQUESTS_PER_MINUTE`` per key and instance), its scope (403), the
path and query parameters and the body (400/415/422), then the handler (404, 409, 422 from the
services). Every request is one database session (an ``update_scope``, as a Telegram update
gets), so that a handler can reuse the bot's own code paths (``DeskContext``)."""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.api.problems import (
    ProblemError,
    invalid_body,
    invalid_field,
    invalid_parameters,
    problem,
    problem_response,
)
from bot.app import DeskApplication
from crm_core.errors import DomainError, InvalidTransition, NotFound
from crm_core.models import ApiKey, ApiScope
from crm_core.services.api_keys import authenticate
from handlers.core.context import DeskContext, update_scope

log = logging.getLogger(__name__)
access_log = logging.getLogger("bot.api.access")

APPLICATION: web.AppKey[DeskApplication] = web.AppKey("api_application")
REALM = 'Bearer realm="deskbot"'


@dataclass
class Call:
    """One API request, authenticated and validated, as a handler sees it."""

    request: web.Request
    application: DeskApplication
    key: ApiKey
    session: AsyncSession
    path: Any = None
    query: Any = None
    body: Any = None

    def context(self) -> DeskContext:
        """The bot's handler context on this request's session (to tell customers, post to
        the agents' group) exactly as a Telegram update would."""
        return DeskContext(self.application)


@dataclass(frozen=True)
class Reply:
    status: int
    body: BaseModel
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Call], Awaitable[Reply]]
CursorT = TypeVar("CursorT", bound=BaseModel)


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # OpenAPI style: /api/v1/customers/{customer_id}
    operation_id: str
    summary: str
    scope: ApiScope
    handler: Handler
    # Success answers: status -> (model, description).
    responses: dict[int, tuple[type[BaseModel], str]]
    path_params: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    # Problems the handler itself may answer, besides authentication and validation.
    problems: dict[int, str] = field(default_factory=dict)
    description: str = ""


@dataclass
class KeyRates:
    """Requests a minute per API key in this instance: a token bucket per key, so a burst of
    up to a minute's worth goes through and the rest is refused (429) until it refills."""

    per_minute: int
    _buckets: dict[int, tuple[float, float]] = field(default_factory=dict)  # id: tokens, at

    def take(self, key_id: int, now: float) -> float:
        """0 when this request may go; else the seconds until one more may."""
        rate = self.per_minute / 60
        tokens, at = self._buckets.get(key_id, (float(self.per_minute), now))
        tokens = min(float(self.per_minute), tokens + (now - at) * rate)
        if tokens >= 1:
            self._buckets[key_id] = (tokens - 1, now)
            return 0.0
        self._buckets[key_id] = (tokens, now)
        return (1 - tokens) / rate


RATES: web.AppKey[KeyRates] = web.AppKey("api_rates")


def serve(endpoint: Endpoint) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        application = request.app[APPLICATION]
        key_name = "-"
        try:
            async with update_scope(application.deps.session_factory) as scope:
                call = await _admit(request, endpoint, application, scope.session)
                key_name = call.key.name
                reply = await _run(endpoint, call)
        except ProblemError as refused:
            response: web.StreamResponse = problem_response(
                request, refused.problem, refused.headers
            )
        else:
            response = web.Response(
                status=reply.status,
                body=reply.body.model_dump_json(),
                content_type="application/json",
                headers=reply.headers,
            )
        # The access log: the path holds ids and references only (searches are in the query,
        # which is left out: it may hold a phone number or an e-mail address).
        access_log.info(
            "%s %s %d %.1f ms key=%s",
            request.method,
            request.path,
            response.status,
            (time.monotonic() - started) * 1000,
            key_name,
        )
        return response

    return handle


async def _admit(
    request: web.Request, endpoint: Endpoint, application: DeskApplication, session: AsyncSession
) -> Call:
    key = await _key(request, session)
    rates = request.app.get(RATES)
    wait = rates.take(key.id or 0, time.monotonic()) if rates is not None else 0.0
    if wait > 0:
        assert rates is not None
        raise ProblemError(
            problem(
                429,
                "Too many requests",
                f"This key ({key.name}) may make {rates.per_minute} requests a minute here; "
                f"retry in {math.ceil(wait)} s.",
                "rate-limited",
            ),
            {"Retry-After": str(math.ceil(wait))},
        )
    if endpoint.scope.value not in key.scopes:
        refused = problem(
            403,
            "Insufficient scope",
            f"This key ({key.name}) lacks the scope {endpoint.scope.value}.",
            "insufficient-scope",
        )
        header = f'{REALM}, error="insufficient_scope", scope="{endpoint.scope.value}"'
        raise ProblemError(
            refused.model_copy(update={"scope": endpoint.scope.value}),
            {"WWW-Authenticate": header},
        )
    call = Call(request=request, application=application, key=key, session=session)
    if endpoint.path_params is not None:
        call.path = _parameters(endpoint.path_params, dict(request.match_info))
    if endpoint.query is not None:
        call.query = _parameters(endpoint.query, dict(request.query))
    if endpoint.body is not None:
        call.body = await _body(request, endpoint.body)
    return call


async def _key(request: web.Request, session: AsyncSession) -> ApiKey:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    key = None
    if scheme.lower() == "bearer" and token.strip():
        key = await authenticate(session=session, token=token.strip())
    if key is None:
        detail = (
            "Send an API key as `Authorization: Bearer <token>`."
            if not token.strip()
            else "The API key is unknown or revoked."
        )
        raise ProblemError(
            problem(401, "Unauthorized", detail, "unauthorized"), {"WWW-Authenticate": REALM}
        )
    return key


def _parameters(model: type[BaseModel], values: dict[str, str]) -> Any:
    try:
        return model.model_validate(values)
    except ValidationError as error:
        raise invalid_parameters(error) from None


async def _body(request: web.Request, model: type[BaseModel]) -> Any:
    if request.content_type != "application/json":
        raise ProblemError(
            problem(415, "Unsupported media type", "Send the body as application/json.")
        )
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise ProblemError(problem(413, "Body too large", "The body is over 1 MiB.")) from None
    try:
        return model.model_validate_json(raw)
    except ValidationError as error:
        raise invalid_body(error) from None


async def _run(endpoint: Endpoint, call: Call) -> Reply:
    """The handler, with the services' domain errors answered as problems."""
    try:
        return await endpoint.handler(call)
    except ProblemError:
        raise
    except NotFound as error:
        raise ProblemError(problem(404, "Not found", str(error))) from None
    except InvalidTransition as error:
        raise ProblemError(problem(409, "Conflict", str(error), "invalid-transition")) from None
    except DomainError as error:  # the services' refusals of bad input
        raise invalid_field(str(error)) from None


# --- cursors --------------------------------------------------------------------------------


def encode_cursor(position: dict[str, Any]) -> str:
    """Opaque to the caller: where the page ended, as URL-safe base64 of a small JSON object."""
    raw = json.dumps(position, separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, model: type[CursorT]) -> CursorT:
    """The position a cursor holds; a cursor this API did not give out is a 422."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return model.model_validate_json(raw)
    except (binascii.Error, ValueError):  # pydantic's ValidationError is a ValueError
        raise invalid_field(
            "This cursor was not given out by this API.", parameter="cursor"
        ) from None


def not_found(detail: str) -> ProblemError:
    return ProblemError(problem(404, "Not found", detail))


def api_problem_middleware() -> Any:
    """aiohttp's own refusals under /api (no such path, wrong method) as problem details too."""

    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        if not request.path.startswith("/api/"):
            return await handler(request)
        try:
            return await handler(request)
        except web.HTTPException as error:
            if error.status < 400:
                raise
            headers = {k: v for k, v in error.headers.items() if k.lower() == "allow"}
            return problem_response(request, problem(error.status, error.reason), headers)
        except Exception:
            log.exception("API request %s %s failed", request.method, request.path)
            return problem_response(
                request, problem(500, "Internal server error", "The request failed; retry later.")
            )

    return middleware
