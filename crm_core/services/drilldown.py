"""What is behind a figure of /stats: the complaints, conversations or bot answers it counts,
for the buttons under the figures. Each list uses the same conditions as the figure in
``crm_core.services.analytics`` (newest first, paged with ``limit``/``offset``) and says how many
there are in all.

Figures (``FIGURE_NAMES``): ``opened``, ``resolved``, ``open``, ``sla_breached``, ``reopened``,
``category:<category>``, ``status:<status>``, ``severity:<severity>``; ``handoffs_requested``,
``handoffs_unclaimed``, ``csat_low`` (ratings 1-2); ``bot_unhelpful``, ``bot_unanswered``.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.clock import as_utc, utcnow
from crm_core.errors import InvalidInput
from crm_core.models import (
    Agent,
    Complaint,
    ComplaintCategory,
    ComplaintStatus,
    Handoff,
    Interaction,
    InteractionKind,
    Severity,
)
from crm_core.periods import Window
from crm_core.services._sql import unit_of_work
from crm_core.services.analytics import _breached, _filed_in, _requested_in
from crm_core.services.interaction_hours import helpful_flag

COMPLAINT_FIGURES = ("opened", "resolved", "open", "sla_breached", "reopened")
HANDOFF_FIGURES = ("handoffs_requested", "handoffs_unclaimed", "csat_low")
BOT_FIGURES = ("bot_unhelpful", "bot_unanswered")
GROUPED = {"category": ComplaintCategory, "status": ComplaintStatus, "severity": Severity}
FIGURE_NAMES = (
    *COMPLAINT_FIGURES,
    *(f"{group}:<value>" for group in GROUPED),
    *HANDOFF_FIGURES,
    *BOT_FIGURES,
)
LOW_RATING_MAX = 2


@dataclass(frozen=True)
class BehindItem:
    kind: str  # "complaint" | "handoff" | "interaction"
    id: int
    label: str  # complaint reference, "handoff #12", article title...
    customer_id: int | None
    at: datetime  # filed / requested / answered
    status: str | None = None
    assignee: str | None = None
    detail: str | None = None


@dataclass(frozen=True)
class BehindFigure:
    figure: str
    total: int
    items: list[BehindItem]


async def behind_figure(
    *,
    session: AsyncSession,
    figure: str,
    window: Window,
    now: datetime | None = None,
    limit: int = 10,
    offset: int = 0,
) -> BehindFigure:
    """The rows a figure counts; an unknown figure is an InvalidInput naming the known ones."""
    now = as_utc(now or utcnow())
    name = figure.strip().lower()
    async with unit_of_work(session):
        if name in HANDOFF_FIGURES:
            return await _handoffs(session, name, window, limit, offset)
        if name in BOT_FIGURES:
            return await _bot(session, name, window, limit, offset)
        return await _complaints(session, name, _complaint_filter(name, window, now), limit, offset)


def _complaint_filter(name: str, w: Window, now: datetime) -> list[Any]:
    resolved_at = col(Complaint.resolved_at)
    if name == "opened":
        return _filed_in(w)
    if name == "resolved":
        return [resolved_at >= w.start, resolved_at < w.end]
    if name == "open":
        unresolved_then = (resolved_at.is_(None)) | (resolved_at >= w.end)
        return [col(Complaint.created_at) < w.end, unresolved_then]
    if name == "sla_breached":
        return [*_filed_in(w), _breached(now)]
    if name == "reopened":
        return [*_filed_in(w), col(Complaint.reopen_count) > 0]
    group, _, value = name.partition(":")
    if group in GROUPED:
        enum = GROUPED[group]
        if value in {m.value for m in enum}:
            return [*_filed_in(w), getattr(Complaint, group) == value]
    known = ", ".join(FIGURE_NAMES)
    raise InvalidInput(f"Unknown figure {name!r}. Known figures: {known}.")


async def _complaints(
    session: AsyncSession, name: str, where: list[Any], limit: int, offset: int
) -> BehindFigure:
    stmt: Any = (
        select(
            col(Complaint.id),
            col(Complaint.reference),
            col(Complaint.customer_id),
            col(Complaint.created_at),
            col(Complaint.status),
            col(Agent.display_name),
            col(Complaint.category),
            col(Complaint.severity),
        )
        .outerjoin(Agent, col(Agent.id) == col(Complaint.assignee_id))
        .where(*where)
        .order_by(col(Complaint.created_at).desc(), col(Complaint.id).desc())
        .limit(limit)
        .offset(offset)
    )
    total: Any = select(func.count()).select_from(Complaint).where(*where)
    rows = (await session.exec(stmt)).all()
    items = [
        BehindItem(
            kind="complaint",
            id=row[0],
            label=row[1],
            customer_id=row[2],
            at=as_utc(row[3]),
            status=str(row[4]),
            assignee=row[5],
            detail=f"{row[6]}, {row[7]}",
        )
        for row in rows
    ]
    return BehindFigure(name, (await session.exec(total)).scalar_one(), items)


async def _handoffs(
    session: AsyncSession, name: str, w: Window, limit: int, offset: int
) -> BehindFigure:
    where = _requested_in(w)
    if name == "handoffs_unclaimed":
        where.append(col(Handoff.claimed_at).is_(None))
    if name == "csat_low":
        where.append(col(Handoff.csat_score) <= LOW_RATING_MAX)
    stmt: Any = (
        select(
            col(Handoff.id),
            col(Handoff.customer_id),
            col(Handoff.requested_at),
            col(Handoff.status),
            col(Agent.display_name),
            col(Handoff.csat_score),
            col(Handoff.csat_comment),
        )
        .outerjoin(Agent, col(Agent.id) == col(Handoff.agent_id))
        .where(*where)
        .order_by(col(Handoff.requested_at).desc(), col(Handoff.id).desc())
        .limit(limit)
        .offset(offset)
    )
    total: Any = select(func.count()).select_from(Handoff).where(*where)
    items = [
        BehindItem(
            kind="handoff",
            id=row[0],
            label=f"handoff #{row[0]}",
            customer_id=row[1],
            at=as_utc(row[2]),
            status=str(row[3]),
            assignee=row[4],
            detail=f"rated {row[5]}/5" + (f": {row[6]}" if row[6] else "") if row[5] else None,
        )
        for row in (await session.exec(stmt)).all()
    ]
    return BehindFigure(name, (await session.exec(total)).scalar_one(), items)


async def _bot(
    session: AsyncSession, name: str, w: Window, limit: int, offset: int
) -> BehindFigure:
    at = col(Interaction.occurred_at)
    where: list[Any] = [at >= w.start, at < w.end]
    if name == "bot_unhelpful":
        where += [col(Interaction.kind) == InteractionKind.kb_feedback, helpful_flag().is_(False)]
    else:
        where.append(col(Interaction.kind) == InteractionKind.kb_none)
    stmt: Any = (
        select(
            col(Interaction.id),
            col(Interaction.customer_id),
            at,
            col(Interaction.details),
        )
        .where(*where)
        .order_by(at.desc(), col(Interaction.id).desc())
        .limit(limit)
        .offset(offset)
    )
    total: Any = select(func.count()).select_from(Interaction).where(*where)
    items = [
        BehindItem(
            kind="interaction",
            id=row[0],
            label=str((row[3] or {}).get("title") or "no answer"),
            customer_id=row[1],
            at=as_utc(row[2]),
        )
        for row in (await session.exec(stmt)).all()
    ]
    return BehindFigure(name, (await session.exec(total)).scalar_one(), items)
