"""Customer segments from RFM (``crm_core.services.rfm``): how many customers each named segment
holds and what share of the revenue it brings, the R/F/M quintile distributions, the 80/20 line
(the revenue share of the top 20% of customers), and the most valuable customers with what is
open for them.

Revenue is RFM's monetary value: net purchases in the look-back window (default 365 days), in
minor units. Everything is grouped by the database; at most 125 (R, F, M) cells come back.

Ranking the whole base takes seconds at 100k customers / 1M purchases, so a periodic job
(:func:`refresh_rfm_snapshot`, e.g. every 15 minutes) stores the scores in ``rfm_snapshot``;
reports asked without an explicit ``now`` read that snapshot while it is younger than
:data:`SNAPSHOT_MAX_AGE` (their ``as_of`` says when it was taken), and rank live otherwise.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, delete, func, insert, select
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.clock import as_utc, utcnow
from crm_core.models import (
    AppState,
    Complaint,
    ComplaintStatus,
    Customer,
    Handoff,
    HandoffStatus,
    RfmSnapshot,
)
from crm_core.services._sql import dialect_insert, unit_of_work
from crm_core.services.rfm import (
    ABOUT_TO_SLEEP,
    AT_RISK,
    CANT_LOSE,
    CHAMPIONS,
    DEFAULT_WINDOW_DAYS,
    HIBERNATING,
    LOST,
    LOYAL,
    MIXED_CURRENCY,
    NEED_ATTENTION,
    NEW,
    POTENTIAL_LOYALIST,
    PROMISING,
    _scored_query,
    segment_for,
)

SNAPSHOT_KEY = "rfm_snapshot"
SNAPSHOT_MAX_AGE = timedelta(hours=24)
SNAPSHOT_COLUMNS = (
    *("customer_id", "last_at", "frequency", "monetary", "cur_min", "cur_max"),
    *("r", "f", "m"),
)


@dataclass(frozen=True)
class ScoreSource:
    """Where a report reads RFM scores from: a SELECT with the RFM query's columns."""

    query: Any
    as_of: datetime
    from_snapshot: bool


async def refresh_rfm_snapshot(
    *, session: AsyncSession, now: datetime | None = None, window_days: int = DEFAULT_WINDOW_DAYS
) -> int:
    """Recompute every customer's RFM scores into ``rfm_snapshot`` (one INSERT ... SELECT, in
    one transaction: readers see the old snapshot or the new one); returns how many."""
    now = as_utc(now or utcnow())
    async with unit_of_work(session):
        await session.exec(delete(RfmSnapshot))
        await session.exec(
            insert(RfmSnapshot).from_select(SNAPSHOT_COLUMNS, _scored_query(now, window_days))
        )
        count: Any = select(func.count()).select_from(RfmSnapshot)
        customers = int((await session.exec(count)).scalar_one())
        state = {"as_of": now.isoformat(), "window_days": window_days, "customers": customers}
        upsert = dialect_insert(session, AppState).values(
            key=SNAPSHOT_KEY, value=state, updated_at=utcnow()
        )
        await session.exec(
            upsert.on_conflict_do_update(
                index_elements=["key"], set_={"value": upsert.excluded.value}
            )
        )
    return customers


async def score_source(
    session: AsyncSession, now: datetime | None, window_days: int
) -> ScoreSource:
    """The fresh snapshot for "now" reports of its window, else the live RFM query (no commit)."""
    if now is None:
        state = await session.get(AppState, SNAPSHOT_KEY, populate_existing=True)
        value = state.value if state is not None else {}
        if value.get("window_days") == window_days and "as_of" in value:
            as_of = as_utc(datetime.fromisoformat(value["as_of"]))
            if utcnow() - as_of <= SNAPSHOT_MAX_AGE:
                table = RfmSnapshot.__table__.c  # type: ignore[attr-defined]
                query = select(*(table[name] for name in SNAPSHOT_COLUMNS))
                return ScoreSource(query, as_of, True)
    at = as_utc(now or utcnow())
    return ScoreSource(_scored_query(at, window_days), at, False)


SEGMENT_ORDER = (
    CHAMPIONS,
    LOYAL,
    POTENTIAL_LOYALIST,
    NEW,
    PROMISING,
    NEED_ATTENTION,
    ABOUT_TO_SLEEP,
    AT_RISK,
    CANT_LOSE,
    HIBERNATING,
    LOST,
)
TOP_SHARE = 0.2


@dataclass(frozen=True)
class Segment:
    name: str
    customers: int
    revenue_minor: int
    customer_share: float | None
    revenue_share: float | None


@dataclass(frozen=True)
class SegmentReport:
    now: datetime
    window_days: int
    customers: int
    revenue_minor: int
    segments: list[Segment]
    r_scores: dict[int, int] = field(default_factory=dict)  # score 1..5 -> customers
    f_scores: dict[int, int] = field(default_factory=dict)
    m_scores: dict[int, int] = field(default_factory=dict)
    top_customers: int = 0  # how many make the top 20%
    top_revenue_share: float | None = None  # the 80/20 line
    from_snapshot: bool = False  # ``now`` is then when the snapshot was taken


