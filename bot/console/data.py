"""What each console page shows, gathered in one small function per page (so that richer
analytics in crm_core can replace one without touching the routes or templates)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, or_
from sqlalchemy.orm import aliased
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.clock import utcnow
from crm_core.models import (
    Campaign,
    Complaint,
    ComplaintCategory,
    ComplaintStatus,
    Customer,
    Direction,
    Interaction,
    InteractionKind,
    Severity,
)
from crm_core.services.campaigns import campaign_report, list_campaigns
from crm_core.services.complaints import complaint_history, get_complaint, list_open_complaints
from crm_core.services.customer360 import Customer360, get_customer_360
from crm_core.services.customers import find_customers
from crm_core.services.handoffs import list_waiting_handoffs
from crm_core.services.stats import ComplaintStats, complaint_stats
from handlers.core.format import format_money

TIMELINE_LIMIT = 500
LIST_LIMIT = 200
GAP_SCAN_LIMIT = 5000


@dataclass(frozen=True)
class Dashboard:
    days: int
    stats: ComplaintStats
    sla: list[dict[str, Any]]
    waiting: list[dict[str, Any]]
    open_complaints: list[Complaint]


async def dashboard(session: AsyncSession, days: int) -> Dashboard:
    now = utcnow()
    stats = await complaint_stats(session=session, since=now - timedelta(days=days), now=now)
    open_complaints = await list_open_complaints(session=session, limit=LIST_LIMIT)
    sla = sorted(
        (
            {
                "complaint": c,
                "due": c.sla_due_at,
                "breached": c.sla_due_at is not None and c.sla_due_at < now,
                "left": (c.sla_due_at - now) if c.sla_due_at is not None else None,
            }
            for c in open_complaints
        ),
        key=lambda row: (row["due"] is None, row["due"] or now),
    )
    handoffs = await list_waiting_handoffs(session=session)
    names = await _names(session, [h.customer_id for h in handoffs])
    waiting = [
        {"handoff": h, "customer": names.get(h.customer_id), "waited": now - h.requested_at}
        for h in handoffs
    ]
    return Dashboard(days, stats, sla, waiting, open_complaints)


async def _names(session: AsyncSession, ids: list[int | None]) -> dict[int | None, str]:
    wanted = [i for i in ids if i is not None]
    if not wanted:
        return {}
    rows = await session.exec(select(Customer).where(col(Customer.id).in_(wanted)))
    names = {c.id: c.name or f"Customer #{c.id}" for c in rows.all()}
    await session.commit()
    return dict(names)


@dataclass(frozen=True)
class ComplaintFilter:
    q: str = ""
    status: str = ""
    category: str = ""
    severity: str = ""

    @classmethod
    def from_query(cls, query: Any) -> ComplaintFilter:
        def pick(name: str, allowed: set[str]) -> str:
            value = str(query.get(name, "")).strip()
            return value if value in allowed else ""

        return cls(
            q=str(query.get("q", "")).strip()[:200],
            status=pick("status", {s.value for s in ComplaintStatus}),
            category=pick("category", {c.value for c in ComplaintCategory}),
            severity=pick("severity", {s.value for s in Severity}),
        )


async def complaints(session: AsyncSession, wanted: ComplaintFilter) -> list[dict[str, Any]]:
    stmt = select(Complaint, Customer).join(
        Customer, col(Complaint.customer_id) == col(Customer.id), isouter=True
    )
    if wanted.status:
        stmt = stmt.where(Complaint.status == ComplaintStatus(wanted.status))
    if wanted.category:
        stmt = stmt.where(Complaint.category == ComplaintCategory(wanted.category))
    if wanted.severity:
        stmt = stmt.where(Complaint.severity == Severity(wanted.severity))
    if wanted.q:
        escaped = wanted.q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        like = f"%{escaped}%"
        stmt = stmt.where(
            or_(
                func.lower(col(Complaint.reference)).like(like, escape="\\"),
                func.lower(col(Complaint.description)).like(like, escape="\\"),
                func.lower(col(Customer.name)).like(like, escape="\\"),
            )
        )
    stmt = stmt.order_by(col(Complaint.created_at).desc()).limit(LIST_LIMIT)
    rows = (await session.exec(stmt)).all()
    await session.commit()
    return [{"complaint": c, "customer": cu} for c, cu in rows]


async def complaint_detail(session: AsyncSession, reference: str) -> dict[str, Any]:
    complaint = await get_complaint(session=session, reference=reference)
    history = await complaint_history(session=session, reference=complaint.reference)
    names = await _names(session, [complaint.customer_id])
    return {
        "complaint": complaint,
        "history": history,
        "customer": names.get(complaint.customer_id),
    }


async def customers(session: AsyncSession, query: str) -> list[Customer]:
    if not query.strip():
        stmt = (
            select(Customer)
            .where(col(Customer.merged_into_id).is_(None), col(Customer.anonymized_at).is_(None))
            .order_by(col(Customer.last_seen_at).desc().nulls_last())
            .limit(50)
        )
        rows = list((await session.exec(stmt)).all())
        await session.commit()
        return rows
    return await find_customers(session=session, query=query, limit=50)


async def customer_360(session: AsyncSession, customer_id: int) -> Customer360:
    return await get_customer_360(
        session=session, customer_id=customer_id, interactions_limit=TIMELINE_LIMIT
    )


async def knowledge_gaps(session: AsyncSession, days: int) -> list[dict[str, Any]]:
    """Questions the knowledge base had no answer for, most asked first. The bot logs its
    "no answer" reply (``kb_none``); the question is the customer's message just before it."""
    since = utcnow() - timedelta(days=days)
    reply = aliased(Interaction)
    question = (
        select(Interaction.text)
        .where(
            Interaction.customer_id == reply.customer_id,
            Interaction.direction == Direction.inbound,
            col(Interaction.id) < reply.id,
        )
        .order_by(col(Interaction.id).desc())
        .limit(1)
        .scalar_subquery()
    )
    stmt = (
        select(question, reply.occurred_at)
        .where(reply.kind == InteractionKind.kb_none, reply.occurred_at >= since)
        .order_by(reply.occurred_at.desc())  # type: ignore[attr-defined]
        .limit(GAP_SCAN_LIMIT)
    )
    rows = (await session.exec(stmt)).all()
    await session.commit()
    gaps: dict[str, dict[str, Any]] = {}
    for text, when in rows:
        if not text or not text.strip():
            continue
        key = " ".join(text.lower().split())
        gap = gaps.setdefault(key, {"question": text.strip(), "count": 0, "last": when})
        gap["count"] += 1
    return sorted(gaps.values(), key=lambda g: (-g["count"], -g["last"].timestamp()))[:LIST_LIMIT]


