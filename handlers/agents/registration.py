"""The agents' side: the agents' group, where people pick conversations up.

``announce`` (posting cards into topics or as replies, recovering when Telegram says no),
``cards`` (building and refreshing cards and their buttons), ``threads`` (which conversation a
group message belongs to), ``relay`` (customer <-> agents), ``handoff_commands`` (claim,
/resolve), ``notes`` (/note, ``!``, complaint comments), ``complaint_commands`` (/status,
/assign, /severity, card buttons), ``lookup`` (/customer), ``queue`` (/queue), ``reminders``
(the sweeper that re-announces and escalates), ``setup`` (menu, rights, migration).
"""

from __future__ import annotations

from typing import Any

from telegram.ext import (
    BaseHandler,
    CallbackQueryHandler,
    ChatMemberHandler,
    CommandHandler,
    MessageHandler,
    filters,
)

from handlers.agents import (
    assignment,
    cards,
    complaint_commands,
    handoff_commands,
    lookup,
    notes,
    queue,
    relay,
    setup,
    snippets,
)
from handlers.core.callbacks import Prefix, pattern
from handlers.core.config import DeskConfig
from handlers.core.membership import on_member_change


def build_handlers(config: DeskConfig) -> list[BaseHandler[Any, Any, Any]]:
    """The agents' group's conversation handlers (none without an agents' group)."""
    if config.agent_chat_id is None:
        return []
    groups = filters.ChatType.GROUPS
    return [
        MessageHandler(filters.StatusUpdate.MIGRATE, setup.on_migration),
        ChatMemberHandler(on_member_change, ChatMemberHandler.CHAT_MEMBER),
        CallbackQueryHandler(handoff_commands.on_claim, pattern=pattern(Prefix.HANDOFF_CLAIM)),
        CallbackQueryHandler(cards.on_label_button, pattern=pattern(Prefix.NOOP)),
        CallbackQueryHandler(
            complaint_commands.on_complaint_button, pattern=pattern(Prefix.COMPLAINT_STATUS)
        ),
        CallbackQueryHandler(
            complaint_commands.on_complaint_button, pattern=pattern(Prefix.COMPLAINT_ASSIGN)
        ),
        CommandHandler("help", setup.on_help, filters=groups),
        CommandHandler("note", notes.on_note, filters=groups),
        CommandHandler("resolve", handoff_commands.on_resolve, filters=groups),
        CommandHandler("status", complaint_commands.on_status_command, filters=groups),
        CommandHandler("assign", complaint_commands.on_assign_command, filters=groups),
        CommandHandler("severity", complaint_commands.on_severity_command, filters=groups),
        CommandHandler("customer", lookup.on_customer_command, filters=groups),
        CommandHandler("queue", queue.on_queue, filters=groups),
        CommandHandler("snippets", snippets.on_snippets, filters=groups),
        CommandHandler("away", assignment.on_away, filters=groups),
        CommandHandler("back", assignment.on_back, filters=groups),
        CommandHandler("s", snippets.on_send_snippet, filters=groups),
        MessageHandler(
            groups & filters.UpdateType.MESSAGE & ~filters.COMMAND, relay.on_group_message
        ),
    ]


def build_relay_handlers() -> list[BaseHandler[Any, Any, Any]]:
    """For ``Group.RELAY``: a customer's message in an open handoff goes to the agents."""
    return relay.build_customer_handlers()
