"""/human: ask for a person. Opens a Handoff (one per customer at a time) and announces it to
the agents' group; while it is open, the agents' side relays the customer's messages."""

from __future__ import annotations

from typing import Any

from telegram import InlineKeyboardMarkup, Update
from telegram.ext import BaseHandler, CommandHandler, MessageHandler, filters

from crm_core.services.handoffs import open_handoff
from handlers import announce
from handlers.basic import menu_button_filter
from handlers.callbacks import MenuAction, menu
from handlers.config import DeskConfig
from handlers.customer_common import inline_button
from handlers.deps import DeskContext
from handlers.membership import agent_chat_id
from handlers.messaging import reply
from handlers.texts import Texts


async def request_human(update: Update, context: DeskContext) -> None:
    customer_id = context.customer_id
    assert customer_id is not None
    opened = await open_handoff(
        session=context.session,
        customer_id=customer_id,
        reminder_after=context.deps.config.handoff_reminder_delay,
    )
    handoff_id = opened.handoff.id
    assert handoff_id is not None
    if not opened.created:
        await reply(context, "handoff_already_open", handoff_id=handoff_id)
        return
    if await agent_chat_id(context) is None:
        # No agents' group is configured: promising a reply would be a lie. The request stays
        # recorded (and is announced in full once a group is set up and the customer writes).
        await reply(context, "handoff_no_agents", reply_markup=complaint_keyboard(context))
        return
    await reply(context, "handoff_opened", handoff_id=handoff_id)
    await announce.announce_handoff(context, handoff_id=handoff_id)


def complaint_keyboard(context: DeskContext) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([[inline_button(context, "complaint", menu(MenuAction.COMPLAINT))]])


def build_handlers(config: DeskConfig, texts: Texts) -> list[BaseHandler[Any, Any, Any]]:
    # New messages only: editing an old "/human" must not ask again.
    private = filters.ChatType.PRIVATE & filters.UpdateType.MESSAGE
    return [
        CommandHandler("human", request_human, filters=private),
        MessageHandler(private & menu_button_filter(texts, MenuAction.HUMAN), request_human),
    ]
