"""The customer's side: a private chat with the bot.

``menu`` (/start, /help, the menu keyboard, fallbacks), ``kb`` (questions answered from the
knowledge base, with ``small_talk``), ``complaint_flow``, ``cancel``, ``handoff`` (/human),
``identity`` (phone, e-mail), ``my_data`` (/mycomplaints, /mydata, /forgetme), ``csat``
(rating a closed conversation), ``menu_actions`` (the inline twins of the menu buttons).
"""

from __future__ import annotations

from typing import Any

from telegram.ext import BaseHandler, MessageHandler, filters

from handlers.core.config import DeskConfig
from handlers.core.flows import FlowName, MessageStep, flow_dispatcher
from handlers.core.texts import Texts
from handlers.customer import (
    cancel,
    complaint_flow,
    csat,
    handoff,
    identity,
    kb,
    marketing,
    menu,
    menu_actions,
    my_data,
)
from handlers.supervisor import campaigns

# Which step function takes a chat's next message, by the flow that owns the chat.
FLOW_STEPS: dict[str, MessageStep] = {
    FlowName.COMPLAINT: complaint_flow.take_message,
    FlowName.CSAT: csat.take_comment,
    FlowName.CAMPAIGN: campaigns.take_message,  # a supervisor writing /campaign new
}


def build_flow_handlers() -> list[BaseHandler[Any, Any, Any]]:
    """For ``Group.FLOWS``: the flow dispatcher (new private messages; a shared contact is for
    the bot, commands skip a rating's comment)."""
    messages = filters.ChatType.PRIVATE & filters.UpdateType.MESSAGE
    return [
        MessageHandler(messages & ~filters.COMMAND & ~filters.CONTACT, flow_dispatcher(FLOW_STEPS)),
        *csat.build_flow_handlers(),
    ]


def build_start_handlers(config: DeskConfig, texts: Texts) -> list[BaseHandler[Any, Any, Any]]:
    """/start, /help and "ask a question": first among the conversation handlers."""
    return menu.build_handlers(config, texts)


def build_handlers(config: DeskConfig, texts: Texts) -> list[BaseHandler[Any, Any, Any]]:
    """The customer's conversation handlers, in order; ``kb`` last: it takes any plain text."""
    return [
        *csat.build_handlers(),
        *identity.build_handlers(config, texts),
        *complaint_flow.build_handlers(config, texts),
        *cancel.build_handlers(),
        *handoff.build_handlers(config, texts),
        *my_data.build_handlers(config, texts),
        *marketing.build_handlers(),
        *menu_actions.build_handlers(),
        *kb.build_handlers(config, texts),
    ]


def build_fallback_handlers(config: DeskConfig, texts: Texts) -> list[BaseHandler[Any, Any, Any]]:
    """After every other conversation handler: unknown commands, unsupported content."""
    return menu.build_fallback_handlers(config, texts)
