"""The supervisors' web console: aiohttp routes under ``/console`` and Jinja2 templates
(autoescaped). :func:`add_console` mounts it on an aiohttp application: the sandbox's page
server, or the bot's own server in production (:mod:`bot.console.serve`).

Every page and JSON answer needs a session (Telegram Login Widget or the console password);
forms carry a CSRF token; the session cookie is HttpOnly, SameSite=Strict, and Secure except
on plain http to the loopback address (where browsers would refuse it)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from aiohttp import web
from pydantic import SecretStr

from bot.app import DeskApplication
from bot.console import data
from bot.console.actions import (
    campaign_preview,
    change_complaint_status,
    new_campaign,
    send_campaign,
    stop_campaign,
)
from bot.console.auth import LoginRefused, Session, Sessions, same_secret, verify_login_widget
from crm_core.errors import DomainError, NotFound
from crm_core.models import ComplaintCategory, ComplaintStatus, Severity
from crm_core.services.segments import SEGMENT_ORDER
from handlers.core.send import Delivery

COOKIE = "deskbot_console"
LOGIN_CSRF_COOKIE = "deskbot_console_login"
MAX_DAYS = 3650
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'{widget}; "
    "frame-src {frames}; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)


@dataclass(frozen=True)
class ConsoleConfig:
    application: Callable[[], DeskApplication]  # late: the bot may start after the server
    bot_token: str
    bot_username: str
    supervisor_ids: frozenset[int]
    password: SecretStr | None = None
    show_widget: bool = True
    timezone: str = "UTC"


@dataclass
class ConsoleState:
    config: ConsoleConfig
    sessions: Sessions = field(default_factory=Sessions)
    env: jinja2.Environment = field(
        default_factory=lambda: jinja2.Environment(
            loader=jinja2.PackageLoader("bot.console", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
    )


STATE: web.AppKey[ConsoleState] = web.AppKey("console")
Handler = Callable[[web.Request, Session], Awaitable[web.StreamResponse]]


def add_console(app: web.Application, config: ConsoleConfig) -> None:
    state = ConsoleState(config)
    zone = ZoneInfo(config.timezone)
    state.env.filters["when"] = lambda value: _when(value, zone)
    state.env.filters["duration"] = _duration
    state.env.globals.update(
        statuses=[s.value for s in ComplaintStatus],
        categories=[c.value for c in ComplaintCategory],
        severities=[s.value for s in Severity],
    )
    app[STATE] = state
    r = app.router
    r.add_get("/console/static/console.css", _css)
    r.add_get("/console/login", _login_page)
    r.add_post("/console/login", _login_password)
    r.add_get("/console/auth/telegram", _login_telegram)
    r.add_post("/console/logout", _signed_in(_logout))
    r.add_get("/console", _signed_in(_dashboard))
    r.add_get("/console/", _signed_in(_dashboard))
    r.add_get("/console/complaints", _signed_in(_complaints))
    r.add_get("/console/complaints/{reference}", _signed_in(_complaint))
    r.add_post("/console/complaints/{reference}/status", _signed_in(_complaint_status))
    r.add_get("/console/customers", _signed_in(_customers))
    r.add_get("/console/customers/{customer_id}", _signed_in(_customer))
    r.add_get("/console/gaps", _signed_in(_gaps))
    r.add_get("/console/campaigns", _signed_in(_campaigns))
    r.add_post("/console/campaigns", _signed_in(_campaign_new))
    r.add_get("/console/campaigns/{campaign_id}", _signed_in(_campaign))
    r.add_post("/console/campaigns/{campaign_id}/send", _signed_in(_campaign_send))
    r.add_post("/console/campaigns/{campaign_id}/cancel", _signed_in(_campaign_cancel))
    r.add_get("/console/api/stats", _signed_in(_stats_json))


# --- helpers -------------------------------------------------------------------------------


def _state(request: web.Request) -> ConsoleState:
    return request.app[STATE]


def _when(value: datetime | None, zone: ZoneInfo) -> str:
    if value is None:
        return "—"
    return value.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


def _duration(value: Any) -> str:
    seconds = int(value.total_seconds()) if value is not None else None
    if seconds is None:
        return "—"
    sign, seconds = ("-" if seconds < 0 else ""), abs(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{sign}{days}d {hours}h"
    return f"{sign}{hours}h {minutes:02d}m" if hours else f"{sign}{minutes}m"


def _csp(state: ConsoleState) -> str:
    widget = state.config.show_widget
    return CSP.format(
        widget=" https://telegram.org" if widget else "",
        frames="https://oauth.telegram.org" if widget else "'none'",
    )


def _render(
    request: web.Request, template: str, *, status: int = 200, **context: Any
) -> web.Response:
    state = _state(request)
    body = state.env.get_template(template).render(**context)
    response = web.Response(text=body, content_type="text/html", charset="utf-8", status=status)
    response.headers["Content-Security-Policy"] = _csp(state)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


def _page(
    request: web.Request, session: Session, template: str, status: int = 200, **context: Any
) -> web.Response:
    flash, session.flash = session.flash, []
    return _render(request, template, status=status, me=session, flash=flash, **context)


def _secure(request: web.Request) -> bool:
    if request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https":
        return True
    host = (request.host or "").rsplit(":", 1)[0].strip("[]")
    return host not in {"127.0.0.1", "localhost", "::1"}


def _set_cookie(request: web.Request, response: web.StreamResponse, name: str, value: str) -> None:
    response.set_cookie(
        name, value, httponly=True, samesite="Strict", secure=_secure(request), path="/console"
    )


def _signed_in(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """No page and no JSON without a session; no form without its CSRF token."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        session = _state(request).sessions.get(request.cookies.get(COOKIE))
        if session is None:
            if request.path.startswith("/console/api/"):
                return web.json_response({"ok": False, "error": "sign in first"}, status=401)
            if request.method != "GET":
                raise web.HTTPForbidden(text="sign in first")
            raise web.HTTPFound("/console/login")
        if request.method == "POST":
            form = await request.post()
            if not same_secret(str(form.get("csrf", "")), session.csrf):
                raise web.HTTPForbidden(text="the form's CSRF token is missing or wrong")
        return await handler(request, session)

    return wrapped


