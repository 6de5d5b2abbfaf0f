"""The customers, for supervisors: ``/segments`` (RFM scores and named segments with their share
of revenue, and the 80/20 line), ``/mvc`` (the most valuable customers with their open issues),
``/churn`` (who is at risk of leaving, and why; service recovery) and ``/gaps`` (questions the
knowledge base could not answer, grouped)."""

from __future__ import annotations

from telegram import Update

from crm_core.periods import parse_period
from crm_core.services.churn import churn_risks, service_recovery
from crm_core.services.gaps import knowledge_gaps
from crm_core.services.segments import most_valuable_customers, rfm_segments
from handlers.core.context import DeskContext
from handlers.core.format import display_name, format_date, format_when
from handlers.core.guards import supervisor_only
from handlers.core.send import reply
from handlers.supervisor.figures import money, share
from handlers.supervisor.stats import period_of

RECOVERY_PERIOD = "90d"


@supervisor_only
async def on_segments(update: Update, context: DeskContext) -> None:
    report = await rfm_segments(session=context.session)

    def scores(counts: dict[int, int]) -> str:
        return " ".join(f"{score}:{counts.get(score, 0)}" for score in range(1, 6))

    await reply(
        context,
        "supervisor_segments",
        days=report.window_days,
        snapshot=report.from_snapshot,
        as_of=format_when(report.now, context.deps.config.zone),
        customers=report.customers,
        revenue=money(report.revenue_minor),
        segments=[
            {
                "name": s.name.replace("_", " "),
                "customers": s.customers,
                "customer_share": share(s.customer_share),
                "revenue_share": share(s.revenue_share),
            }
            for s in report.segments
        ],
        top=report.top_customers,
        top_share=share(report.top_revenue_share),
        r=scores(report.r_scores),
        f=scores(report.f_scores),
        m=scores(report.m_scores),
    )


@supervisor_only
async def on_mvc(update: Update, context: DeskContext) -> None:
    found = await most_valuable_customers(session=context.session)
    rows = [
        {
            "name": display_name(c.name, c.customer_id),
            "segment": c.segment.replace("_", " "),
            "value": money(c.monetary_minor, c.currency),
            "frequency": c.frequency,
            "last": format_date(c.last_purchase_at),
            "complaints": c.open_complaints,
            "handoff": c.open_handoff,
        }
        for c in found
    ]
    await reply(context, "supervisor_mvc", customers=rows)


@supervisor_only
async def on_churn(update: Update, context: DeskContext) -> None:
    report = await churn_risks(session=context.session)
    period = parse_period(RECOVERY_PERIOD, time_zone=context.deps.config.timezone)
    recovery = await service_recovery(session=context.session, window=period.current)

    def rate(came_back: int, of: int) -> str:
        return share(came_back / of) if of else "—"

    await reply(
        context,
        "supervisor_churn",
        at_risk=report.at_risk,
        customers=[
            {
                "name": display_name(c.name, c.customer_id),
                "value": money(c.monetary_minor) if c.monetary_minor else None,
                "recency": c.recency_days,
                "reasons": c.reasons,
            }
            for c in report.customers
        ],
        label=period.label,
        resolved=recovery.resolved.complaints,
        resolved_back=recovery.resolved.came_back,
        resolved_rate=rate(recovery.resolved.came_back, recovery.resolved.complaints),
        unresolved=recovery.unresolved.complaints,
        unresolved_back=recovery.unresolved.came_back,
        unresolved_rate=rate(recovery.unresolved.came_back, recovery.unresolved.complaints),
    )


@supervisor_only
async def on_gaps(update: Update, context: DeskContext) -> None:
    period = period_of(context, " ".join(context.args or []) or None)
    report = await knowledge_gaps(session=context.session, window=period.current)
    await reply(
        context,
        "supervisor_gaps",
        label=period.label,
        unanswered=report.unanswered,
        groups=report.groups,
    )
