"""Supervisors' commands (``DESKBOT_SUPERVISOR_IDS``; in a private chat or the agents' group):
``stats`` (/stats), ``knowledge_base`` (/reload_kb)."""

from __future__ import annotations

from typing import Any

from telegram.ext import BaseHandler, CommandHandler, filters

from handlers.agents import snippets
from handlers.supervisor import knowledge_base, stats


def build_handlers() -> list[BaseHandler[Any, Any, Any]]:
    """For private chats and groups alike (who and where is checked by ``@supervisor_only``)."""
    chats = filters.ChatType.PRIVATE | filters.ChatType.GROUPS
    return [
        CommandHandler("stats", stats.on_stats, filters=chats),
        CommandHandler("reload_kb", knowledge_base.on_reload_kb, filters=chats),
        CommandHandler("snippet", snippets.on_manage_snippet, filters=chats),
    ]
