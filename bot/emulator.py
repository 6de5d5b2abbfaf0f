"""A local fake of the Telegram Bot API, close enough that PTB cannot tell the difference.

It is an aiohttp server on 127.0.0.1 (random port) serving ``/bot<token>/<method>``. Point the
bot at it with ``DESKBOT_TELEGRAM_API_URL=fake.api_url``. Responses are shaped like Telegram's
(``ok``/``result`` or ``ok``/``error_code``/``description``/``parameters``), so PTB raises its real
exceptions: ``BadRequest``, ``Forbidden``, ``RetryAfter``, ``ChatMigrated``, ``InvalidToken``.

What it checks like Telegram does:
- HTML ``parse_mode``: only Telegram's tags, balanced, ``&``/``<`` escaped -> else 400
  "Bad Request: can't parse entities: ..."; 4096 characters after parsing (1024 for captions).
- Users marked blocked (:meth:`FakeBotAPI.block`) -> 403 "Forbidden: bot was blocked by the user".
- Rate rules (:meth:`FakeBotAPI.rate_limit`) -> 429 with ``parameters.retry_after``; with
  ``group_messages_per_minute = 20`` Telegram's own limit for groups applies too.
- Random faults (:meth:`FakeBotAPI.inject_faults`): a seeded share of calls answered 429, 500,
  or with the connection dropped before any answer (what a timeout is to the bot), each
  *before* the call takes effect, so that a retry is always safe.
- Forum topics: unknown/deleted ``message_thread_id`` -> 400 "Bad Request: message thread not
  found"; migrated groups -> 400 with ``parameters.migrate_to_chat_id``.

Tests push updates (``push_message``, ``push_callback``, ``push_contact``, ``push_photo``...),
which ``getUpdates`` long-polls for, and wait on what the bot did with
``await fake.wait_for_message(chat_id, contains="Hello")`` or ``await fake.wait_for(predicate)``.
Waiting is event-driven (no sleeps): every recorded request or state change wakes waiters.

``deskbot sandbox`` (:mod:`bot.sandbox`) runs the real bot against this same emulator and shows
it in a browser page; :attr:`FakeBotAPI.version` counts changes, for the page's live updates.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any, TypeVar

from aiohttp import BodyPartReader, web

T = TypeVar("T")

DEFAULT_TOKEN = "123456789:TEST-token_abcdefghijklmnopqrstuvwxyz0123"
MESSAGE_LIMIT = 4096
CAPTION_LIMIT = 1024

# Parameters Telegram takes as plain strings; PTB sends everything else JSON-encoded.
_STRING_PARAMS = {
    "text", "caption", "parse_mode", "name", "callback_query_id", "url", "secret_token",
    "file_id", "emoji", "language_code", "action", "icon_custom_emoji_id", "photo", "document",
    "description", "short_description", "title", "query", "business_connection_id",
}  # fmt: skip

ALLOWED_TAGS = {
    "b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler", "a",
    "tg-emoji", "code", "pre", "blockquote",
}  # fmt: skip


class ApiError(Exception):
    def __init__(self, code: int, description: str, parameters: dict[str, Any] | None = None):
        super().__init__(description)
        self.code, self.description, self.parameters = code, description, parameters


# The emoji a bot may react with (Telegram's list, in part).
ALLOWED_REACTIONS = frozenset(
    "👍👎❤🔥🥰👏😁🤔🤯😱🤬😢🎉🤩🙏👌🕊🤡🥱🥴😍🐳🌚🌭💯🤣⚡🍌🏆💔🤨😐🍓🍾💋🖕😈😴😭🤓👻👀🎃🙈😇😨🤝✍🤗🫡🎅🎄☃💅🤪🗿🆒💘🙉🦄😘💊🙊😎👾🤷😡"
)


# How an upload's file name travels beside its bytes (``uploads["document" + suffix]``).
FILENAME_SUFFIX = ".filename"


def bad_request(description: str, **parameters: Any) -> ApiError:
    return ApiError(400, f"Bad Request: {description}", parameters or None)


# --------------------------------------------------------------------------------------------
# Telegram HTML
# --------------------------------------------------------------------------------------------


class _TelegramHTMLParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.stack: list[str] = []
        self.parts: list[str] = []

    def _fail(self, message: str) -> None:
        raise bad_request(f"can't parse entities: {message}")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in ALLOWED_TAGS:
            self._fail(f'Unsupported start tag "{tag}" at byte offset {self.getpos()[1]}')
        if tag == "span" and ("class", "tg-spoiler") not in attrs:
            self._fail('Tag "span" must have class "tg-spoiler"')
        if tag == "a" and not dict(attrs).get("href"):
            self._fail('Tag "a" must have an "href" attribute')
        self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._fail(f'Unsupported start tag "{tag}" at byte offset {self.getpos()[1]}')

    def handle_endtag(self, tag: str) -> None:
        if not self.stack:
            self._fail(f'Unexpected end tag "{tag}" at byte offset {self.getpos()[1]}')
        if self.stack[-1] != tag:
            self._fail(
                f"Unmatched end tag at byte offset {self.getpos()[1]}, expected "
                f'"</{self.stack[-1]}>", found "</{tag}>"'
            )
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.parts.append(data)

    def handle_entityref(self, name: str) -> None:
        entities = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
        if name not in entities:
            self._fail(f'Unsupported HTML entity "&{name};"')
        self.parts.append(entities[name])

    def handle_charref(self, name: str) -> None:
        code = int(name[1:], 16) if name.lower().startswith("x") else int(name)
        self.parts.append(chr(code))

    def handle_comment(self, data: str) -> None:
        self._fail("Unsupported comment")


_RAW_AMP = re.compile(r"&(?![A-Za-z]+;|#\d+;|#[xX][0-9A-Fa-f]+;)")
_RAW_LT = re.compile(r"<(?![A-Za-z/])")


def parse_telegram_html(text: str) -> str:
    """The plain text Telegram would show for ``text`` in HTML parse mode, or ApiError 400."""
    for pattern, char in ((_RAW_AMP, "&"), (_RAW_LT, "<")):
        match = pattern.search(text)
        if match:
            raise bad_request(
                f"can't parse entities: Character '{char}' is reserved and must be escaped "
                f"at byte offset {len(text[: match.start()].encode())}"
            )
    parser = _TelegramHTMLParser()
    parser.feed(text)
    parser.close()
    if parser.rawdata:  # an unterminated "<b" at the end
        raise bad_request("can't parse entities: Unclosed start tag")
    if parser.stack:
        raise bad_request(
            f"can't parse entities: Can't find end tag corresponding to start tag "
            f'"{parser.stack[-1]}"'
        )
    return "".join(parser.parts)


# --------------------------------------------------------------------------------------------
# The fake world
# --------------------------------------------------------------------------------------------


@dataclass
class FakeUser:
    id: int
    first_name: str
    last_name: str | None = None
    username: str | None = None
    language_code: str | None = "en"
    is_bot: bool = False

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "is_bot": self.is_bot, "first_name": self.first_name}
        for key in ("last_name", "username", "language_code"):
            if getattr(self, key) is not None:
                data[key] = getattr(self, key)
        return data


@dataclass
class FakeTopic:
    thread_id: int
    name: str
    icon_color: int = 7322096
    closed: bool = False
    deleted: bool = False


@dataclass
class FakeChat:
    id: int
    type: str  # private, group, supergroup
    title: str | None = None
    is_forum: bool = False
    user: FakeUser | None = None  # for private chats
    members: dict[int, str] = field(default_factory=dict)  # user id -> status
    topics: dict[int, FakeTopic] = field(default_factory=dict)
    migrated_to: int | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.type == "private" and self.user is not None:
            data = {"id": self.id, "type": "private", "first_name": self.user.first_name}
            if self.user.last_name:
                data["last_name"] = self.user.last_name
            if self.user.username:
                data["username"] = self.user.username
            return data
        data = {"id": self.id, "type": self.type, "title": self.title or "Group"}
        if self.is_forum:
            data["is_forum"] = True
        return data


@dataclass
class RecordedRequest:
    method: str
    params: dict[str, Any]
    time: float
    response: Any = None
    error: ApiError | None = None


@dataclass
class StoredMessage:
    """A message in the fake: sent by the bot (``from_bot``) or pushed as a user's."""

    chat_id: int
    message_id: int
    data: dict[str, Any]  # the Telegram Message object as returned / delivered
    from_bot: bool
    method: str = "sendMessage"
    html: str | None = None  # the raw text the bot sent (before entity parsing)
    reply_markup: dict[str, Any] | None = None  # as sent, including reply keyboards
    thread_id: int | None = None

    @property
    def text(self) -> str:
        """Plain text as the user sees it (or the caption of a media message)."""
        return str(self.data.get("text") or self.data.get("caption") or "")

    def inline_buttons(self) -> list[dict[str, Any]]:
        rows = (self.reply_markup or {}).get("inline_keyboard") or []
        return [button for row in rows for button in row]

    def keyboard_buttons(self) -> list[dict[str, Any]]:
        rows = (self.reply_markup or {}).get("keyboard") or []
        return [b if isinstance(b, dict) else {"text": b} for row in rows for b in row]

    def button(self, text: str) -> dict[str, Any]:
        """The inline button whose label contains ``text``."""
        for button in self.inline_buttons():
            if text in button.get("text", ""):
                return button
        labels = [b.get("text") for b in self.inline_buttons()]
        raise AssertionError(f"no inline button with {text!r} in message; buttons: {labels}")


