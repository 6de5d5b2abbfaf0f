"""The emulator's messages as the page draws them: text as *segments* (plain strings with the
formatting that applies), never HTML. The page builds DOM nodes with ``textContent`` from them,
so nothing a customer or the bot writes can become markup in the browser."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

from bot.emulator import ApiError, FakeBotAPI, StoredMessage, parse_telegram_html

# Telegram's tags, by the mark the page styles them with.
_MARKS = {
    "b": "b", "strong": "b", "i": "i", "em": "i", "u": "u", "ins": "u", "s": "s",
    "strike": "s", "del": "s", "code": "code", "pre": "pre", "blockquote": "quote",
    "tg-spoiler": "spoiler", "span": "spoiler", "a": "a", "tg-emoji": "",
}  # fmt: skip
_SAFE_LINK_PREFIXES = ("https://", "http://", "tg://", "mailto:")


class _Segmenter(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, str | None]] = []
        self.segments: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        href = dict(attrs).get("href") if tag == "a" else None
        self.stack.append((_MARKS.get(tag, ""), href))

    def handle_endtag(self, tag: str) -> None:
        if self.stack:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        marks = sorted({mark for mark, _ in self.stack if mark})
        segment: dict[str, Any] = {"text": data}
        if marks:
            segment["marks"] = marks
        href = next((h for _, h in reversed(self.stack) if h), None)
        if href and href.lower().startswith(_SAFE_LINK_PREFIXES):
            segment["href"] = href
        self.segments.append(segment)


def segments(plain: str, html: str | None) -> list[dict[str, Any]]:
    """``html`` (what the bot sent) as segments when it was sent in HTML mode, else ``plain``.

    The emulator keeps the plain text Telegram shows and the raw text sent; when parsing the
    raw text as Telegram HTML gives the plain text, the formatting is real."""
    if html:
        try:
            parsed = parse_telegram_html(html)
        except ApiError:
            parsed = None
        if parsed == plain:
            segmenter = _Segmenter()
            segmenter.feed(html)
            segmenter.close()
            return segmenter.segments
    return [{"text": plain}] if plain else []


def _sender(emulator: FakeBotAPI, message: StoredMessage) -> dict[str, Any]:
    sender = message.data.get("from") or {}
    return {
        "id": sender.get("id"),
        "name": " ".join(
            part for part in (sender.get("first_name"), sender.get("last_name")) if part
        )
        or "Telegram",
        "is_bot": message.from_bot or sender.get("id") == emulator.bot_user.id,
    }


def _buttons(message: StoredMessage) -> list[list[dict[str, str]]]:
    rows = (message.reply_markup or {}).get("inline_keyboard") or []
    shown = []
    for row in rows:
        shown_row = []
        for button in row:
            entry = {"text": str(button.get("text", ""))}
            if "callback_data" in button:
                entry["data"] = str(button["callback_data"])
            elif str(button.get("url", "")).lower().startswith(_SAFE_LINK_PREFIXES):
                entry["url"] = str(button["url"])
            shown_row.append(entry)
        shown.append(shown_row)
    return shown


def _attachment(data: dict[str, Any]) -> dict[str, Any] | None:
    if data.get("photo"):
        return {"kind": "photo", "file_id": data["photo"][-1]["file_id"]}
    if data.get("document"):
        document = data["document"]
        return {
            "kind": "document",
            "file_id": document["file_id"],
            "name": str(document.get("file_name") or "file"),
        }
    if data.get("contact"):
        return {"kind": "contact", "phone": str(data["contact"].get("phone_number", ""))}
    if data.get("sticker"):
        return {"kind": "sticker", "emoji": str(data["sticker"].get("emoji", ""))}
    if data.get("voice"):
        return {"kind": "voice", "duration": int(data["voice"].get("duration", 0))}
    return None


def _service(data: dict[str, Any]) -> str | None:
    if "forum_topic_created" in data:
        return f"Topic created: {data['forum_topic_created'].get('name', '')}"
    if "migrate_to_chat_id" in data or "migrate_from_chat_id" in data:
        return "The group was upgraded to a supergroup"
    return None


def message_view(emulator: FakeBotAPI, message: StoredMessage) -> dict[str, Any]:
    data = message.data
    view: dict[str, Any] = {
        "id": message.message_id,
        "chat_id": message.chat_id,
        "thread_id": message.thread_id,
        "date": data.get("date"),
        "edited": "edit_date" in data,
        "sender": _sender(emulator, message),
        "segments": segments(message.text, message.html if message.from_bot else None),
        "buttons": _buttons(message),
        "attachment": _attachment(data),
        "service": _service(data),
    }
    reply = data.get("reply_to_message")
    if reply and reply.get("message_id") != message.thread_id:  # not just "in this topic"
        quoted = str(reply.get("text") or reply.get("caption") or "")
        view["reply_to"] = {"id": reply.get("message_id"), "text": quoted[:120]}
    return view


def current_keyboard(emulator: FakeBotAPI, chat_id: int) -> list[list[dict[str, Any]]] | None:
    """The reply keyboard the bot last set in a private chat (None once removed)."""
    for message in reversed(emulator.messages):
        if message.chat_id != chat_id or not message.from_bot or not message.reply_markup:
            continue
        markup = message.reply_markup
        if markup.get("remove_keyboard"):
            return None
        if "keyboard" in markup:
            return [[_keyboard_button(button) for button in row] for row in markup["keyboard"]]
    return None


def _keyboard_button(button: Any) -> dict[str, Any]:
    if isinstance(button, str):
        return {"text": button, "request_contact": False}
    return {
        "text": str(button.get("text", "")),
        "request_contact": bool(button.get("request_contact")),
    }