def _redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def _session_factory(request: web.Request) -> Any:
    return _state(request).config.application().deps.session_factory


def _days(request: web.Request) -> int:
    try:
        return max(1, min(MAX_DAYS, int(request.query.get("days", "30"))))
    except ValueError:
        return 30


# --- sign-in -------------------------------------------------------------------------------


async def _css(request: web.Request) -> web.Response:
    from importlib.resources import files

    css = (files("bot.console") / "templates" / "console.css").read_text(encoding="utf-8")
    return web.Response(text=css, content_type="text/css")


async def _login_page(request: web.Request, *, error: str | None = None) -> web.Response:
    import secrets

    state = _state(request)
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)
    response = _render(
        request,
        "login.j2",
        status=403 if error else 200,
        error=error,
        csrf=token,
        password_enabled=state.config.password is not None,
        widget_bot=state.config.bot_username if state.config.show_widget else None,
    )
    _set_cookie(request, response, LOGIN_CSRF_COOKIE, token)
    return response


async def _login_password(request: web.Request) -> web.StreamResponse:
    state = _state(request)
    form = await request.post()
    expected_csrf = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected_csrf or not same_secret(str(form.get("csrf", "")), expected_csrf):
        return await _login_page(request, error="The form expired; please try again.")
    password = state.config.password
    given = str(form.get("password", ""))
    if password is None or not password.get_secret_value():
        return await _login_page(request, error="Password sign-in is not enabled.")
    if not same_secret(given, password.get_secret_value()):
        return await _login_page(request, error="Wrong password.")
    return _start_session(request, user_id=None, name="Supervisor")