FAULT_KINDS = ("429", "500", "disconnect")


@dataclass
class FaultPlan:
    share: float
    random: random.Random
    methods: frozenset[str]
    kinds: tuple[str, ...]
    retry_after: int


@dataclass
class RateRule:
    method: str
    chat_id: int | None
    retry_after: int
    remaining: int


class FakeBotAPI:
    """See the module docstring. Use as ``async with FakeBotAPI() as fake:``."""

    def __init__(self, token: str = DEFAULT_TOKEN, *, bot_username: str = "desk_test_bot") -> None:
        self.token = token
        self.bot_user = FakeUser(
            id=int(token.split(":")[0]),
            first_name="DeskBot",
            username=bot_username,
            language_code=None,
            is_bot=True,
        )
        self.requests: list[RecordedRequest] = []
        self.messages: list[StoredMessage] = []
        self.chats: dict[int, FakeChat] = {}
        self.blocked: set[int] = set()
        self.rate_rules: list[RateRule] = []
        self.commands: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.answered_callbacks: dict[str, dict[str, Any]] = {}
        self.files: dict[str, bytes] = {}
        # What a file id is (photo, document): Telegram refuses one kind's id for another.
        self.file_kinds: dict[str, str] = {}
        # Reactions the bot set: (chat_id, message_id) -> emoji.
        self.reactions: dict[tuple[int, int], list[str]] = {}
        self.webhook_url: str = ""
        self.webhook_secret: str | None = None
        # Confirmation, as Telegram sees it: polling confirms an update when getUpdates is
        # called with an offset past it; a webhook delivery is confirmed by a 2xx answer.
        self.confirmed_offset: int = 0
        self.webhook_confirmed: list[int] = []
        self.webhook_last_error: str | None = None
        self._webhook_task: asyncio.Task[None] | None = None
        # Awaited before each request is answered (tests check invariants at that moment).
        self.request_hooks: list[Callable[[RecordedRequest], Awaitable[None]]] = []
        self.delivered_update_ids: list[int] = []
        self.processed_update_ids: list[int] = []
        self._updates: list[dict[str, Any]] = []  # not yet confirmed by an offset
        self._redeliveries: list[dict[str, Any]] = []
        self._redelivered_times: Counter[int] = Counter()
        # Redelivered updates served again, and how often the bot confirmed having them since
        # (a later getUpdates offset past them, or a 2xx from the webhook): a bot that keeps an
        # inbox confirms a redelivery without processing it again.
        self._served_again: list[int] = []
        self._reconfirmed: Counter[int] = Counter()
        self._all_updates: dict[int, dict[str, Any]] = {}
        self._update_ids = itertools.count(1000)
        self._message_ids: dict[int, itertools.count[int]] = {}
        self._ids = itertools.count(1)
        self._changed = asyncio.Event()
        self._closing = False
        self._runner: web.AppRunner | None = None
        self.port: int | None = None
        self._failures: list[tuple[str, ApiError]] = []
        self._faults: FaultPlan | None = None
        self.faults_injected: Counter[str] = Counter()
        # Grows on every change: the sandbox page re-reads the world when it moves.
        self.version = 0
        # Telegram's "20 messages a minute per group" (None: off, as most tests want).
        self.group_messages_per_minute: int | None = None
        self._group_sends: dict[int, list[float]] = {}

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> FakeBotAPI:
        app = web.Application(client_max_size=50 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_get("/file/bot{token}/{path:.*}", self._handle_file)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[attr-defined]
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self

    async def stop(self) -> None:
        self._closing = True
        self._notify()
        await self._stop_webhook_delivery()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeBotAPI:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def api_url(self) -> str:
        """Value for DESKBOT_TELEGRAM_API_URL (PTB appends the token)."""
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def file_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/file/bot"

    # --- configuration by tests ---------------------------------------------------------------

    def private_chat(self, user: FakeUser) -> FakeChat:
        chat = self.chats.get(user.id)
        if chat is None:
            chat = self.chats[user.id] = FakeChat(id=user.id, type="private", user=user)
        chat.user = user
        return chat

    def add_group(
        self,
        chat_id: int,
        title: str = "Agents",
        *,
        forum: bool = False,
        members: dict[int, str] | None = None,
        type: str = "supergroup",
    ) -> FakeChat:
        """A group the bot is in; ``members`` maps user id -> status (member, administrator,
        creator, restricted, left, kicked). The bot itself is an administrator."""
        chat = FakeChat(id=chat_id, type=type, title=title, is_forum=forum)
        chat.members.update(members or {})
        chat.members[self.bot_user.id] = "administrator"
        self.chats[chat_id] = chat
        return chat

    def set_member(self, chat_id: int, user_id: int, status: str) -> None:
        """Change a member's status silently (as when Telegram sends no ``chat_member`` update:
        the bot is no admin, or did not ask for them)."""
        self.chats[chat_id].members[user_id] = status
        self._notify()

    def change_member(
        self, chat_id: int, user_id: int, status: str, *, by: FakeUser | None = None
    ) -> int:
        """An admin changes a member's status (adds, removes, bans, promotes): Telegram tells an
        admin bot with a ``chat_member`` update. Returns the update's id."""
        chat = self.chats[chat_id]
        old = chat.members.get(user_id, "left")
        chat.members[user_id] = status
        user = self.chats[user_id].user if user_id in self.chats else None
        user_dict = (user or FakeUser(id=user_id, first_name=f"User{user_id}")).to_dict()
        actor = (by or FakeUser(id=1, first_name="Admin")).to_dict()
        return self.push_update(
            {
                "chat_member": {
                    "chat": chat.to_dict(),
                    "from": actor,
                    "date": int(time.time()),
                    "old_chat_member": _chat_member(old, user_dict),
                    "new_chat_member": _chat_member(status, user_dict),
                }
            }
        )

    def add_topic(self, chat_id: int, name: str) -> FakeTopic:
        """A forum topic that already exists (created by a person, not via the bot)."""
        return self._create_topic(self.chats[chat_id], name, 7322096)

    def delete_topic(self, chat_id: int, thread_id: int) -> None:
        """Someone deleted the topic: sending into it now fails with "thread not found"."""
        self.chats[chat_id].topics[thread_id].deleted = True

    def block(self, user_id: int) -> None:
        self.blocked.add(user_id)

    def unblock(self, user_id: int) -> None:
        self.blocked.discard(user_id)

    def rate_limit(
        self, method: str, *, chat_id: int | None = None, retry_after: int = 1, times: int = 1
    ) -> None:
        """The next ``times`` calls of ``method`` (to ``chat_id``, if given) get a 429."""
        self.rate_rules.append(RateRule(method, chat_id, retry_after, times))

    def fail_next(self, method: str, code: int, description: str, **parameters: Any) -> None:
        """The next call of ``method`` fails with this Telegram error."""
        self._failures.append((method, ApiError(code, description, parameters or None)))

    def inject_faults(
        self,
        share: float,
        *,
        seed: int = 0,
        methods: Iterable[str] = ("sendMessage", "copyMessage", "sendPhoto", "sendDocument"),
        kinds: Iterable[str] = FAULT_KINDS,
        retry_after: int = 1,
    ) -> None:
        """From now on ``share`` (0-1) of the calls of ``methods`` fail, drawn from a
        ``random.Random(seed)``: ``"429"`` (Too Many Requests, ``retry_after``), ``"500"``
        (Internal Server Error) or ``"disconnect"`` (the connection closes without an answer,
        as a timeout looks to the bot). Nothing of a failed call is done. ``share=0`` stops.
        :attr:`faults_injected` counts them by kind."""
        kinds = tuple(kinds)
        unknown = set(kinds) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {FAULT_KINDS}")
        self._faults = (
            FaultPlan(share, random.Random(seed), frozenset(methods), kinds, retry_after)
            if share > 0
            else None
        )

    def migrate_group(
        self, chat_id: int, new_chat_id: int, *, push_service_messages: bool = True
    ) -> FakeChat:
        """Telegram upgraded the group to a supergroup: sends to ``chat_id`` now fail with
        ``migrate_to_chat_id`` (PTB: ChatMigrated)."""
        old = self.chats[chat_id]
        old.migrated_to = new_chat_id
        new = self.add_group(new_chat_id, old.title or "Agents", forum=False, members=old.members)
        if push_service_messages:
            self._push_message_dict(old, None, {"migrate_to_chat_id": new_chat_id})
            self._push_message_dict(new, None, {"migrate_from_chat_id": chat_id})
        return new

    # --- pushing updates (what users do) ------------------------------------------------------

    def push_update(self, payload: dict[str, Any]) -> int:
        """Queue a raw update (``update_id`` is added when missing); returns its id."""
        payload = dict(payload)
        payload.setdefault("update_id", next(self._update_ids))
        self._updates.append(payload)
        self._all_updates[payload["update_id"]] = payload
        self._notify()
        return int(payload["update_id"])

    def redeliver(self, update_id: int) -> None:
        """Deliver an update again, as Telegram does when the offset was not confirmed."""
        self._redeliveries.append(self._all_updates[update_id])
        self._redelivered_times[update_id] += 1
        self._notify()

    def push_message(
        self,
        user: FakeUser,
        text: str | None = None,
        *,
        chat: FakeChat | None = None,
        thread_id: int | None = None,
        reply_to: StoredMessage | None = None,
        extra: dict[str, Any] | None = None,
    ) -> StoredMessage:
        """A user sends ``text`` (commands get their ``bot_command`` entity, as in Telegram)."""
        content: dict[str, Any] = dict(extra or {})
        if text is not None:
            content["text"] = text
            if text.startswith("/"):
                command = text.split()[0]
                content["entities"] = [
                    {"type": "bot_command", "offset": 0, "length": _utf16_len(command)}
                ]
        return self._push_message_dict(
            chat or self.private_chat(user), user, content, thread_id=thread_id, reply_to=reply_to
        )

    def push_edit(self, message: StoredMessage, text: str) -> int:
        """The user edits their earlier message: Telegram sends an ``edited_message`` update
        (with its own update id) carrying the whole message as it now reads."""
        message.data["text"] = text
        message.data["edit_date"] = int(time.time())
        return self.push_update({"edited_message": dict(message.data)})

    def push_contact(
        self, user: FakeUser, phone_number: str, *, contact_user_id: int | None = -1
    ) -> StoredMessage:
        """The user shares a contact; by default their own (``user_id`` = sender)."""
        contact: dict[str, Any] = {"phone_number": phone_number, "first_name": user.first_name}
        owner = user.id if contact_user_id == -1 else contact_user_id
        if owner is not None:
            contact["user_id"] = owner
        return self.push_message(user, extra={"contact": contact})

    def push_photo(
        self,
        user: FakeUser,
        *,
        caption: str | None = None,
        chat: FakeChat | None = None,
        content: bytes = b"\x89PNG fake photo",
        thread_id: int | None = None,
    ) -> StoredMessage:
        file_id = self._new_file(content)
        self.file_kinds[file_id] = self.file_kinds[f"{file_id}_s"] = "photo"
        sizes = [
            {"file_id": f"{file_id}_s", "file_unique_id": f"u{file_id}s", "width": 90,
             "height": 90, "file_size": 1000},
            {"file_id": file_id, "file_unique_id": f"u{file_id}", "width": 800, "height": 800,
             "file_size": 50_000},
        ]  # fmt: skip
        # A real picture (the sandbox's uploads) is its own thumbnail.
        small = b"\x89PNG small" if content == b"\x89PNG fake photo" else content
        self.files[f"{file_id}_s"] = small
        extra: dict[str, Any] = {"photo": sizes}
        if caption:
            extra["caption"] = caption
        return self.push_message(user, extra=extra, chat=chat, thread_id=thread_id)

    def push_document(
        self,
        user: FakeUser,
        *,
        file_name: str = "receipt.pdf",
        mime_type: str = "application/pdf",
        caption: str | None = None,
        content: bytes = b"%PDF fake",
        chat: FakeChat | None = None,
        thread_id: int | None = None,
    ) -> StoredMessage:
        file_id = self._new_file(content)
        self.file_kinds[file_id] = "document"
        document = {
            "file_id": file_id, "file_unique_id": f"u{file_id}", "file_name": file_name,
            "mime_type": mime_type, "file_size": len(content),
        }  # fmt: skip
        extra: dict[str, Any] = {"document": document}
        if caption:
            extra["caption"] = caption
        return self.push_message(user, extra=extra, chat=chat, thread_id=thread_id)

    def push_sticker(self, user: FakeUser, emoji: str = "👍") -> StoredMessage:
        file_id = self._new_file(b"sticker")
        sticker = {
            "file_id": file_id, "file_unique_id": f"u{file_id}", "type": "regular",
            "width": 512, "height": 512, "is_animated": False, "is_video": False, "emoji": emoji,
        }  # fmt: skip
        return self.push_message(user, extra={"sticker": sticker})

    def push_voice(self, user: FakeUser, duration: int = 3) -> StoredMessage:
        file_id = self._new_file(b"OggS voice")
        voice = {"file_id": file_id, "file_unique_id": f"u{file_id}", "duration": duration}
        return self.push_message(user, extra={"voice": voice})

    def push_callback(
        self, user: FakeUser, data: str, message: StoredMessage, *, chat: FakeChat | None = None
    ) -> str:
        """The user presses an inline button with ``data`` under ``message``; returns the
        callback query id (see :attr:`answered_callbacks`)."""
        query_id = str(next(self._ids) + 10**12)
        query = {
            "id": query_id,
            "from": user.to_dict(),
            "chat_instance": str(message.chat_id),
            "data": data,
            "message": message.data,
        }
        if chat is None and message.chat_id == user.id:
            self.private_chat(user)
        self.push_update({"callback_query": query})
        return query_id

    def press(self, user: FakeUser, message: StoredMessage, label: str) -> str:
        """Press the inline button whose label contains ``label``."""
        return self.push_callback(user, message.button(label)["callback_data"], message)

    def note_processed(self, update: object) -> None:
        """Called by the harness after the application finished an update."""
        update_id = getattr(update, "update_id", None)
        if isinstance(update_id, int):
            self.processed_update_ids.append(update_id)
            self._notify()

    # --- inspection ---------------------------------------------------------------------------

    @property
    def sent(self) -> list[StoredMessage]:
        """Messages the bot sent (sendMessage, sendPhoto, sendDocument, copyMessage)."""
        return [m for m in self.messages if m.from_bot]

    def sent_to(self, chat_id: int, *, thread_id: int | None = None) -> list[StoredMessage]:
        return [
            m
            for m in self.sent
            if m.chat_id == chat_id and (thread_id is None or m.thread_id == thread_id)
        ]

    @property
    def confirmed_update_ids(self) -> list[int]:
        """Updates Telegram would never deliver again: their offset was passed (polling) or
        their webhook delivery was answered 2xx."""
        polled = [u for u in self.delivered_update_ids if u < self.confirmed_offset]
        return sorted(set(polled) | set(self.webhook_confirmed))

    def update_payload(self, update_id: int) -> dict[str, Any]:
        return self._all_updates[update_id]

    def calls(self, method: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == method]

    def message(self, chat_id: int, message_id: int) -> StoredMessage:
        for stored in self.messages:
            if stored.chat_id == chat_id and stored.message_id == message_id:
                return stored
        raise KeyError((chat_id, message_id))

    # --- waiting ------------------------------------------------------------------------------

    async def wait_for(
        self,
        predicate: Callable[[], T | None],
        timeout: float = 5,  # noqa: ASYNC109
        *,
        what: str | None = None,
    ) -> T:
        """Return the first truthy value of ``predicate()``, re-checked on every change."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            result = predicate()
            if result:
                return result
            event = self._changed
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"timed out after {timeout}s waiting for {what or predicate}")
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                continue  # one last check at the top, then raise

    async def wait_for_message(
        self,
        chat_id: int,
        contains: str | None = None,
        *,
        since: int = 0,
        thread_id: int | None = None,
        timeout: float = 5,  # noqa: ASYNC109
    ) -> StoredMessage:
        """The first bot message to ``chat_id`` at index >= ``since`` of :attr:`messages`
        whose text contains ``contains``."""

        def find() -> StoredMessage | None:
            for stored in self.messages[since:]:
                if (
                    stored.from_bot
                    and stored.chat_id == chat_id
                    and (thread_id is None or stored.thread_id == thread_id)
                    and (contains is None or contains in stored.text)
                ):
                    return stored
            return None

        try:
            return await self.wait_for(find, timeout, what=f"message to {chat_id} ~ {contains!r}")
        except TimeoutError:
            seen = [m.text[:200] for m in self.messages[since:] if m.chat_id == chat_id]
            raise TimeoutError(
                f"no bot message to {chat_id} containing {contains!r} within {timeout}s; "
                f"messages in that chat since {since}: {seen}"
            ) from None

    async def wait_for_request(
        self,
        method: str,
        predicate: Callable[[RecordedRequest], bool] = lambda r: True,
        *,
        since: int = 0,
        timeout: float = 5,  # noqa: ASYNC109
    ) -> RecordedRequest:
        def find() -> RecordedRequest | None:
            return next(
                (r for r in self.requests[since:] if r.method == method and predicate(r)), None
            )

        return await self.wait_for(find, timeout, what=f"request {method}")

    async def wait_processed(self, timeout: float = 5) -> None:  # noqa: ASYNC109
        """Until every update pushed so far was delivered and processed by the application."""

        def done() -> bool:
            pending = set(self._all_updates) - set(self.processed_update_ids)
            # A redelivered update is done when processed once more than it was redelivered,
            # or when the bot confirmed having it every time (an inbox ignores redeliveries).
            repeats_done = all(
                self.processed_update_ids.count(update_id) > times
                or (
                    update_id in self.processed_update_ids and self._reconfirmed[update_id] >= times
                )
                for update_id, times in self._redelivered_times.items()
            )
            return not pending and not self._redeliveries and repeats_done

        await self.wait_for(done, timeout, what="all updates processed")

    # --- internals ----------------------------------------------------------------------------

    def _notify(self) -> None:
        self.version += 1
        self._changed.set()
        self._changed = asyncio.Event()

    def _new_file(self, content: bytes) -> str:
        file_id = f"file{next(self._ids)}"
        self.files[file_id] = content
        return file_id

    def _next_message_id(self, chat_id: int) -> int:
        counter = self._message_ids.setdefault(chat_id, itertools.count(1))
        return next(counter)

    def _push_message_dict(
        self,
        chat: FakeChat,
        user: FakeUser | None,
        content: dict[str, Any],
        *,
        thread_id: int | None = None,
        reply_to: StoredMessage | None = None,
    ) -> StoredMessage:
        message_id = self._next_message_id(chat.id)
        data: dict[str, Any] = {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": chat.to_dict(),
            **content,
        }
        if user is not None:
            data["from"] = user.to_dict()
        if thread_id is not None:
            data["message_thread_id"] = thread_id
            if chat.is_forum:
                data["is_topic_message"] = True
                if reply_to is None:  # Telegram: a topic message replies to the topic's start
                    reply_to = self._find(chat.id, thread_id)
        if reply_to is not None:
            data["reply_to_message"] = reply_to.data
        stored = StoredMessage(chat.id, message_id, data, from_bot=False, thread_id=thread_id)
        self.messages.append(stored)
        self.push_update({"message": data})
        return stored

    def _find(self, chat_id: int, message_id: int) -> StoredMessage | None:
        try:
            return self.message(chat_id, message_id)
        except KeyError:
            return None

    async def _handle_file(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return web.json_response({"ok": False, "error_code": 401}, status=401)
        file_id = request.match_info["path"].removeprefix("files/")
        if file_id not in self.files:
            return web.Response(status=404)
        return web.Response(body=self.files[file_id])

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        if request.match_info["token"] != self.token:
            body = {"ok": False, "error_code": 401, "description": "Unauthorized"}
            return web.json_response(body, status=401)
        params, uploads = await _read_params(request)
        record = RecordedRequest(method=method, params=params, time=time.time())
        self.requests.append(record)
        self._notify()  # waiters see the request at once (getUpdates answers only later)
        for hook in self.request_hooks:
            await hook(record)
        try:
            if self._draw_fault(method) == "disconnect":
                record.error = ApiError(0, "connection dropped (injected)")
                self._notify()
                if request.transport is not None:
                    request.transport.abort()  # no answer at all: the client sees it fail
                return web.Response(status=500)
            self._check_failures(method, params)
            handler = getattr(self, f"_api_{method}", None)
            if handler is None:
                raise ApiError(404, "Not Found: method not found")
            result = await handler(params, uploads)
        except ApiError as error:
            record.error = error
            self._notify()
            body = {"ok": False, "error_code": error.code, "description": error.description}
            if error.parameters:
                body["parameters"] = error.parameters
            return web.json_response(body, status=error.code)
        record.response = result
        self._notify()
        return web.json_response({"ok": True, "result": result})

    def _draw_fault(self, method: str) -> str | None:
        """An injected fault for this call (raised here for 429 and 500), or None."""
        plan = self._faults
        if plan is None or method not in plan.methods or plan.random.random() >= plan.share:
            return None
        kind = plan.random.choice(plan.kinds)
        self.faults_injected[kind] += 1
        if kind == "429":
            raise ApiError(
                429,
                f"Too Many Requests: retry after {plan.retry_after}",
                {"retry_after": plan.retry_after},
            )
        if kind == "500":
            raise ApiError(500, "Internal Server Error")
        return kind

    def _check_failures(self, method: str, params: dict[str, Any]) -> None:
        for index, (failing_method, error) in enumerate(self._failures):
            if failing_method == method:
                del self._failures[index]
                raise error
        for rule in self.rate_rules:
            if rule.method != method or rule.remaining <= 0:
                continue
            if rule.chat_id is not None and params.get("chat_id") != rule.chat_id:
                continue
            rule.remaining -= 1
            raise ApiError(
                429,
                f"Too Many Requests: retry after {rule.retry_after}",
                {"retry_after": rule.retry_after},
            )
        self._check_group_rate(method, params)

    _GROUP_SENDS = frozenset(
        {"sendMessage", "sendPhoto", "sendDocument", "copyMessage", "forwardMessage"}
    )

    def _check_group_rate(self, method: str, params: dict[str, Any]) -> None:
        """Telegram's 20 messages a minute per group, when :attr:`group_messages_per_minute`
        is set: a 429 whose ``retry_after`` is when the oldest send leaves the window."""
        limit = self.group_messages_per_minute
        chat_id = params.get("chat_id")
        if limit is None or method not in self._GROUP_SENDS or chat_id is None:
            return
        try:
            chat_id = int(chat_id)
        except (TypeError, ValueError):
            return
        if chat_id >= 0:
            return
        now = time.monotonic()
        window = [t for t in self._group_sends.get(chat_id, []) if now - t < 60]
        if len(window) >= limit:
            self._group_sends[chat_id] = window
            retry_after = max(1, int(60 - (now - window[0])) + 1)
            raise ApiError(
                429, f"Too Many Requests: retry after {retry_after}", {"retry_after": retry_after}
            )
        window.append(now)
        self._group_sends[chat_id] = window

    # --- updates ------------------------------------------------------------------------------

    async def _api_getUpdates(self, params: dict[str, Any], _: Any) -> list[dict[str, Any]]:
        if self.webhook_url:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; use "
                "deleteWebhook to delete the webhook first",
            )
        offset = int(params.get("offset") or 0)
        limit = int(params.get("limit") or 100)
        self.confirmed_offset = max(self.confirmed_offset, offset)
        for update_id in [u for u in self._served_again if u < offset]:
            self._served_again.remove(update_id)
            self._reconfirmed[update_id] += 1
        timeout = float(params.get("timeout") or 0)
        if offset:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            batch = (self._redeliveries + self._updates)[:limit]
            if batch or self._closing or loop.time() >= deadline:
                break
            event = self._changed
            try:
                await asyncio.wait_for(event.wait(), deadline - loop.time())
            except TimeoutError:
                break
        again = [u["update_id"] for u in batch if u in self._redeliveries]
        self._served_again.extend(again)
        self._redeliveries = [u for u in self._redeliveries if u not in batch]
        self.delivered_update_ids.extend(u["update_id"] for u in batch)
        if again:
            self._notify()
        return batch

    async def _api_deleteWebhook(self, params: dict[str, Any], _: Any) -> bool:
        self.webhook_url = ""
        await self._stop_webhook_delivery()
        if params.get("drop_pending_updates"):
            self._updates.clear()
        return True

    async def _api_setWebhook(self, params: dict[str, Any], _: Any) -> bool:
        self.webhook_url = str(params.get("url", ""))
        self.webhook_secret = params.get("secret_token")
        if self.webhook_url and self._webhook_task is None:
            self._webhook_task = asyncio.create_task(self._deliver_to_webhook())
        return True

    async def _api_getWebhookInfo(self, params: dict[str, Any], _: Any) -> dict[str, Any]:
        info: dict[str, Any] = {
            "url": self.webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates) + len(self._redeliveries),
        }
        if self.webhook_last_error:
            info.update(
                last_error_date=int(time.time()), last_error_message=self.webhook_last_error
            )
        return info

    async def _stop_webhook_delivery(self) -> None:
        task, self._webhook_task = self._webhook_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _deliver_to_webhook(self) -> None:
        """Post pending updates to the webhook one at a time, in order, as Telegram does; an
        update stays pending (and is posted again) until the bot answers 2xx."""
        import aiohttp

        headers = {"X-Telegram-Bot-Api-Secret-Token": self.webhook_secret or ""}
        async with aiohttp.ClientSession() as http:
            while not self._closing and self.webhook_url:
                pending = self._redeliveries or self._updates
                if not pending:
                    event = self._changed
                    await event.wait()
                    continue
                update = pending[0]
                try:
                    async with http.post(self.webhook_url, json=update, headers=headers) as resp:
                        ok = 200 <= resp.status < 300
                        error = None if ok else f"Wrong response from the webhook: {resp.status}"
                except aiohttp.ClientError as exc:
                    ok, error = False, f"Connection failed: {exc}"
                self.delivered_update_ids.append(update["update_id"])
                if ok:
                    if update in pending:
                        if pending is self._redeliveries:
                            self._reconfirmed[update["update_id"]] += 1
                        pending.remove(update)
                    self.webhook_confirmed.append(update["update_id"])
                    self._notify()
                else:
                    self.webhook_last_error = error
                    await asyncio.sleep(0.05)  # Telegram backs off too

    # --- bot ----------------------------------------------------------------------------------

    async def _api_getMe(self, params: dict[str, Any], _: Any) -> dict[str, Any]:
        return {
            **self.bot_user.to_dict(),
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }

    async def _api_logOut(self, params: dict[str, Any], _: Any) -> bool:
        return True

    async def _api_close(self, params: dict[str, Any], _: Any) -> bool:
        return True

    def _commands_key(self, params: dict[str, Any]) -> tuple[str, str]:
        """``("all_private_chats", "de")``, or ``("chat:-100123", "")`` for one chat's menu."""
        scope = params.get("scope") or {"type": "default"}
        if isinstance(scope, str):
            scope = json.loads(scope)
        kind = str(scope.get("type"))
        if "chat_id" in scope:
            chat = self._chat(scope["chat_id"])  # a chat the bot does not know: "chat not found"
            kind = f"{kind}:{chat.id}"
        return (kind, str(params.get("language_code") or ""))

    async def _api_setMyCommands(self, params: dict[str, Any], _: Any) -> bool:
        commands = params.get("commands") or []
        for command in commands:
            if not re.fullmatch(r"[a-z0-9_]{1,32}", command.get("command", "")):
                raise bad_request("BOT_COMMAND_INVALID")
            if not 1 <= len(command.get("description", "")) <= 256:
                raise bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
        self.commands[self._commands_key(params)] = commands
        return True

    async def _api_getMyCommands(self, params: dict[str, Any], _: Any) -> list[dict[str, Any]]:
        return self.commands.get(self._commands_key(params), [])

    async def _api_deleteMyCommands(self, params: dict[str, Any], _: Any) -> bool:
        self.commands.pop(self._commands_key(params), None)
        return True

    # --- chats --------------------------------------------------------------------------------

    def _chat(self, chat_id: Any) -> FakeChat:
        chat = self.chats.get(int(chat_id)) if chat_id is not None else None
        if chat is None:
            raise bad_request("chat not found")
        if chat.migrated_to is not None:
            raise bad_request(
                "group chat was upgraded to a supergroup chat", migrate_to_chat_id=chat.migrated_to
            )
        if chat.type == "private" and chat.id in self.blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        return chat

    def _thread(self, chat: FakeChat, params: dict[str, Any]) -> int | None:
        thread_id = params.get("message_thread_id")
        if thread_id is None:
            return None
        topic = chat.topics.get(int(thread_id))
        if topic is None or topic.deleted:
            raise bad_request("message thread not found")
        return int(thread_id)

    async def _api_getChat(self, params: dict[str, Any], _: Any) -> dict[str, Any]:
        chat = self._chat(params.get("chat_id"))
        return {**chat.to_dict(), "accent_color_id": 0, "max_reaction_count": 11}

    async def _api_getChatMember(self, params: dict[str, Any], _: Any) -> dict[str, Any]:
        chat = self._chat(params.get("chat_id"))
        user_id = int(params["user_id"])
        status = chat.members.get(user_id, "left")
        user = self.chats[user_id].user if user_id in self.chats else None
        user_dict = (
            self.bot_user.to_dict()
            if user_id == self.bot_user.id
            else (user or FakeUser(id=user_id, first_name=f"User{user_id}")).to_dict()
        )
        return _chat_member(status, user_dict)

    async def _api_sendChatAction(self, params: dict[str, Any], _: Any) -> bool:
        chat = self._chat(params.get("chat_id"))
        self._thread(chat, params)
        return True

    async def _api_leaveChat(self, params: dict[str, Any], _: Any) -> bool:
        return True

    # --- forum topics -------------------------------------------------------------------------

    def _create_topic(self, chat: FakeChat, name: str, icon_color: int) -> FakeTopic:
        service = self._push_bot_message(
            chat, {"forum_topic_created": {"name": name, "icon_color": icon_color}}
        )
        service.from_bot = False  # a service message, not something the bot "said"
        topic = FakeTopic(thread_id=service.message_id, name=name, icon_color=icon_color)
        service.thread_id = topic.thread_id
        chat.topics[topic.thread_id] = topic
        return topic

    def _topic(self, params: dict[str, Any]) -> FakeTopic:
        chat = self._chat(params.get("chat_id"))
        if not chat.is_forum:
            raise bad_request("the chat is not a forum")
        topic = chat.topics.get(int(params.get("message_thread_id") or 0))
        if topic is None or topic.deleted:
            raise bad_request("message thread not found")
        return topic

    async def _api_createForumTopic(self, params: dict[str, Any], _: Any) -> dict[str, Any]:
        chat = self._chat(params.get("chat_id"))
        if not chat.is_forum:
            raise bad_request("the chat is not a forum")
        name = str(params.get("name") or "")
        if not 1 <= len(name) <= 128:
            raise bad_request("TOPIC_TITLE_EMPTY" if not name else "TOPIC_TITLE_INVALID")
        topic = self._create_topic(chat, name, int(params.get("icon_color") or 7322096))
        return {
            "message_thread_id": topic.thread_id,
            "name": topic.name,
            "icon_color": topic.icon_color,
        }

    async def _api_editForumTopic(self, params: dict[str, Any], _: Any) -> bool:
        topic = self._topic(params)
        if params.get("name"):
            if params["name"] == topic.name:
                raise bad_request("TOPIC_NOT_MODIFIED")
            topic.name = str(params["name"])
        return True

    async def _api_closeForumTopic(self, params: dict[str, Any], _: Any) -> bool:
        topic = self._topic(params)
        if topic.closed:
            raise bad_request("TOPIC_NOT_MODIFIED")
        topic.closed = True
        return True

    async def _api_reopenForumTopic(self, params: dict[str, Any], _: Any) -> bool:
        topic = self._topic(params)
        if not topic.closed:
            raise bad_request("TOPIC_NOT_MODIFIED")
        topic.closed = False
        return True

    async def _api_deleteForumTopic(self, params: dict[str, Any], _: Any) -> bool:
        self._topic(params).deleted = True
        return True

    # --- messages -----------------------------------------------------------------------------

    def _push_bot_message(
        self,
        chat: FakeChat,
        content: dict[str, Any],
        *,
        method: str = "sendMessage",
        html: str | None = None,
        reply_markup: dict[str, Any] | None = None,
        thread_id: int | None = None,
    ) -> StoredMessage:
        message_id = self._next_message_id(chat.id)
        data: dict[str, Any] = {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": chat.to_dict(),
            "from": self.bot_user.to_dict(),
            **content,
        }
        if thread_id is not None:
            data["message_thread_id"] = thread_id
            data["is_topic_message"] = True
        if reply_markup and "inline_keyboard" in reply_markup:
            data["reply_markup"] = reply_markup  # Telegram echoes inline keyboards only
        stored = StoredMessage(
            chat.id,
            message_id,
            data,
            from_bot=True,
            method=method,
            html=html,
            reply_markup=reply_markup,
            thread_id=thread_id,
        )
        self.messages.append(stored)
        return stored

    def _formatted(self, text: str, params: dict[str, Any], limit: int, what: str) -> str:
        parse_mode = str(params.get("parse_mode") or "")
        plain = parse_telegram_html(text) if parse_mode.upper() == "HTML" else text
        if parse_mode and parse_mode.upper() not in {"HTML", "MARKDOWNV2", "MARKDOWN"}:
            raise bad_request(f"unsupported parse_mode {parse_mode}")
        if what == "text" and not plain.strip():
            raise bad_request("message text is empty")
        if len(plain) > limit:
            raise bad_request(f"message {'' if what == 'text' else 'caption '}is too long")
        return plain

    def _reply_to(self, chat: FakeChat, params: dict[str, Any]) -> dict[str, Any]:
        reply_parameters = params.get("reply_parameters") or {}
        reply_id = reply_parameters.get("message_id") or params.get("reply_to_message_id")
        if not reply_id:
            return {}
        original = self._find(chat.id, int(reply_id))
        if original is None:
            raise bad_request("message to be replied not found")
        return {"reply_to_message": original.data}

    async def _api_sendMessage(self, params: dict[str, Any], _: Any) -> dict[str, Any]:
        chat = self._chat(params.get("chat_id"))
        thread_id = self._thread(chat, params)
        text = str(params.get("text") or "")
        plain = self._formatted(text, params, MESSAGE_LIMIT, "text")
        stored = self._push_bot_message(
            chat,
            {"text": plain, **self._reply_to(chat, params)},
            html=text,
            reply_markup=params.get("reply_markup"),
            thread_id=thread_id,
        )
        return stored.data

    async def _send_media(
        self, method: str, kind: str, params: dict[str, Any], uploads: dict[str, bytes]
    ) -> dict[str, Any]:
        chat = self._chat(params.get("chat_id"))
        thread_id = self._thread(chat, params)
        file_id = str(params.get(kind) or "")
        upload = kind if kind in uploads else file_id.removeprefix("attach://")
        file_name = uploads.get(f"{upload}{FILENAME_SUFFIX}", b"").decode() or None
        if kind in uploads:
            file_id = self._new_file(uploads[kind])
        elif file_id.startswith("attach://"):
            file_id = self._new_file(uploads[file_id.removeprefix("attach://")])
        elif file_id not in self.files and not file_id.startswith("http"):
            raise bad_request("wrong file identifier/HTTP URL specified")
        elif self.file_kinds.get(file_id, kind) != kind:
            known = self.file_kinds[file_id].capitalize()
            raise bad_request(f"can't use file of type {known} as {kind.capitalize()}")
        content: dict[str, Any] = {}
        caption = params.get("caption")
        if caption:
            content["caption"] = self._formatted(str(caption), params, CAPTION_LIMIT, "caption")
        if kind == "photo":
            content["photo"] = [
                {"file_id": file_id, "file_unique_id": f"u{file_id}", "width": 800, "height": 800}
            ]
        else:
            content["document"] = {"file_id": file_id, "file_unique_id": f"u{file_id}"}
            if file_name:
                content["document"]["file_name"] = file_name
        stored = self._push_bot_message(
            chat,
            content,
            method=method,
            html=str(caption) if caption else None,
            reply_markup=params.get("reply_markup"),
            thread_id=thread_id,
        )
        return stored.data

    async def _api_sendPhoto(self, params: dict[str, Any], up: dict[str, bytes]) -> dict[str, Any]:
        return await self._send_media("sendPhoto", "photo", params, up)

    async def _api_sendDocument(
        self, params: dict[str, Any], up: dict[str, bytes]
    ) -> dict[str, Any]:
        return await self._send_media("sendDocument", "document", params, up)

    async def _api_copyMessage(self, params: dict[str, Any], _: Any) -> dict[str, Any]:
        source = self._find(int(params["from_chat_id"]), int(params["message_id"]))
        if source is None:
            raise bad_request("message to copy not found")
        chat = self._chat(params.get("chat_id"))
        thread_id = self._thread(chat, params)
        keep = ("text", "entities", "caption", "photo", "document", "sticker", "voice",
                "video", "audio", "contact", "location")  # fmt: skip
        content = {k: v for k, v in source.data.items() if k in keep}
        if "caption" in params:
            content["caption"] = self._formatted(
                str(params["caption"]), params, CAPTION_LIMIT, "caption"
            )
        stored = self._push_bot_message(
            chat,
            content,
            method="copyMessage",
            html=params.get("caption"),
            reply_markup=params.get("reply_markup"),
            thread_id=thread_id,
        )
        stored.data["copied_from"] = {"chat_id": source.chat_id, "message_id": source.message_id}
        return {"message_id": stored.message_id}

    def _editable(self, params: dict[str, Any]) -> StoredMessage:
        chat = self._chat(params.get("chat_id"))
        stored = self._find(chat.id, int(params.get("message_id") or 0))
        if stored is None or not stored.from_bot:
            raise bad_request("message to edit not found")
        return stored

    async def _api_editMessageText(self, params: dict[str, Any], _: Any) -> dict[str, Any]:
        stored = self._editable(params)
        text = str(params.get("text") or "")
        plain = self._formatted(text, params, MESSAGE_LIMIT, "text")
        markup = params.get("reply_markup")
        if plain == stored.data.get("text") and markup == stored.data.get("reply_markup"):
            raise bad_request(
                "message is not modified: specified new message content and reply markup are "
                "exactly the same as a current content and reply markup of the message"
            )
        stored.data["text"], stored.html = plain, text
        stored.data["edit_date"] = int(time.time())
        self._set_markup(stored, markup)
        return stored.data

    async def _api_editMessageReplyMarkup(self, params: dict[str, Any], _: Any) -> dict[str, Any]:
        stored = self._editable(params)
        markup = params.get("reply_markup")
        if markup == stored.data.get("reply_markup"):
            raise bad_request(
                "message is not modified: specified new message content and reply markup are "
                "exactly the same as a current content and reply markup of the message"
            )
        self._set_markup(stored, markup)
        return stored.data

    def _set_markup(self, stored: StoredMessage, markup: dict[str, Any] | None) -> None:
        stored.reply_markup = markup
        if markup:
            stored.data["reply_markup"] = markup
        else:
            stored.data.pop("reply_markup", None)

    async def _api_deleteMessage(self, params: dict[str, Any], _: Any) -> bool:
        chat = self._chat(params.get("chat_id"))
        stored = self._find(chat.id, int(params.get("message_id") or 0))
        if stored is None:
            raise bad_request("message to delete not found")
        self.messages.remove(stored)
        return True

    async def _api_pinChatMessage(self, params: dict[str, Any], _: Any) -> bool:
        self._chat(params.get("chat_id"))
        return True

    async def _api_unpinChatMessage(self, params: dict[str, Any], _: Any) -> bool:
        self._chat(params.get("chat_id"))
        return True

    async def _api_setMessageReaction(self, params: dict[str, Any], _: Any) -> bool:
        chat = self._chat(params.get("chat_id"))
        message_id = int(params["message_id"])
        if self._find(chat.id, message_id) is None:
            raise bad_request("message to react not found")
        reaction = params.get("reaction") or []
        if isinstance(reaction, str):
            reaction = json.loads(reaction)
        emoji = [str(r.get("emoji")) for r in reaction if r.get("type") == "emoji"]
        if any(e not in ALLOWED_REACTIONS for e in emoji):
            raise bad_request("REACTION_INVALID")
        self.reactions[(chat.id, message_id)] = emoji
        return True

    async def _api_answerCallbackQuery(self, params: dict[str, Any], _: Any) -> bool:
        query_id = str(params.get("callback_query_id"))
        if query_id in self.answered_callbacks:
            raise bad_request(
                "query is too old and response timeout expired or query ID is invalid"
            )
        self.answered_callbacks[query_id] = params
        return True

    # --- files --------------------------------------------------------------------------------

    async def _api_getFile(self, params: dict[str, Any], _: Any) -> dict[str, Any]:
        file_id = str(params.get("file_id"))
        if file_id not in self.files:
            raise bad_request("invalid file_id")
        return {
            "file_id": file_id,
            "file_unique_id": f"u{file_id}",
            "file_size": len(self.files[file_id]),
            "file_path": f"files/{file_id}",
        }


def _chat_member(status: str, user: dict[str, Any]) -> dict[str, Any]:
    member: dict[str, Any] = {"status": status, "user": user}
    if status == "creator":
        member["is_anonymous"] = False
    elif status == "administrator":
        member.update(
            {
                key: True
                for key in (
                    "can_be_edited",
                    "can_manage_chat",
                    "can_delete_messages",
                    "can_manage_video_chats",
                    "can_restrict_members",
                    "can_promote_members",
                    "can_change_info",
                    "can_invite_users",
                    "can_post_stories",
                    "can_edit_stories",
                    "can_delete_stories",
                    "can_manage_topics",
                    "can_pin_messages",
                )
            },
            is_anonymous=False,
        )
    elif status == "restricted":
        member.update(
            {
                key: False
                for key in (
                    "is_member",
                    "can_send_messages",
                    "can_send_audios",
                    "can_send_documents",
                    "can_send_photos",
                    "can_send_videos",
                    "can_send_video_notes",
                    "can_send_voice_notes",
                    "can_send_polls",
                    "can_send_other_messages",
                    "can_add_web_page_previews",
                    "can_change_info",
                    "can_invite_users",
                    "can_pin_messages",
                    "can_manage_topics",
                )
            },
            until_date=0,
        )
    elif status == "kicked":
        member["until_date"] = 0
    return member


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


async def _read_params(request: web.Request) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Parameters as PTB sends them (form fields, JSON-encoded unless plain strings)."""
    raw: dict[str, str] = {}
    uploads: dict[str, bytes] = {}
    if request.content_type == "application/json":
        return dict(await request.json()), uploads
    if request.content_type.startswith("multipart/"):
        reader = await request.multipart()
        async for part in reader:
            if not isinstance(part, BodyPartReader) or part.name is None:
                continue
            if getattr(part, "filename", None):
                uploads[part.name] = bytes(await part.read())
                uploads[f"{part.name}{FILENAME_SUFFIX}"] = str(part.filename).encode()
            else:
                raw[part.name] = await part.text()
    else:
        raw.update({k: str(v) for k, v in (await request.post()).items()})
        raw.update({k: v for k, v in request.query.items() if k not in raw})
    params: dict[str, Any] = {}
    for key, value in raw.items():
        if key in _STRING_PARAMS:
            params[key] = value
            continue
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params, uploads
