"""RFM: who are the valuable customers, who is slipping away.

Classic recency / frequency / monetary scoring, computed in SQL for the whole customer base:

- **recency**: days since the customer's last purchase (refunds excluded), over all time
  (ranked by the exact time of that purchase; ``recency_days`` is whole days for display);
- **frequency**: number of purchases (amount > 0) in the look-back window (default 365 days);
- **monetary**: net sum (purchases minus refunds) in the window, in minor units.

Each is scored 1..5 by quintile relative to every customer with a purchase, using ``RANK()``
window functions so that equal values always get equal scores: ``score = 1 + 5*(rank-1) // n``.
Where ties fall matters for small or skewed populations: for frequency and monetary a tie takes
the *lowest* score of its group (all one-time buyers have F=1), for recency the *highest* (everyone
who bought on the latest day has R=5). A base of one customer therefore reads R5 F1 M1: "New".

Segment: the standard R x F grid (M does not move the segment, it moves the tier):

    F:  1            2            3               4             5
    R5  New          Potential    Potential       Champions     Champions
    R4  Promising    Potential    Potential       Loyal         Loyal
    R3  About to sleep  (F1-2)    Need attention  Loyal         Loyal
    R2  Hibernating  Hibernating  At risk         At risk       Can't lose them
    R1  Lost         Lost         At risk         At risk       Can't lose them

Tier from R+F+M (3..15): top >= 13, high >= 10, medium >= 7, else low.

Currencies: deskbot assumes one trading currency per deployment; amounts are summed as they are.
``currency`` reports the customer's currency, or ``"XXX"`` (ISO 4217 "no currency") when their
purchases mix several, so that a report can flag them.
"""

import time
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import Integer, case, func, literal, select
from sqlalchemy.engine import Engine
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.clock import as_utc, utcnow
from crm_core.models import Purchase
from crm_core.services._sql import unit_of_work
from crm_core.services.customers import resolve_customer

DEFAULT_WINDOW_DAYS = 365
MIXED_CURRENCY = "XXX"

CHAMPIONS = "Champions"
LOYAL = "Loyal"
POTENTIAL_LOYALIST = "Potential loyalist"
NEW = "New"
PROMISING = "Promising"
NEED_ATTENTION = "Need attention"
ABOUT_TO_SLEEP = "About to sleep"
AT_RISK = "At risk"
CANT_LOSE = "Can't lose them"
HIBERNATING = "Hibernating"
LOST = "Lost"


@dataclass(slots=True)
class RfmScore:
    customer_id: int
    recency_days: int
    frequency: int
    monetary_minor: int
    currency: str
    r: int
    f: int
    m: int
    segment: str
    tier: str
    last_purchase_at: datetime | None = None


def segment_for(r: int, f: int) -> str:
    """The standard RFM grid cell for recency and frequency scores (1..5)."""
    if r >= 4:
        if f >= 4:
            return CHAMPIONS if r == 5 else LOYAL
        if f >= 2:
            return POTENTIAL_LOYALIST
        return NEW if r == 5 else PROMISING
    if r == 3:
        if f >= 4:
            return LOYAL
        return NEED_ATTENTION if f == 3 else ABOUT_TO_SLEEP
    if f == 5:
        return CANT_LOSE
    if f >= 3:
        return AT_RISK
    return HIBERNATING if r == 2 else LOST


def tier_for(r: int, f: int, m: int) -> str:
    total = r + f + m
    if total >= 13:
        return "top"
    if total >= 10:
        return "high"
    if total >= 7:
        return "medium"
    return "low"


