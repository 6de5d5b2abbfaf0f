"""The desk's work, for supervisors: ``/sla`` (breached or breaching within hours, most urgent
first), ``/agents [period]`` (per agent) and ``/export [period]`` (the period's complaints with
their events and its conversations, as two CSV files)."""

from __future__ import annotations

from datetime import timedelta

from telegram import Update

from crm_core.services.analytics import agent_figures, sla_watchlist
from crm_core.services.export import export_csv_text
from handlers.core.context import DeskContext
from handlers.core.format import format_wait, status_label
from handlers.core.guards import supervisor_only
from handlers.core.send import Priority, release, reply, send_file
from handlers.supervisor.figures import value
from handlers.supervisor.stats import period_of

SLA_WITHIN = timedelta(hours=4)


@supervisor_only
async def on_sla(update: Update, context: DeskContext) -> None:
    watch = await sla_watchlist(session=context.session, within=SLA_WITHIN)
    items = [
        {
            "reference": i.reference,
            "severity": i.severity,
            "status": status_label(i.status),
            "assignee": i.assignee_name,
            "age": format_wait(i.age),
            "breached": i.breached,
            "overdue": format_wait(abs(i.overdue)),
        }
        for i in watch.items
    ]
    await reply(
        context,
        "supervisor_sla",
        breached=watch.breached,
        breaching=watch.breaching,
        within=format_wait(watch.within),
        items=items,
    )


@supervisor_only
async def on_agents(update: Update, context: DeskContext) -> None:
    period = period_of(context, " ".join(context.args or []) or None)
    figures = await agent_figures(session=context.session, window=period.current)
    rows = [
        {
            "name": a.name,
            "active": a.active,
            "claimed": a.handoffs_claimed,
            "resolved": a.complaints_resolved,
            "first_response": value(
                a.first_response.median.total_seconds() if a.first_response.median else None,
                "duration",
            ),
            "rating": (
                f"{a.rating_average:.1f} from {a.rating_count}" if a.rating_average else "—"
            ),
        }
        for a in figures
    ]
    await reply(context, "supervisor_agents", label=period.label, agents=rows)


@supervisor_only
async def on_export(update: Update, context: DeskContext) -> None:
    period = period_of(context, " ".join(context.args or []) or None)
    complaints, conversations = await export_csv_text(
        session=context.session, window=period.current
    )
    await release(context)
    chat = update.effective_chat
    assert chat is not None
    stem = period.label.replace(" ", "_").replace("..", "_to_")
    for name, text in (
        (f"complaints_{stem}.csv", complaints),
        (f"conversations_{stem}.csv", conversations),
    ):
        await send_file(
            context,
            "send_document",
            priority=Priority.AGENTS,
            chat_id=chat.id,
            document=text.encode(),
            filename=name,
        )
    await reply(
        context,
        "supervisor_export",
        label=period.label,
        complaints=max(0, complaints.count("\n") - 1),
        conversations=max(0, conversations.count("\n") - 1),
    )