async def campaign_reports(session: AsyncSession, limit: int = 20) -> list[dict[str, Any]]:
    """The latest campaigns, each with its report's figures ready to show."""
    return [
        await campaign_row(session, campaign)
        for campaign in await list_campaigns(session=session, limit=limit)
    ]


async def campaign_row(session: AsyncSession, campaign: Campaign) -> dict[str, Any]:
    """One campaign's report figures, ready to show."""
    assert campaign.id is not None
    report = await campaign_report(session=session, campaign_id=campaign.id)
    t, h = report.treatment, report.holdout
    return {
        "id": campaign.id,
        "name": campaign.name,
        "status": str(campaign.status),
        "started": report.window_start,
        "days": campaign.attribution_days,
        "t": t,
        "h": h,
        "presses": report.presses,
        "tied_replies": report.tied_replies,
        "tied_purchases": report.tied_purchases,
        "pending": report.pending,
        "unknown": report.unknown,
        "t_per": format_money(round(t.revenue_per_recipient), None),
        "h_per": format_money(round(h.revenue_per_recipient), None),
        "lift": _lift(report.revenue_lift),
        "conversion_lift": _lift(report.conversion_lift),
        "incremental": format_money(round(report.incremental_revenue_minor), None),
    }


def _lift(value: float | None) -> str:
    return f"{value:+.0%}" if value is not None else "—"
