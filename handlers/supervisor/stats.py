"""``/stats [period]`` (supervisors): the desk's figures for ``today``, ``7d`` (default), ``30d``,
``month`` or ``YYYY-MM-DD..YYYY-MM-DD``, each with its change against the previous period of the
same length, and buttons that list what is behind a figure; ``/stats chart [period]`` draws
them. Figures come from ``crm_core.services.analytics`` (SQL aggregates)."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ParseMode

from crm_core.charts import render_stats_chart
from crm_core.periods import Period, Window, parse_period
from crm_core.services.analytics import FIGURES, DeskReport, daily_series, desk_report
from crm_core.services.drilldown import behind_figure
from handlers.core.callbacks import CallbackDataError, Prefix, build, parse
from handlers.core.context import DeskContext
from handlers.core.format import format_when, status_label
from handlers.core.guards import supervisor_only
from handlers.core.keyboards import chunked
from handlers.core.send import Priority, answer_query, release, reply, send_file
from handlers.supervisor.figures import KINDS, with_change

BEHIND_LIMIT = 15
# The buttons under /stats (figures of crm_core.services.drilldown; labels:
# supervisor_behind_label).
BEHIND_BUTTONS = (
    "opened", "open", "sla_breached", "reopened", "handoffs_unclaimed", "csat_low",
    "bot_unhelpful", "bot_unanswered",
)  # fmt: skip


def period_of(context: DeskContext, text: str | None) -> Period:
    """The period named (a bad one raises InvalidPeriod: the accepted forms, said by the
    central error handler)."""
    return parse_period(text, time_zone=context.deps.config.timezone)


def report_view(context: DeskContext, report: DeskReport) -> dict[str, Any]:
    zone = context.deps.config.zone
    current = report.period.current
    days = max(1, round(current.length.total_seconds() / 86400))
    figures = {
        name: with_change(change, KINDS.get(name, "count"))
        for name, change in report.changes().items()
    }
    f = report.current
    return {
        "label": report.period.label,
        "span": f"{format_when(current.start, zone)} – {format_when(current.end, zone)}",
        "previous": f"{days} day{'s' if days != 1 else ''}",
        "f": figures,
        "by_category": sorted(f.by_category.items(), key=lambda kv: -kv[1]),
        "by_status": [(status_label(k), n) for k, n in f.by_status.items() if n],
        "by_severity": [(k, n) for k, n in f.by_severity.items() if n],
    }


def behind_label(context: DeskContext, figure: str) -> str:
    return context.deps.texts.render_plain("supervisor_behind_label", context.lang, figure=figure)


def behind_keyboard(context: DeskContext, window: Window) -> InlineKeyboardMarkup:
    # Whole seconds keep the data short; rounded outwards so the last second's rows stay in.
    start, end = math.floor(window.start.timestamp()), math.ceil(window.end.timestamp())
    buttons = [
        InlineKeyboardButton(
            behind_label(context, figure),
            callback_data=build(Prefix.STATS_BEHIND, figure, start, end),
        )
        for figure in BEHIND_BUTTONS
    ]
    return InlineKeyboardMarkup(chunked(buttons, 2))


@supervisor_only
async def on_stats(update: Update, context: DeskContext) -> None:
    args = list(context.args or [])
    if args and args[0].lower() == "chart":
        await send_chart(update, context, " ".join(args[1:]) or None)
        return
    period = period_of(context, " ".join(args) or None)
    report = await desk_report(session=context.session, period=period)
    await reply(
        context,
        "supervisor_stats",
        r=report_view(context, report),
        reply_markup=behind_keyboard(context, period.current),
    )


async def send_chart(update: Update, context: DeskContext, text: str | None) -> None:
    period = period_of(context, text)
    series = await daily_series(
        session=context.session, window=period.current, time_zone=context.deps.config.timezone
    )
    await release(context)
    # matplotlib takes a good part of a second: off the event loop, so other chats go on.
    png = await asyncio.to_thread(render_stats_chart, series, title=f"deskbot — {period.label}")
    chat = update.effective_chat
    assert chat is not None
    message = update.effective_message
    thread = message.message_thread_id if message and message.is_topic_message else None
    await send_file(
        context,
        "send_photo",
        priority=Priority.AGENTS,
        chat_id=chat.id,
        photo=png,
        caption=context.deps.texts.render(
            "supervisor_chart_caption", context.lang, label=period.label
        ),
        parse_mode=ParseMode.HTML.value,
        message_thread_id=thread,
    )


@supervisor_only
async def on_behind(update: Update, context: DeskContext) -> None:
    """A figure's button: the complaints, conversations or answers behind it."""
    await answer_query(update)
    try:
        data = parse(update.callback_query.data if update.callback_query else None)
        figure = data.arg(0)
        start, end = data.int_arg(1), data.int_arg(2)
    except CallbackDataError:
        return
    window = Window(datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC))
    found = await behind_figure(
        session=context.session, figure=figure, window=window, limit=BEHIND_LIMIT
    )
    zone = context.deps.config.zone
    items = [
        {
            "label": item.label,
            "status": status_label(item.status) if item.status else None,
            "assignee": item.assignee,
            "at": format_when(item.at, zone),
            "detail": item.detail,
        }
        for item in found.items
    ]
    title = behind_label(context, figure)
    await reply(
        context,
        "supervisor_behind",
        title=title,
        label=f"{format_when(window.start, zone)} – {format_when(window.end, zone)}",
        total=found.total,
        items=items,
        more=max(0, found.total - len(items)),
    )


__all__ = ["FIGURES", "on_behind", "on_stats"]
