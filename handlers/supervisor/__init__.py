"""Supervisors' commands (``DESKBOT_SUPERVISOR_IDS``; in a private chat or the agents' group):
``stats`` (/stats), ``knowledge_base`` (/reload_kb)."""

from __future__ import annotations

from typing import Any

from telegram import BotCommand
from telegram.ext import BaseHandler, CommandHandler, filters

from handlers.core.texts import Texts
from handlers.supervisor import knowledge_base, stats

# Supervisors' commands, in their menu and /help; descriptions: ``agent_cmd_<name>``.
SUPERVISOR_COMMANDS = ("stats", "reload_kb")


def supervisor_command_menu(texts: Texts) -> list[BotCommand]:
    return [
        BotCommand(name, texts.render_plain(f"agent_cmd_{name}")) for name in SUPERVISOR_COMMANDS
    ]


def build_handlers() -> list[BaseHandler[Any, Any, Any]]:
    """For private chats and groups alike (who and where is checked by ``@supervisor_only``)."""
    chats = filters.ChatType.PRIVATE | filters.ChatType.GROUPS
    return [
        CommandHandler("stats", stats.on_stats, filters=chats),
        CommandHandler("reload_kb", knowledge_base.on_reload_kb, filters=chats),
    ]
