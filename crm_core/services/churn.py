"""Who may be about to leave, and does fixing a complaint bring customers back.

Churn risk (each customer with every reason that applies):

- *slipping*: a valuable customer (RFM monetary score 4-5) whose recency dropped (R 1-2);
- *repeated complaints*: at least :data:`REPEATED_COMPLAINTS` complaints filed in the last
  :data:`LOOK_BACK` days;
- *unresolved*: a complaint still unresolved past its SLA due time;
- *low rating*: a conversation rated 1 or 2 in the last :data:`LOOK_BACK` days.

Most reasons first, then the highest revenue. Computed in one SQL statement (candidate sets
unioned, then joined with their figures); only the listed customers come back.

Service recovery: for complaints filed in a window whose customer is known, does the customer
come back (buys, or writes to the desk) within 30 days? For a resolved complaint the 30 days
start at its resolution; for one not (yet) resolved, at filing. Only complaints whose 30 days
are over count, so recent ones do not look like losses. The comparison is per complaint.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, exists, func, literal, or_, select, union, union_all
from sqlalchemy.orm import aliased
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.clock import as_utc, utcnow
from crm_core.models import (
    Complaint,
    ComplaintStatus,
    Customer,
    Direction,
    Handoff,
    Interaction,
    InteractionKind,
    Purchase,
)
from crm_core.periods import Window
from crm_core.services._figures import dialect_name, shifted, without_jit
from crm_core.services._sql import unit_of_work
from crm_core.services.rfm import DEFAULT_WINDOW_DAYS
from crm_core.services.segments import score_source
from crm_core.types import UTCDateTime

LOOK_BACK = 90
REPEATED_COMPLAINTS = 2
LOW_RATING_MAX = 2
VALUABLE_M = 4
SLIPPING_R = 2
COME_BACK = timedelta(days=30)
UNRESOLVED = (ComplaintStatus.open, ComplaintStatus.in_progress)


@dataclass(frozen=True)
class ChurnRisk:
    customer_id: int
    name: str | None
    monetary_minor: int  # RFM revenue in the window (0 without purchases)
    recency_days: int | None
    reasons: list[str]


@dataclass(frozen=True)
class ChurnReport:
    now: datetime
    at_risk: int  # all customers with a reason; ``customers`` is cut at the limit
    customers: list[ChurnRisk]


async def churn_risks(
    *,
    session: AsyncSession,
    now: datetime | None = None,
    limit: int = 20,
    window_days: int = DEFAULT_WINDOW_DAYS,
) -> ChurnReport:
    async with unit_of_work(session):
        await without_jit(session)
        source = await score_source(session, now, window_days)
        stmt, total = _churn_statements(source.query, as_utc(now or utcnow()), limit)
        rows = (await session.exec(stmt)).all()
        at_risk = (await session.exec(total)).scalar_one()
    at = as_utc(now or utcnow())
    return ChurnReport(now=at, at_risk=int(at_risk), customers=[_risk(row, at) for row in rows])


def _churn_statements(scores: Any, now: datetime, limit: int) -> tuple[Any, Any]:
    since = now - timedelta(days=LOOK_BACK)
    scored = scores.cte("scored")
    due = col(Complaint.sla_due_at)
    overdue = and_(col(Complaint.status).in_(UNRESOLVED), due.is_not(None), due < now)
    # Two index range scans (recent filings; unresolved past due) instead of one OR that
    # would read every complaint.
    customer = col(Complaint.customer_id)
    recent: Any = select(
        customer.label("customer_id"), literal(1).label("recent"), literal(0).label("late")
    ).where(col(Complaint.created_at) >= since, customer.is_not(None))
    late = select(customer, literal(0), literal(1)).where(overdue, customer.is_not(None))
    both = union_all(recent, late).subquery("complaint_flags")
    complaints = (
        select(
            both.c.customer_id,
            func.sum(both.c.recent).label("recent"),
            func.sum(both.c.late).label("overdue"),
        )
        .group_by(both.c.customer_id)
        .cte("complaints")
    )
    score = col(Handoff.csat_score)
    ratings = (
        select(
            col(Handoff.customer_id).label("customer_id"),
            func.min(score).label("worst"),
            func.count().label("low"),
        )
        .where(
            col(Handoff.customer_id).is_not(None),
            col(Handoff.requested_at) >= since,
            score <= LOW_RATING_MAX,
        )
        .group_by(col(Handoff.customer_id))
        .cte("ratings")
    )
    slipping = and_(scored.c.m >= VALUABLE_M, scored.c.r <= SLIPPING_R)
    candidates = union(
        select(scored.c.customer_id).where(slipping),
        select(complaints.c.customer_id).where(
            or_(complaints.c.recent >= REPEATED_COMPLAINTS, complaints.c.overdue > 0)
        ),
        select(ratings.c.customer_id),
    ).cte("candidates")
    reasons = (
        case((slipping, 1), else_=0)
        + case((func.coalesce(complaints.c.recent, 0) >= REPEATED_COMPLAINTS, 1), else_=0)
        + case((func.coalesce(complaints.c.overdue, 0) > 0, 1), else_=0)
        + case((ratings.c.worst.is_not(None), 1), else_=0)
    )
    money = func.coalesce(scored.c.monetary, 0)
    stmt = (
        select(
            candidates.c.customer_id,
            col(Customer.name),
            money,
            scored.c.last_at,
            scored.c.r,
            scored.c.m,
            complaints.c.recent,
            complaints.c.overdue,
            ratings.c.worst,
            ratings.c.low,
        )
        .select_from(candidates)
        .join(Customer, col(Customer.id) == candidates.c.customer_id)
        .outerjoin(scored, scored.c.customer_id == candidates.c.customer_id)
        .outerjoin(complaints, complaints.c.customer_id == candidates.c.customer_id)
        .outerjoin(ratings, ratings.c.customer_id == candidates.c.customer_id)
        .where(col(Customer.merged_into_id).is_(None))
        .order_by(reasons.desc(), money.desc(), candidates.c.customer_id)
        .limit(limit)
    )
    total = select(func.count()).select_from(candidates)
    return stmt, total


def _risk(row: tuple, now: datetime) -> ChurnRisk:
    customer_id, name, money, last_at, r, m, recent, overdue, worst, low = row
    recency = (now - as_utc(last_at)).days if last_at is not None else None
    reasons = []
    if r is not None and m is not None and int(m) >= VALUABLE_M and int(r) <= SLIPPING_R:
        reasons.append(f"valuable (M{int(m)}) but no purchase for {recency} days (R{int(r)})")
    if recent is not None and recent >= REPEATED_COMPLAINTS:
        reasons.append(f"{recent} complaints in {LOOK_BACK} days")
    if overdue:
        reasons.append(f"{overdue} complaint(s) unresolved past due")
    if worst is not None:
        reasons.append(f"rated {worst}/5" + (f" ({low} low ratings)" if low > 1 else ""))
    return ChurnRisk(int(customer_id), name, int(money), recency, reasons)


# --------------------------------------------------------------------------------------------
# Service recovery
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecoveryGroup:
    complaints: int
    came_back: int

    @property
    def rate(self) -> float | None:
        return self.came_back / self.complaints if self.complaints else None


@dataclass(frozen=True)
class ServiceRecovery:
    window: Window
    resolved: RecoveryGroup
    unresolved: RecoveryGroup


async def service_recovery(
    *, session: AsyncSession, window: Window, now: datetime | None = None
) -> ServiceRecovery:
    now = as_utc(now or utcnow())
    dialect = dialect_name(session)
    resolved_at = col(Complaint.resolved_at)
    start_at = func.coalesce(resolved_at, col(Complaint.created_at))
    horizon = shifted(dialect, start_at, COME_BACK)

    def wrote(kind: InteractionKind) -> Any:
        # One probe per kind: an exact range of the (customer, kind, time, direction) index,
        # read from the index alone (with "kind IN (...)" PostgreSQL walked the customer's
        # whole timeline of those 30 days and read every row for its direction).
        message = aliased(Interaction)
        return exists().where(
            col(message.customer_id) == col(Complaint.customer_id),
            col(message.kind) == kind,
            col(message.occurred_at) > start_at,
            col(message.occurred_at) <= horizon,
            col(message.direction) == Direction.inbound,
        )

    came_back = or_(
        exists().where(
            col(Purchase.customer_id) == col(Complaint.customer_id),
            col(Purchase.purchased_at) > start_at,
            col(Purchase.purchased_at) <= horizon,
            col(Purchase.amount_minor) > 0,
        ),
        wrote(InteractionKind.message),
        wrote(InteractionKind.command),
    )
    is_resolved = resolved_at.is_not(None)
    stmt = select(
        func.count(case((is_resolved, 1))),
        func.count(case((and_(is_resolved, came_back), 1))),
        func.count(case((~is_resolved, 1))),
        func.count(case((and_(~is_resolved, came_back), 1))),
    ).where(
        col(Complaint.created_at) >= window.start,
        col(Complaint.created_at) < window.end,
        col(Complaint.customer_id).is_not(None),
        # Only complaints whose 30 days to come back are over.
        start_at <= literal(now - COME_BACK, UTCDateTime),
    )
    async with unit_of_work(session):
        await without_jit(session)
        resolved, resolved_back, other, other_back = (await session.exec(stmt)).one()  # type: ignore[call-overload]
    return ServiceRecovery(
        window=window,
        resolved=RecoveryGroup(int(resolved), int(resolved_back)),
        unresolved=RecoveryGroup(int(other), int(other_back)),
    )