async def rfm_segments(
    *, session: AsyncSession, now: datetime | None = None, window_days: int = DEFAULT_WINDOW_DAYS
) -> SegmentReport:
    async with unit_of_work(session):
        source = await score_source(session, now, window_days)
        scored = source.query.subquery("scored")
        cells: Any = select(
            scored.c.r, scored.c.f, scored.c.m, func.count(), func.sum(scored.c.monetary)
        ).group_by(scored.c.r, scored.c.f, scored.c.m)
        rows = (await session.exec(cells)).all()
        top_customers, top_revenue, total_revenue = await _top_share(session, source.query)
    counts = {name: 0 for name in SEGMENT_ORDER}
    revenue = {name: 0 for name in SEGMENT_ORDER}
    r_scores = {s: 0 for s in range(1, 6)}
    f_scores, m_scores = dict(r_scores), dict(r_scores)
    for r, f, m, n, money in rows:
        name = segment_for(int(r), int(f))
        counts[name] += int(n)
        revenue[name] += int(money or 0)
        r_scores[int(r)] += int(n)
        f_scores[int(f)] += int(n)
        m_scores[int(m)] += int(n)
    customers = sum(counts.values())
    segments = [
        Segment(
            name=name,
            customers=counts[name],
            revenue_minor=revenue[name],
            customer_share=counts[name] / customers if customers else None,
            revenue_share=revenue[name] / total_revenue if total_revenue else None,
        )
        for name in SEGMENT_ORDER
    ]
    return SegmentReport(
        now=source.as_of,
        from_snapshot=source.from_snapshot,
        window_days=window_days,
        customers=customers,
        revenue_minor=total_revenue,
        segments=segments,
        r_scores=r_scores,
        f_scores=f_scores,
        m_scores=m_scores,
        top_customers=top_customers,
        top_revenue_share=top_revenue / total_revenue if total_revenue else None,
    )


async def _top_share(session: AsyncSession, scores: Any) -> tuple[int, int, int]:
    """(size of the top 20%, their revenue, everyone's revenue): customers ranked by revenue,
    the top ``ceil(n / 5)`` of them (at least one)."""
    agg = scores.subquery("agg")
    ranked = select(
        agg.c.monetary,
        func.row_number().over(order_by=(agg.c.monetary.desc(), agg.c.customer_id)).label("rn"),
        func.count().over().label("n"),
    ).subquery("ranked")
    top = (ranked.c.n + 4) // 5
    stmt: Any = select(
        func.max(top),
        func.coalesce(func.sum(case((ranked.c.rn <= top, ranked.c.monetary), else_=0)), 0),
        func.coalesce(func.sum(ranked.c.monetary), 0),
    )
    size, top_revenue, total = (await session.exec(stmt)).one()
    return int(size or 0), int(top_revenue), int(total)


# --------------------------------------------------------------------------------------------
# Most valuable customers
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ValuableCustomer:
    customer_id: int
    name: str | None
    monetary_minor: int
    currency: str
    frequency: int
    last_purchase_at: datetime
    r: int
    f: int
    m: int
    segment: str
    open_complaints: list[str]  # references, oldest first
    open_handoff: str | None  # "waiting" / "claimed" when they are asking for a person now


async def most_valuable_customers(
    *,
    session: AsyncSession,
    now: datetime | None = None,
    limit: int = 10,
    window_days: int = DEFAULT_WINDOW_DAYS,
) -> list[ValuableCustomer]:
    """The customers with the highest revenue in the window, with their open complaints and
    any open request for a person."""
    async with unit_of_work(session):
        scored = (await score_source(session, now, window_days)).query.subquery("scored")
        stmt: Any = (
            select(scored, col(Customer.name))
            .join(Customer, col(Customer.id) == scored.c.customer_id)
            .order_by(scored.c.monetary.desc(), scored.c.customer_id)
            .limit(limit)
        )
        rows = (await session.exec(stmt)).all()
        ids = [int(row.customer_id) for row in rows]
        complaints = await _open_complaints(session, ids)
        handoffs = await _open_handoffs(session, ids)
    return [
        ValuableCustomer(
            customer_id=int(row.customer_id),
            name=row.name,
            monetary_minor=int(row.monetary),
            currency=row.cur_min if row.cur_min == row.cur_max else MIXED_CURRENCY,
            frequency=int(row.frequency),
            last_purchase_at=as_utc(row.last_at),
            r=int(row.r),
            f=int(row.f),
            m=int(row.m),
            segment=segment_for(int(row.r), int(row.f)),
            open_complaints=complaints.get(int(row.customer_id), []),
            open_handoff=handoffs.get(int(row.customer_id)),
        )
        for row in rows
    ]


async def _open_complaints(session: AsyncSession, ids: list[int]) -> dict[int, list[str]]:
    if not ids:
        return {}
    stmt: Any = (
        select(col(Complaint.customer_id), col(Complaint.reference))
        .where(
            col(Complaint.customer_id).in_(ids),
            col(Complaint.status).in_((ComplaintStatus.open, ComplaintStatus.in_progress)),
        )
        .order_by(col(Complaint.created_at))
    )
    found: dict[int, list[str]] = {}
    for customer_id, reference in (await session.exec(stmt)).all():
        found.setdefault(customer_id, []).append(reference)
    return found


async def _open_handoffs(session: AsyncSession, ids: list[int]) -> dict[int, str]:
    if not ids:
        return {}
    stmt: Any = select(col(Handoff.customer_id), col(Handoff.status)).where(
        col(Handoff.customer_id).in_(ids), col(Handoff.status) != HandoffStatus.closed
    )
    return {cid: str(status) for cid, status in (await session.exec(stmt)).all()}
