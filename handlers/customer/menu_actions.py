"""The inline twins of the menu buttons (``m:<action>``, e.g. under "no answer"): each action
goes to the entry point of its flow, the same one the menu button and the command use."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from telegram import Update
from telegram.ext import BaseHandler, CallbackQueryHandler

from handlers.core.callbacks import CallbackDataError, MenuAction, Prefix, parse, pattern
from handlers.core.context import DeskContext
from handlers.core.send import answer_query
from handlers.customer.complaint_flow import start_complaint
from handlers.customer.handoff import request_human
from handlers.customer.identity import share_phone_prompt
from handlers.customer.menu import ask_prompt
from handlers.customer.my_data import my_complaints

ACTIONS: dict[MenuAction, Callable[[Update, DeskContext], Awaitable[None]]] = {
    MenuAction.ASK: ask_prompt,
    MenuAction.COMPLAINT: start_complaint,
    MenuAction.MY_COMPLAINTS: my_complaints,
    MenuAction.HUMAN: request_human,
    MenuAction.SHARE_PHONE: share_phone_prompt,
}


async def on_menu(update: Update, context: DeskContext) -> None:
    await answer_query(update)
    if context.customer_id is None:  # forged onto a group message: nobody's request
        return
    try:
        action = MenuAction(
            parse(update.callback_query.data if update.callback_query else None).arg(0)
        )
    except (CallbackDataError, ValueError):
        return
    await ACTIONS[action](update, context)


def build_handlers() -> list[BaseHandler[Any, Any, Any]]:
    return [CallbackQueryHandler(on_menu, pattern=pattern(Prefix.MENU))]
