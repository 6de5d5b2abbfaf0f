"""Small pieces shared by the customer-side handlers (knowledge base, complaints, data, /human):
button presses, keyboards of "what next" choices, and friendly dates."""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import TelegramError

from crm_core.clock import as_utc
from handlers.callbacks import MenuAction, Prefix, build, menu
from handlers.deps import DeskContext

log = logging.getLogger(__name__)

MAX_BUTTON_LABEL = 60


async def answer_query(update: Update, text: str | None = None) -> None:
    """Stop the button's spinner (optionally with a short toast). Never raises: a query answered
    too late is not worth failing the handler for."""
    query = update.callback_query
    if query is None:
        return
    with contextlib.suppress(TelegramError):
        await query.answer(text)


async def drop_buttons(update: Update) -> None:
    """Remove the inline keyboard of the message whose button was pressed, so it cannot be
    pressed again (best effort: the message may be too old to edit)."""
    query = update.callback_query
    if query is None or query.message is None:
        return
    try:
        await query.edit_message_reply_markup(reply_markup=None)
    except TelegramError as error:
        log.debug("could not remove buttons: %s", error)


def button_label(text: str, limit: int = MAX_BUTTON_LABEL) -> str:
    """A button label short enough to read on a phone."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def inline_button(context: DeskContext, label_template: str, data: str) -> InlineKeyboardButton:
    label = context.deps.texts.render_plain(f"buttons/{label_template}", context.lang)
    return InlineKeyboardButton(button_label(label), callback_data=data)


def next_steps_keyboard(context: DeskContext) -> InlineKeyboardMarkup:
    """ "Talk to a person" / "File a complaint": what we offer when self-service did not help."""
    return InlineKeyboardMarkup(
        [
            [inline_button(context, "human", menu(MenuAction.HUMAN))],
            [inline_button(context, "complaint", menu(MenuAction.COMPLAINT))],
        ]
    )


def safe_build(prefix: Prefix, *args: object) -> str | None:
    """Callback data, or None when it would not fit Telegram's 64 bytes (e.g. a very long
    article id): the caller leaves that button out rather than failing the whole answer."""
    try:
        return build(prefix, *args)
    except ValueError:
        log.warning("callback data too long for %s %s; button left out", prefix, args)
        return None


def format_when(moment: datetime | None) -> str:
    """``24 Nov 2026, 14:05 UTC`` — unambiguous for customers anywhere."""
    if moment is None:
        return "—"
    return as_utc(moment).strftime("%d %b %Y, %H:%M UTC")


def format_hours(hours: float) -> str:
    """``24 hours``, ``1 hour``, ``90 minutes``, ``3 days`` for an SLA."""
    if hours < 1:
        minutes = round(hours * 60)
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    if hours >= 48 and hours % 24 == 0:
        days = int(hours // 24)
        return f"{days} days"
    whole = int(hours) if float(hours).is_integer() else round(hours, 1)
    return f"{whole} hour{'s' if whole != 1 else ''}"
