"""SQL building blocks of the analytics: durations in seconds and percentiles, computed by the
database on both backends (no rows are loaded into Python to be summarised).

- PostgreSQL has ``percentile_cont`` (ordered-set aggregate) and ``EXTRACT(EPOCH ...)``.
- SQLite has neither: durations come from ``julianday`` and percentiles from window functions
  (``row_number`` and ``count`` per group pick the two rows around the wanted rank); the
  interpolation between those two values, ``percentile_cont``'s own rule, is done on the two
  numbers per group that come back.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Float, Integer, Interval, case, cast, func, literal, select, text
from sqlmodel.ext.asyncio.session import AsyncSession

MEDIAN = 0.5
P90 = 0.9


@dataclass(frozen=True)
class Spread:
    """How long something took: how many, median and 90th percentile (``percentile_cont``)."""

    count: int = 0
    median: timedelta | None = None
    p90: timedelta | None = None


def dialect_name(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


async def without_jit(session: AsyncSession) -> None:
    """PostgreSQL compiles a query costed above ``jit_above_cost`` to machine code first: 0.1 to
    0.4 s that an analytics query over an index range never wins back. Off for the rest of this
    transaction (call inside the service's unit of work)."""
    if dialect_name(session) == "postgresql":
        await session.exec(text("SET LOCAL jit = off"))  # type: ignore[call-overload]


def seconds_between(dialect: str, start: Any, end: Any) -> Any:
    """``end - start`` in seconds (a float), as SQL."""
    if dialect == "postgresql":
        return cast(func.extract("epoch", end - start), Float)
    return (func.julianday(end) - func.julianday(start)) * 86400.0


def shifted(dialect: str, moment: Any, delta: timedelta) -> Any:
    """``moment + delta`` as SQL. SQLite keeps timestamps as ISO text with microseconds: shift
    with ``strftime`` (milliseconds, ``%f``) and pad to the stored width, so that equal instants
    compare equal as text."""
    if dialect == "postgresql":
        return moment + literal(delta, Interval())
    seconds = delta.total_seconds()
    text = func.strftime("%Y-%m-%d %H:%M:%f", moment, f"{seconds:+.3f} seconds")
    return text.op("||")(literal("000"))


async def spreads(
    session: AsyncSession, values: Any, *, grouped: bool = False
) -> dict[Any, Spread]:
    """Count, median and p90 of the column ``v`` of ``values`` (a SELECT), per column ``g`` when
    ``grouped`` (else under the key ``None``). NULL values are ignored."""
    sub = values.subquery("spread_values")
    if dialect_name(session) == "postgresql":
        rows = await _postgres(session, sub, grouped)
    else:
        rows = await _sqlite(session, sub, grouped)
    return {key: spread for key, spread in rows}


async def spread(session: AsyncSession, values: Any) -> Spread:
    return (await spreads(session, values)).get(None, Spread())


def _seconds(value: float | None) -> timedelta | None:
    # julianday arithmetic carries ~10 microseconds of float noise: report milliseconds.
    return None if value is None else timedelta(seconds=round(float(value), 3))


async def _postgres(session: AsyncSession, sub: Any, grouped: bool) -> list[tuple[Any, Spread]]:
    key = sub.c.g if grouped else literal(None).label("g")
    stmt = select(
        key,
        func.count(sub.c.v),
        func.percentile_cont(MEDIAN).within_group(sub.c.v),
        func.percentile_cont(P90).within_group(sub.c.v),
    ).where(sub.c.v.is_not(None))
    if grouped:
        stmt = stmt.group_by(sub.c.g)
    result = []
    for g, n, median, p90 in (await session.exec(stmt)).all():  # type: ignore[call-overload]
        if n:
            result.append((g if grouped else None, Spread(int(n), _seconds(median), _seconds(p90))))
    return result


async def _sqlite(session: AsyncSession, sub: Any, grouped: bool) -> list[tuple[Any, Spread]]:
    partition: Sequence[Any] | None = [sub.c.g] if grouped else None
    columns = [sub.c.g] if grouped else []
    ranked = (
        select(
            *columns,
            sub.c.v,
            func.row_number().over(partition_by=partition, order_by=sub.c.v).label("rn"),
            func.count().over(partition_by=partition).label("n"),
        )
        .where(sub.c.v.is_not(None))
        .subquery("ranked")
    )
    picks = []
    for fraction in (MEDIAN, P90):
        low = cast(fraction * (ranked.c.n - 1), Integer) + 1
        picks.append(func.max(case((ranked.c.rn == low, ranked.c.v))))
        picks.append(func.max(case((ranked.c.rn == low + 1, ranked.c.v))))
    keys = [ranked.c.g] if grouped else []
    stmt = select(*keys, func.max(ranked.c.n), *picks)
    if grouped:
        stmt = stmt.group_by(ranked.c.g)
    result = []
    for row in (await session.exec(stmt)).all():  # type: ignore[call-overload]
        g = row[0] if grouped else None
        n, m_lo, m_hi, p_lo, p_hi = row[1:] if grouped else row
        if not n:
            continue
        n = int(n)
        median = _interpolate(MEDIAN, n, m_lo, m_hi)
        p90 = _interpolate(P90, n, p_lo, p_hi)
        result.append((g, Spread(n, _seconds(median), _seconds(p90))))
    return result


def _interpolate(fraction: float, n: int, low: float | None, high: float | None) -> float | None:
    """``percentile_cont``: linear between the values at ranks floor and floor+1 of
    ``1 + fraction * (n - 1)``."""
    if low is None:
        return None
    position = fraction * (n - 1)
    weight = position - int(position)
    if high is None or weight == 0:
        return float(low)
    return float(low) + weight * (float(high) - float(low))