def _aggregate_query(now: datetime, window_days: int, customer_id: int | None = None) -> Any:
    """Per customer with at least one purchase: last purchase, frequency, net monetary."""
    since = now - timedelta(days=window_days)
    is_purchase = col(Purchase.amount_minor) > 0
    in_window = col(Purchase.purchased_at) >= since
    stmt: Any = select(
        col(Purchase.customer_id).label("customer_id"),
        func.max(case((is_purchase, Purchase.purchased_at))).label("last_at"),
        func.sum(case((is_purchase & in_window, 1), else_=0)).label("frequency"),
        func.sum(case((in_window, Purchase.amount_minor), else_=0)).label("monetary"),
        func.min(Purchase.currency).label("cur_min"),
        func.max(Purchase.currency).label("cur_max"),
    ).where(col(Purchase.purchased_at) <= now)
    if customer_id is None:
        stmt = stmt.where(col(Purchase.customer_id).is_not(None))
    else:
        stmt = stmt.where(col(Purchase.customer_id) == customer_id)
    return stmt.group_by(col(Purchase.customer_id)).having(
        func.max(case((is_purchase, 1), else_=0)) == 1
    )


def _scored_query(now: datetime, window_days: int) -> Any:
    """One row per customer with purchases: raw values and R, F, M scores."""
    agg = _aggregate_query(now, window_days).cte("rfm_agg")
    n = func.count().over()
    ranked = select(
        agg,
        n.label("n"),
        func.rank().over(order_by=agg.c.last_at.desc()).label("r_rank"),
        func.rank().over(order_by=agg.c.frequency.asc()).label("f_rank"),
        func.rank().over(order_by=agg.c.monetary.asc()).label("m_rank"),
    ).cte("rfm_ranked")
    five = literal(5, Integer)
    r = (five - (five * (ranked.c.r_rank - 1)) // ranked.c.n).label("r")
    f = (1 + (five * (ranked.c.f_rank - 1)) // ranked.c.n).label("f")
    m = (1 + (five * (ranked.c.m_rank - 1)) // ranked.c.n).label("m")
    return select(
        ranked.c.customer_id,
        ranked.c.last_at,
        ranked.c.frequency,
        ranked.c.monetary,
        ranked.c.cur_min,
        ranked.c.cur_max,
        r,
        f,
        m,
    )


def _to_score(row: Any, now: datetime) -> RfmScore:
    customer_id, last_at, frequency, monetary, cur_min, cur_max, r, f, m = row
    last_at = as_utc(last_at)
    r, f, m = int(r), int(f), int(m)
    # Positional: this runs once per customer in rfm_table (100k+ rows).
    return RfmScore(
        int(customer_id),
        max(0, (now - last_at).days),
        int(frequency),
        int(monetary),
        cur_min if cur_min == cur_max else MIXED_CURRENCY,
        r,
        f,
        m,
        segment_for(r, f),
        tier_for(r, f, m),
        last_at,
    )


async def rfm_table(
    *,
    session: AsyncSession,
    now: datetime | None = None,
    limit: int | None = None,
    window_days: int = DEFAULT_WINDOW_DAYS,
) -> list[RfmScore]:
    """Every customer with a purchase, most valuable first (R+F+M, then M, then net amount)."""
    now = as_utc(now or utcnow())
    query = _scored_query(now, window_days).subquery("rfm")
    stmt: Any = select(query).order_by(
        (query.c.r + query.c.f + query.c.m).desc(),
        query.c.m.desc(),
        query.c.monetary.desc(),
        query.c.customer_id,
    )
    if limit is not None:
        stmt = stmt.limit(limit)
    async with unit_of_work(session):
        rows = (await session.exec(stmt)).all()
    return [_to_score(row, now) for row in rows]


async def customer_rfm(
    *,
    session: AsyncSession,
    customer_id: int,
    now: datetime | None = None,
    window_days: int = DEFAULT_WINDOW_DAYS,
) -> RfmScore | None:
    """The customer's (merge survivor's) RFM score, or None without any purchase."""
    async with unit_of_work(session):
        customer = await resolve_customer(session, customer_id)
        return await customer_rfm_no_commit(session, customer.id, now=now, window_days=window_days)


async def customer_rfm_no_commit(
    session: AsyncSession,
    customer_id: int | None,
    *,
    now: datetime | None = None,
    window_days: int = DEFAULT_WINDOW_DAYS,
) -> RfmScore | None:
    """Score one customer against the (cached) distribution of the whole base.

    The customer's own values are read fresh (an index range scan); only the base's
    distribution, which moves slowly, is cached for :data:`CACHE_TTL` per process. The scores
    equal :func:`rfm_table`'s for the same data (same rank formulas, computed by bisection).
    """
    now = as_utc(now or utcnow())
    own = (await session.exec(_aggregate_query(now, window_days, customer_id))).first()
    if own is None:
        return None
    base = await _distribution(session, now, window_days)
    n = max(base.size, 1)
    last_at = as_utc(own.last_at)
    newer = base.size - bisect_right(base.last_at, last_at.timestamp())
    r = 5 - (5 * min(newer, n - 1)) // n
    f = 1 + (5 * min(bisect_left(base.frequency, int(own.frequency)), n - 1)) // n
    m = 1 + (5 * min(bisect_left(base.monetary, int(own.monetary)), n - 1)) // n
    return RfmScore(
        customer_id=int(own.customer_id),
        recency_days=max(0, (now - last_at).days),
        frequency=int(own.frequency),
        monetary_minor=int(own.monetary),
        currency=own.cur_min if own.cur_min == own.cur_max else MIXED_CURRENCY,
        r=r,
        f=f,
        m=m,
        segment=segment_for(r, f),
        tier=tier_for(r, f, m),
        last_purchase_at=last_at,
    )


# --------------------------------------------------------------------------------------------
# Distribution cache for single-customer scoring
# --------------------------------------------------------------------------------------------

CACHE_TTL = timedelta(minutes=10)
_CACHE_SIZE = 8


@dataclass(frozen=True)
class _Distribution:
    """Sorted values of every scored customer: enough to rank anyone by bisection."""

    last_at: list[float]
    frequency: list[int]
    monetary: list[int]
    loaded_at: float

    @property
    def size(self) -> int:
        return len(self.frequency)


# Per engine (so two databases never share an entry), then per (window, explicit `now`).
_cache: WeakKeyDictionary[Engine, dict[tuple[int, datetime | None], _Distribution]] = (
    WeakKeyDictionary()
)


def invalidate_rfm_cache() -> None:
    """Forget cached distributions (this process only); called when a purchase is recorded."""
    _cache.clear()


async def refresh_rfm_cache(
    *, session: AsyncSession, window_days: int = DEFAULT_WINDOW_DAYS
) -> int:
    """Reload the base's distribution now; returns how many customers are scored.

    Meant for a periodic job (every few minutes, more often than :data:`CACHE_TTL`), so that no
    agent opening a customer card ever waits for the reload (~1-3 s at 100k customers).
    """
    async with unit_of_work(session):
        dist = await _distribution(session, utcnow(), window_days, force=True)
    return dist.size


async def _distribution(
    session: AsyncSession, now: datetime, window_days: int, *, force: bool = False
) -> _Distribution:
    # A caller-supplied `now` (reports, tests) gets its own entry; "now" itself shares one.
    explicit = abs((utcnow() - now).total_seconds()) > 5
    entries = _cache.setdefault(session.get_bind().engine, {})
    key = (window_days, now if explicit else None)
    cached = entries.get(key)
    fresh = cached is not None and time.monotonic() - cached.loaded_at < CACHE_TTL.total_seconds()
    if cached is not None and fresh and not force:
        return cached
    rows = (await session.exec(_aggregate_query(now, window_days))).all()
    dist = _Distribution(
        last_at=sorted(as_utc(row.last_at).timestamp() for row in rows),
        frequency=sorted(int(row.frequency) for row in rows),
        monetary=sorted(int(row.monetary) for row in rows),
        loaded_at=time.monotonic(),
    )
    if len(entries) >= _CACHE_SIZE:
        entries.clear()
    entries[key] = dist
    return dist
