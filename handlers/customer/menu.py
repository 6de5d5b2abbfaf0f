"""The customer's menu: /start, /help, the persistent menu keyboard and its labels, the command
menu, the "what next" offer, and the fallbacks for what nobody else handled.

What each menu action does lives with the action (``menu_actions`` routes the inline twins).
:func:`build_fallback_handlers` must be registered after every other conversation handler
(``handlers/__init__.py`` does): the fallbacks match any command / non-text message.
"""

from __future__ import annotations

from typing import Any

from telegram import (
    InlineKeyboardMarkup,
    KeyboardButton,
    ReplyKeyboardMarkup,
    Update,
)
from telegram.ext import BaseHandler, CommandHandler, MessageHandler, filters

from handlers.core.callbacks import MenuAction, menu
from handlers.core.commands import supervisor_menu
from handlers.core.config import DeskConfig
from handlers.core.context import DeskContext
from handlers.core.inbound import message_content_type
from handlers.core.keyboards import inline_button
from handlers.core.send import reply
from handlers.core.texts import Texts

MENU_LAYOUT: tuple[tuple[MenuAction, ...], ...] = (
    (MenuAction.ASK, MenuAction.COMPLAINT),
    (MenuAction.MY_COMPLAINTS, MenuAction.HUMAN),
    (MenuAction.SHARE_PHONE,),
)


def menu_button_label(texts: Texts, action: MenuAction, lang: str | None) -> str:
    return texts.render_plain(f"buttons/{action.value}", lang)


def menu_keyboard(texts: Texts, lang: str | None) -> ReplyKeyboardMarkup:
    """The customer's persistent menu. "Share my phone" asks Telegram for the contact."""
    rows = [
        [
            KeyboardButton(
                menu_button_label(texts, action, lang),
                request_contact=action is MenuAction.SHARE_PHONE or None,
            )
            for action in row
        ]
        for row in MENU_LAYOUT
    ]
    return ReplyKeyboardMarkup(rows, resize_keyboard=True, is_persistent=True)


def menu_labels(texts: Texts, action: MenuAction) -> list[str]:
    """The button's label in every shipped language (a press arrives as this text)."""
    return sorted({menu_button_label(texts, action, lang) for lang in texts.languages()})


def menu_button_filter(texts: Texts, action: MenuAction) -> filters.BaseFilter:
    """Matches a private message that is a press of the menu button ``action``."""
    return filters.ChatType.PRIVATE & filters.Text(menu_labels(texts, action))


def menu_action_for_text(texts: Texts, text: str | None) -> MenuAction | None:
    for action in MenuAction:
        if text in menu_labels(texts, action):
            return action
    return None


def next_steps_keyboard(context: DeskContext) -> InlineKeyboardMarkup:
    """ "Talk to a person" / "File a complaint": what we offer when self-service did not help."""
    return InlineKeyboardMarkup(
        [
            [inline_button(context, "human", menu(MenuAction.HUMAN))],
            [inline_button(context, "complaint", menu(MenuAction.COMPLAINT))],
        ]
    )


def complaint_offer_keyboard(context: DeskContext) -> InlineKeyboardMarkup:
    """Just "File a complaint" (when no person can be reached)."""
    return InlineKeyboardMarkup([[inline_button(context, "complaint", menu(MenuAction.COMPLAINT))]])


async def start(update: Update, context: DeskContext) -> None:
    user = update.effective_user
    first_name = user.first_name if user else ""
    keyboard = menu_keyboard(context.deps.texts, context.lang)
    await reply(context, "greeting", first_name=first_name, reply_markup=keyboard)


async def help_command(update: Update, context: DeskContext) -> None:
    await reply(context, "help")
    user = update.effective_user
    if user is not None and context.deps.config.is_supervisor(user.id):
        commands = [(c.command, c.description) for c in supervisor_menu(context.deps.texts)]
        await reply(context, "supervisor_help", commands=commands)


async def ask_prompt(update: Update, context: DeskContext) -> None:
    await reply(context, "ask_prompt")


async def unknown_command(update: Update, context: DeskContext) -> None:
    message = update.effective_message
    text = message.text if message and message.text else "/"
    await reply(context, "unknown_command", command=text.split()[0].split("@")[0])


async def unsupported_content(update: Update, context: DeskContext) -> None:
    message = update.effective_message
    content = message_content_type(message) if message else "other"
    await reply(context, "unsupported_content", content=content)


def build_handlers(config: DeskConfig, texts: Texts) -> list[BaseHandler[Any, Any, Any]]:
    private = filters.ChatType.PRIVATE
    return [
        CommandHandler("start", start, filters=private),
        CommandHandler("help", help_command, filters=private),
        MessageHandler(menu_button_filter(texts, MenuAction.ASK), ask_prompt),
    ]


def build_fallback_handlers(config: DeskConfig, texts: Texts) -> list[BaseHandler[Any, Any, Any]]:
    private_new = filters.ChatType.PRIVATE & filters.UpdateType.MESSAGE
    return [
        MessageHandler(private_new & filters.COMMAND, unknown_command),
        MessageHandler(private_new & ~filters.TEXT, unsupported_content),
    ]
