"""Inline buttons: labels from templates, callback data that always fits."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from telegram import InlineKeyboardButton

from handlers.core.callbacks import Prefix, build
from handlers.core.context import DeskContext
from handlers.core.format import button_label

log = logging.getLogger(__name__)


def inline_button(context: DeskContext, label_template: str, data: str) -> InlineKeyboardButton:
    """A button labelled by the template ``buttons/<label_template>`` in the chat's language."""
    label = context.deps.texts.render_plain(f"buttons/{label_template}", context.lang)
    return InlineKeyboardButton(button_label(label), callback_data=data)


def safe_build(prefix: Prefix, *args: object) -> str | None:
    """Callback data, or None when it would not fit Telegram's 64 bytes (e.g. a very long
    article id): the caller leaves that button out rather than failing the whole answer."""
    try:
        return build(prefix, *args)
    except ValueError:
        log.warning("callback data too long for %s %s; button left out", prefix, args)
        return None


def chunked(items: Sequence[Any], size: int) -> list[list[Any]]:
    """Rows of ``size`` (for keyboards)."""
    return [list(items[i : i + size]) for i in range(0, len(items), size)]
