"""Supervisors' commands (only ``supervisor_ids``; in a private chat or the agents' group):

- ``/stats [days]``: complaint and handoff statistics for the last ``days`` (default 30; ``all``
  for everything), from ``crm_core.services.stats.complaint_stats``.
- ``/reload_kb``: reload the knowledge base; on any problem the previous version stays live and
  the problems are listed.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

from telegram import Update
from telegram.ext import BaseHandler, CommandHandler, filters

from crm_core.clock import utcnow
from crm_core.models import ComplaintStatus
from crm_core.services.stats import ComplaintStats, DurationSummary, complaint_stats
from handlers.context_card import format_wait
from handlers.deps import DeskContext
from handlers.membership import in_agent_chat
from handlers.messaging import reply

log = logging.getLogger(__name__)

DEFAULT_DAYS = 30
MAX_DAYS = 3650
MAX_PROBLEMS_SHOWN = 10


async def _allowed(update: Update, context: DeskContext) -> bool:
    """Supervisors only, and only in a private chat or the agents' group."""
    user, chat = update.effective_user, update.effective_chat
    if user is None or chat is None:
        return False
    if chat.type != chat.PRIVATE and await in_agent_chat(update, context) is None:
        return False  # another group the bot sits in: stay quiet
    if not context.deps.config.is_supervisor(user.id):
        await reply(context, "supervisor_refused")
        return False
    return True


def parse_days(args: list[str]) -> int | str | None:
    """Days to look back: None = all time; a string = what was wrong."""
    if not args:
        return DEFAULT_DAYS
    value = args[0].strip().lower()
    if value in {"all", "0"}:
        return None
    # isdecimal, not isdigit: "²" is a digit but int() refuses it.
    if not value.isdecimal() or not 1 <= int(value) <= MAX_DAYS:
        return value
    return int(value)


def _duration(summary: DurationSummary) -> dict[str, Any]:
    return {
        "count": summary.count,
        "median": format_wait(summary.median) if summary.median is not None else None,
        "average": format_wait(summary.average) if summary.average is not None else None,
    }


def stats_view(stats: ComplaintStats) -> dict[str, Any]:
    return {
        "total": stats.total,
        "by_status": [(s.value.replace("_", " "), n) for s, n in stats.by_status.items()],
        "by_category": [(c.value, n) for c, n in stats.by_category.items() if n],
        "by_severity": [(s.value, n) for s, n in stats.by_severity.items()],
        "first_response": _duration(stats.first_response),
        "resolution": _duration(stats.resolution),
        "sla_breaches": stats.sla_breaches,
        "sla_breached_open": stats.sla_breached_open,
        "sla_breached_resolved": stats.sla_breached_resolved,
        "reopen_rate": f"{stats.reopen_rate:.0%}" if stats.reopen_rate is not None else None,
        "reopened": stats.reopened,
        "csat_average": f"{stats.csat_average:.1f}" if stats.csat_average is not None else None,
        "csat_count": stats.csat_count,
        "handoffs": [(s.value, n) for s, n in stats.handoffs_by_status.items()],
        "wait_to_claim": _duration(stats.wait_to_claim),
        "unresolved": stats.by_status[ComplaintStatus.open]
        + stats.by_status[ComplaintStatus.in_progress],
    }


async def on_stats(update: Update, context: DeskContext) -> None:
    if not await _allowed(update, context):
        return
    days = parse_days(list(context.args or []))
    if isinstance(days, str):
        await reply(context, "supervisor_stats_usage", value=days)
        return
    now = utcnow()
    since = now - timedelta(days=days) if days is not None else None
    stats = await complaint_stats(session=context.session, since=since, now=now)
    await reply(context, "supervisor_stats", days=days, s=stats_view(stats))


async def on_reload_kb(update: Update, context: DeskContext) -> None:
    if not await _allowed(update, context):
        return
    holder = context.deps.kb_holder
    if holder is None:
        await reply(context, "supervisor_reload_kb", applied=False, count=0, problems=[])
        return
    result = await asyncio.to_thread(holder.reload)
    log.info("/reload_kb by %s: %s", update.effective_user, result.summary())
    problems = [f"{p.path.name}:{p.line}: {p.reason}" for p in result.problems]
    await reply(
        context,
        "supervisor_reload_kb",
        applied=result.applied,
        count=result.article_count,
        problems=problems[:MAX_PROBLEMS_SHOWN],
        more=max(0, len(problems) - MAX_PROBLEMS_SHOWN),
    )


def build_handlers() -> list[BaseHandler[Any, Any, Any]]:
    """Group-0 handlers, for private chats and groups alike (checked inside)."""
    chats = filters.ChatType.PRIVATE | filters.ChatType.GROUPS
    return [
        CommandHandler("stats", on_stats, filters=chats),
        CommandHandler("reload_kb", on_reload_kb, filters=chats),
    ]
