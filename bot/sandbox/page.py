"""The sandbox page and its API (all under 127.0.0.1):

- ``GET /`` and ``/static/*``: the page (one HTML, JS and CSS file, package data, no CDN);
- ``GET /api/world``: the bot, the people, the agents' group and its topics;
- ``GET /api/messages?chat=ID[&thread=ID|general]``: a chat's messages, as segments;
- ``GET /api/events``: server-sent events, one ``change`` each time the emulator's world moves;
- ``POST /api/customers|send|press|contact|upload``: what the people on the page do, pushed
  into the emulator as Telegram updates (the bot receives them by long polling);
- ``GET /api/files/{file_id}``: pictures and files (images inline, anything else a download);
- ``/console``: the supervisors' web console, the same code as in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from importlib.resources import files
from typing import Any

from aiohttp import BodyPartReader, web

from bot.console import ConsoleConfig, add_console
from bot.console.auth import sign_login_widget
from bot.emulator import FakeBotAPI, FakeChat, FakeUser, StoredMessage
from bot.sandbox.render import current_keyboard, message_view
from bot.sandbox.world import Sandbox

SANDBOX_KEY: web.AppKey[Sandbox] = web.AppKey("sandbox")
STATIC = files("bot.sandbox") / "static"
STATIC_TYPES = {"index.html": "text/html", "app.js": "text/javascript", "app.css": "text/css"}
MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # Telegram's bots may download files up to 20 MB
MAX_TEXT = 4096
HEARTBEAT_SECONDS = 15.0
IMAGE_MAGIC = {b"\x89PNG": "image/png", b"\xff\xd8\xff": "image/jpeg", b"GIF8": "image/gif"}
# The page is the only thing allowed to run here: no inline scripts, no other origins.
CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


def build_page_app(sandbox: Sandbox) -> web.Application:
    app = web.Application(client_max_size=MAX_UPLOAD_BYTES + 1024 * 1024)
    app[SANDBOX_KEY] = sandbox
    app.router.add_get("/", _index)
    app.router.add_get("/static/{name}", _static)
    app.router.add_get("/api/world", _world)
    app.router.add_get("/api/messages", _messages)
    app.router.add_get("/api/events", _events)
    app.router.add_get("/api/files/{file_id}", _file)
    app.router.add_post("/api/customers", _new_customer)
    app.router.add_post("/api/send", _send)
    app.router.add_post("/api/press", _press)
    app.router.add_post("/api/contact", _contact)
    app.router.add_post("/api/upload", _upload)
    add_console(
        app,
        ConsoleConfig(
            application=lambda: sandbox.app,
            bot_token=sandbox.emulator.token,
            bot_username=sandbox.emulator.bot_user.username or "",
            supervisor_ids=frozenset({sandbox.supervisor.id}),
            password=sandbox.settings.console_password,
            show_widget=False,  # the widget's script comes from telegram.org: not offline
            timezone=str(sandbox.settings.timezone),
        ),
    )
    app.middlewares.append(_security_headers)
    return app


@web.middleware
async def _security_headers(request: web.Request, handler: Any) -> web.StreamResponse:
    response: web.StreamResponse = await handler(request)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    if not request.path.startswith("/console"):
        response.headers.setdefault("Content-Security-Policy", CSP)
    return response


def _sandbox(request: web.Request) -> Sandbox:
    return request.app[SANDBOX_KEY]


def _bad(message: str, status: int = 400) -> web.Response:
    return web.json_response({"ok": False, "error": message}, status=status)


async def _index(request: web.Request) -> web.Response:
    return await _static_file("index.html")


async def _static(request: web.Request) -> web.Response:
    return await _static_file(request.match_info["name"])


async def _static_file(name: str) -> web.Response:
    if name not in STATIC_TYPES:
        raise web.HTTPNotFound()
    body = (STATIC / name).read_bytes()
    return web.Response(body=body, content_type=STATIC_TYPES[name], charset="utf-8")


def _person(user: FakeUser) -> dict[str, Any]:
    name = " ".join(p for p in (user.first_name, user.last_name) if p)
    return {"id": user.id, "name": name, "first_name": user.first_name}


async def _world(request: web.Request) -> web.Response:
    sandbox = _sandbox(request)
    group = sandbox.group
    topics = [
        {"id": t.thread_id, "name": t.name, "closed": t.closed}
        for t in sorted(group.topics.values(), key=lambda t: -t.thread_id)
        if not t.deleted
    ]
    login = sign_login_widget(
        sandbox.emulator.token,
        {"id": sandbox.supervisor.id, "first_name": sandbox.supervisor.first_name,
         "username": sandbox.supervisor.username or ""},
    )  # fmt: skip
    return web.json_response(
        {
            "bot": _person(sandbox.emulator.bot_user),
            "customers": [_person(c) for c in sandbox.customers],
            "agents": [_person(a) for a in sandbox.agents],
            "supervisor": _person(sandbox.supervisor),
            "group": {"id": group.id, "title": group.title, "topics": topics},
            "version": sandbox.emulator.version,
            # What Telegram refused the bot (bad HTML, too long, blocked...): mistakes show here.
            "api_errors": [
                {"method": r.method, "error": r.error.description}
                for r in sandbox.emulator.requests[-2000:]
                if r.error is not None and r.method != "getUpdates"
            ][-20:],
            "console_login": "/console/auth/telegram?" + _query(login),
        }
    )


def _query(values: dict[str, Any]) -> str:
    from urllib.parse import urlencode

    return urlencode(values)


def _int(value: Any, what: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise web.HTTPBadRequest(
            text=json.dumps({"ok": False, "error": f"{what} must be a number"}),
            content_type="application/json",
        ) from None


def _visible(message: StoredMessage, chat_id: int, thread: str | None) -> bool:
    if message.chat_id != chat_id:
        return False
    if thread is None or thread == "all":
        return True
    if thread == "general":
        return message.thread_id is None
    return str(message.thread_id) == thread


async def _messages(request: web.Request) -> web.Response:
    sandbox = _sandbox(request)
    chat_id = _int(request.query.get("chat"), "chat")
    thread = request.query.get("thread")
    emulator = sandbox.emulator
    shown = [message_view(emulator, m) for m in emulator.messages if _visible(m, chat_id, thread)]
    keyboard = current_keyboard(emulator, chat_id) if chat_id > 0 else None
    toasts = [
        {"id": query_id, "text": str(a.get("text") or ""), "alert": bool(a.get("show_alert"))}
        for query_id, a in emulator.answered_callbacks.items()
        if a.get("text")
    ]
    return web.json_response({"messages": shown, "keyboard": keyboard, "toasts": toasts})


async def _events(request: web.Request) -> web.StreamResponse:
    """One ``change`` event whenever the emulator's world moved (the page then re-reads what it
    shows); a comment line every HEARTBEAT_SECONDS keeps proxies and the browser happy."""
    emulator = _sandbox(request).emulator
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    seen = -1
    with contextlib.suppress(ConnectionResetError, asyncio.CancelledError):
        while not emulator._closing:  # the sandbox is stopping: let the page reconnect later
            if emulator.version != seen:
                seen = emulator.version
                await response.write(f"event: change\ndata: {seen}\n\n".encode())
            try:
                await emulator.wait_for(_moved_from(emulator, seen), HEARTBEAT_SECONDS)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
    return response


def _moved_from(emulator: FakeBotAPI, version: int) -> Callable[[], bool]:
    return lambda: emulator.version != version


async def _file(request: web.Request) -> web.Response:
    emulator = _sandbox(request).emulator
    content = emulator.files.get(request.match_info["file_id"])
    if content is None:
        raise web.HTTPNotFound()
    image_type = next((t for magic, t in IMAGE_MAGIC.items() if content.startswith(magic)), None)
    if image_type is not None:
        return web.Response(body=content, content_type=image_type)
    # Anything else is a download: a customer's .html file never runs on this origin.
    name = request.query.get("name", "file").replace('"', "")
    return web.Response(
        body=content,
        content_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


async def _json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(
            text=json.dumps({"ok": False, "error": "expected a JSON object"}),
            content_type="application/json",
        )
    return body


def _actor_and_chat(
    sandbox: Sandbox, body: dict[str, Any]
) -> tuple[FakeUser, FakeChat, int | None] | web.Response:
    """The person acting and where: their private chat with the bot, or the agents' group
    (when they are in it), in a topic with ``thread_id``."""
    user = sandbox.user(_int(body.get("user_id"), "user_id"))
    if user is None:
        return _bad("no such person")
    chat_id = _int(body.get("chat_id", user.id), "chat_id")
    thread_raw = body.get("thread_id")
    thread_id = None if thread_raw in (None, "", "general") else _int(thread_raw, "thread_id")
    if chat_id == user.id:
        return user, sandbox.emulator.private_chat(user), None
    if chat_id == sandbox.group.id:
        if sandbox.group.members.get(user.id) not in {"member", "administrator", "creator"}:
            return _bad(f"{user.first_name} is not in the agents' group", 403)
        if thread_id is not None and thread_id not in sandbox.group.topics:
            return _bad("no such topic")
        return user, sandbox.group, thread_id
    return _bad("a person writes in their own chat with the bot or in the agents' group")


async def _new_customer(request: web.Request) -> web.Response:
    body = await _json(request)
    first = str(body.get("first_name") or "").strip()
    last = str(body.get("last_name") or "").strip() or None
    if not first or len(first) > 64 or (last and len(last) > 64):
        return _bad("a first name of 1 to 64 characters, please")
    customer = _sandbox(request).add_customer(first, last)
    return web.json_response({"ok": True, "customer": _person(customer)})


async def _send(request: web.Request) -> web.Response:
    sandbox = _sandbox(request)
    body = await _json(request)
    where = _actor_and_chat(sandbox, body)
    if isinstance(where, web.Response):
        return where
    user, chat, thread_id = where
    text = str(body.get("text") or "")
    if not text.strip():
        return _bad("an empty message cannot be sent")
    if len(text) > MAX_TEXT:
        return _bad(f"Telegram messages are at most {MAX_TEXT} characters")
    reply_to = None
    if body.get("reply_to"):
        reply_to = sandbox.emulator._find(chat.id, _int(body["reply_to"], "reply_to"))
    stored = sandbox.emulator.push_message(
        user, text, chat=chat, thread_id=thread_id, reply_to=reply_to
    )
    return web.json_response({"ok": True, "message_id": stored.message_id})


async def _press(request: web.Request) -> web.Response:
    """Press an inline button; answers with the bot's callback answer (its toast) once the bot
    gave one, as Telegram shows it."""
    sandbox = _sandbox(request)
    body = await _json(request)
    where = _actor_and_chat(sandbox, body)
    if isinstance(where, web.Response):
        return where
    user, chat, _ = where
    message = sandbox.emulator._find(chat.id, _int(body.get("message_id"), "message_id"))
    data = str(body.get("data") or "")
    if message is None or data not in {b.get("callback_data") for b in message.inline_buttons()}:
        return _bad("that button is not there any more")
    emulator = sandbox.emulator
    query_id = emulator.push_callback(user, data, message)
    try:
        answer = await emulator.wait_for(lambda: emulator.answered_callbacks.get(query_id), 10)
    except TimeoutError:
        return web.json_response({"ok": True, "text": "", "alert": False})
    text = str(answer.get("text") or "")
    return web.json_response({"ok": True, "text": text, "alert": bool(answer.get("show_alert"))})


async def _contact(request: web.Request) -> web.Response:
    sandbox = _sandbox(request)
    body = await _json(request)
    user = sandbox.user(_int(body.get("user_id"), "user_id"))
    if user is None:
        return _bad("no such person")
    # Telegram shares the account's own number; the sandbox's people get a made-up mobile one.
    phone = str(body.get("phone") or f"+49151{user.id % 10**8:08d}").strip()
    if not phone or len(phone) > 32:
        return _bad("a phone number, please")
    sandbox.emulator.push_contact(user, phone)
    return web.json_response({"ok": True})


async def _upload(request: web.Request) -> web.Response:
    sandbox = _sandbox(request)
    if not request.content_type.startswith("multipart/"):
        return _bad("send the file as multipart/form-data")
    fields: dict[str, str] = {}
    content, file_name, mime = b"", "", ""
    reader = await request.multipart()
    async for part in reader:
        if not isinstance(part, BodyPartReader) or part.name is None:
            continue
        if part.name == "file":
            file_name = part.filename or "file"
            mime = part.headers.get("Content-Type", "application/octet-stream")
            content = bytes(await part.read())
        else:
            fields[part.name] = await part.text()
    if not content:
        return _bad("no file, or an empty one")
    where = _actor_and_chat(sandbox, dict(fields))
    if isinstance(where, web.Response):
        return where
    user, chat, thread_id = where
    caption = fields.get("caption", "").strip() or None
    emulator = sandbox.emulator
    if any(content.startswith(magic) for magic in IMAGE_MAGIC):
        stored = emulator.push_photo(
            user, caption=caption, chat=chat, content=content, thread_id=thread_id
        )
    else:
        stored = emulator.push_document(
            user,
            file_name=file_name[:128],
            mime_type=mime,
            caption=caption,
            content=content,
            chat=chat,
            thread_id=thread_id,
        )
    return web.json_response({"ok": True, "message_id": stored.message_id})
