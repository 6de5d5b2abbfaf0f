"""``/stats [days]`` (supervisors, in a private chat or the agents' group): complaint and
handoff statistics for the last ``days`` (default 30; ``all`` for everything), from
``crm_core.services.stats.complaint_stats``."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from telegram import Update

from crm_core.clock import utcnow
from crm_core.models import ComplaintStatus
from crm_core.services.stats import ComplaintStats, DurationSummary, complaint_stats
from handlers.core.context import DeskContext
from handlers.core.format import format_wait, status_label
from handlers.core.guards import supervisor_only
from handlers.core.send import reply

DEFAULT_DAYS = 30
MAX_DAYS = 3650


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
        "by_status": [(status_label(s), n) for s, n in stats.by_status.items()],
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


@supervisor_only
async def on_stats(update: Update, context: DeskContext) -> None:
    days = parse_days(list(context.args or []))
    if isinstance(days, str):
        await reply(context, "supervisor_stats_usage", value=days)
        return
    now = utcnow()
    since = now - timedelta(days=days) if days is not None else None
    stats = await complaint_stats(session=context.session, since=since, now=now)
    await reply(context, "supervisor_stats", days=days, s=stats_view(stats))