async def _login_telegram(request: web.Request) -> web.StreamResponse:
    state = _state(request)
    try:
        fields = verify_login_widget(state.config.bot_token, request.query)
    except LoginRefused as refused:
        return await _login_page(request, error=str(refused))
    user_id = int(fields["id"])
    if user_id not in state.config.supervisor_ids:
        return await _login_page(request, error="Only the desk's supervisors may sign in.")
    name = fields.get("first_name") or fields.get("username") or f"#{user_id}"
    return _start_session(request, user_id=user_id, name=name)


def _start_session(request: web.Request, *, user_id: int | None, name: str) -> web.StreamResponse:
    session = _state(request).sessions.open(user_id, name)
    response = _redirect("/console")
    _set_cookie(request, response, COOKIE, session.token)
    response.del_cookie(LOGIN_CSRF_COOKIE, path="/console")
    return response


async def _logout(request: web.Request, session: Session) -> web.StreamResponse:
    _state(request).sessions.close(session.token)
    response = _redirect("/console/login")
    response.del_cookie(COOKIE, path="/console")
    return response


# --- pages ---------------------------------------------------------------------------------


async def _dashboard(request: web.Request, session: Session) -> web.StreamResponse:
    days = _days(request)
    async with _session_factory(request)() as db:
        board = await data.dashboard(db, days)
    return _page(request, session, "dashboard.j2", board=board, stats=board.stats)


async def _stats_json(request: web.Request, session: Session) -> web.StreamResponse:
    days = _days(request)
    async with _session_factory(request)() as db:
        board = await data.dashboard(db, days)
    s = board.stats
    body = {
        "days": days,
        "total": s.total,
        "by_status": {k.value: v for k, v in s.by_status.items()},
        "by_category": {k.value: v for k, v in s.by_category.items()},
        "by_severity": {k.value: v for k, v in s.by_severity.items()},
        "sla_breaches": s.sla_breaches,
        "reopen_rate": s.reopen_rate,
        "csat_average": s.csat_average,
        "handoffs_waiting": s.handoffs_waiting,
        "open_complaints": [c.reference for c in board.open_complaints],
    }
    return web.json_response(body, dumps=lambda o: json.dumps(o, default=str))


async def _complaints(request: web.Request, session: Session) -> web.StreamResponse:
    wanted = data.ComplaintFilter.from_query(request.query)
    async with _session_factory(request)() as db:
        rows = await data.complaints(db, wanted)
    return _page(request, session, "complaints.j2", rows=rows, wanted=wanted)


async def _complaint(request: web.Request, session: Session) -> web.StreamResponse:
    reference = request.match_info["reference"]
    try:
        async with _session_factory(request)() as db:
            detail = await data.complaint_detail(db, reference)
    except NotFound as error:
        return _page(request, session, "missing.j2", status=404, message=str(error))
    return _page(request, session, "complaint.j2", **detail)


async def _complaint_status(request: web.Request, session: Session) -> web.StreamResponse:
    reference = request.match_info["reference"]
    form = await request.post()
    status = str(form.get("status", ""))
    note = str(form.get("note", "")).strip() or None
    application = _state(request).config.application()
    try:
        delivery = await change_complaint_status(
            application, reference=reference, status=status, note=note, by=session.name
        )
    except DomainError as error:
        session.flash.append(str(error))
    else:
        told = (
            "The customer was told."
            if delivery is Delivery.SENT
            else ("The customer could not be reached.")
        )
        session.flash.append(f"{reference} is now {status.replace('_', ' ')}. {told}")
    raise web.HTTPSeeOther(f"/console/complaints/{reference}")


async def _customers(request: web.Request, session: Session) -> web.StreamResponse:
    query = str(request.query.get("q", "")).strip()[:200]
    async with _session_factory(request)() as db:
        found = await data.customers(db, query)
    return _page(request, session, "customers.j2", found=found, q=query)


