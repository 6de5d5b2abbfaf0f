"""Supervisors' commands (``DESKBOT_SUPERVISOR_IDS``; in a private chat or the agents' group):
``stats`` (/stats and its chart and buttons), ``desk`` (/sla, /agents, /export), ``customers``
(/segments, /mvc, /churn, /gaps), ``campaigns`` (/campaign; sent by
``campaign_sender``'s sweeper), ``knowledge_base`` (/reload_kb), ``jobs`` (the analytics
refreshes run by the sweeper)."""

from __future__ import annotations

from typing import Any

from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler, filters

from handlers.agents import snippets
from handlers.core.callbacks import Prefix, pattern
from handlers.supervisor import campaigns, customers, desk, knowledge_base, stats


def build_handlers() -> list[BaseHandler[Any, Any, Any]]:
    """For private chats and groups alike (who and where is checked by ``@supervisor_only``)."""
    chats = filters.ChatType.PRIVATE | filters.ChatType.GROUPS
    return [
        CommandHandler("stats", stats.on_stats, filters=chats),
        CallbackQueryHandler(stats.on_behind, pattern=pattern(Prefix.STATS_BEHIND)),
        CommandHandler("sla", desk.on_sla, filters=chats),
        CommandHandler("agents", desk.on_agents, filters=chats),
        CommandHandler("export", desk.on_export, filters=chats),
        CommandHandler("segments", customers.on_segments, filters=chats),
        CommandHandler("mvc", customers.on_mvc, filters=chats),
        CommandHandler("churn", customers.on_churn, filters=chats),
        CommandHandler("gaps", customers.on_gaps, filters=chats),
        CommandHandler("reload_kb", knowledge_base.on_reload_kb, filters=chats),
        CommandHandler("snippet", snippets.on_manage_snippet, filters=chats),
        CommandHandler("campaign", campaigns.on_campaign, filters=chats),
        CallbackQueryHandler(campaigns.on_send_choice, pattern=pattern(Prefix.CAMPAIGN_SEND)),
    ]