async def _customer(request: web.Request, session: Session) -> web.StreamResponse:
    try:
        customer_id = int(request.match_info["customer_id"])
        async with _session_factory(request)() as db:
            view = await data.customer_360(db, customer_id)
    except (ValueError, NotFound) as error:
        message = str(error) if isinstance(error, NotFound) else "No such customer."
        return _page(request, session, "missing.j2", status=404, message=message)
    return _page(request, session, "customer.j2", view=view)


async def _gaps(request: web.Request, session: Session) -> web.StreamResponse:
    days = _days(request)
    async with _session_factory(request)() as db:
        gaps = await data.knowledge_gaps(db, days)
    return _page(request, session, "gaps.j2", gaps=gaps, days=days)


async def _campaigns(request: web.Request, session: Session) -> web.StreamResponse:
    """The latest campaigns with their reports, and the form for a new one."""
    return await _campaigns_page(request, session)


CAMPAIGN_FIELDS = ("name", "criteria", "template", "buttons", "holdout", "days")


async def _campaigns_page(
    request: web.Request,
    session: Session,
    *,
    status: int = 200,
    form: dict[str, str] | None = None,
    problem: str | None = None,
) -> web.StreamResponse:
    async with _session_factory(request)() as db:
        reports = await data.campaign_reports(db)
    return _page(
        request,
        session,
        "campaigns.j2",
        status=status,
        reports=reports,
        form=form or {},
        problem=problem,
        segments=", ".join(SEGMENT_ORDER),
    )


async def _campaign_new(request: web.Request, session: Session) -> web.StreamResponse:
    """The form, checked as ``/campaign new`` checks each answer: a draft, or the form again
    with what was typed and the reason (nothing written)."""
    form = await request.post()
    fields = {name: str(form.get(name, ""))[:4000] for name in CAMPAIGN_FIELDS}
    application = _state(request).config.application()
    try:
        campaign_id = await new_campaign(application, fields=fields, created_by=session.user_id)
    except DomainError as error:
        return await _campaigns_page(request, session, status=400, form=fields, problem=str(error))
    session.flash.append(f"Campaign #{campaign_id} is saved as a draft: check it, then send it.")
    raise web.HTTPSeeOther(f"/console/campaigns/{campaign_id}")


def _campaign_id(request: web.Request) -> int:
    try:
        return int(request.match_info["campaign_id"])
    except ValueError:
        raise NotFound("There is no such campaign.") from None


async def _campaign(request: web.Request, session: Session) -> web.StreamResponse:
    """A campaign: its message for three real recipients and how many it reaches now; while a
    draft, the buttons to send or drop it; once started, its report."""
    application = _state(request).config.application()
    try:
        shown = await campaign_preview(application, _campaign_id(request))
        async with _session_factory(request)() as db:
            row = await data.campaign_row(db, shown.campaign)
    except NotFound as error:
        return _page(request, session, "missing.j2", status=404, message=str(error))
    return _page(request, session, "campaign.j2", shown=shown, c=row)


async def _campaign_send(request: web.Request, session: Session) -> web.StreamResponse:
    campaign_id = _campaign_id(request)
    try:
        treatment, holdout = await send_campaign(_state(request).config.application(), campaign_id)
    except DomainError as error:
        session.flash.append(str(error))
    else:
        session.flash.append(
            f"Campaign #{campaign_id} is being sent to {treatment} customers; {holdout} of the "
            "segment are held out to measure it."
        )
    raise web.HTTPSeeOther(f"/console/campaigns/{campaign_id}")


async def _campaign_cancel(request: web.Request, session: Session) -> web.StreamResponse:
    campaign_id = _campaign_id(request)
    try:
        left = await stop_campaign(_state(request).config.application(), campaign_id)
    except DomainError as error:
        session.flash.append(str(error))
    else:
        session.flash.append(f"Campaign #{campaign_id} is cancelled: {left} will not be sent.")
    raise web.HTTPSeeOther(f"/console/campaigns/{campaign_id}")
