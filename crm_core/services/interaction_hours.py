"""Hourly counts of the timeline (per kind, with the helpful / unhelpful votes), so that the
bot figures of a period sum a few hundred rows instead of reading every entry of a month.

A periodic job (:func:`refresh_interaction_hours`) rolls up each UTC hour once it has been over
for :data:`SETTLE` (entries are logged when they happen; the margin covers the few logged with
a slightly earlier time, such as a message's own date), and records how far it got in AppState.
:func:`kind_counts` reads the rolled-up hours that lie wholly inside a range and counts the rest
(the range's ragged edges, the hours not rolled up yet) from the timeline itself, so the result
is the direct count whether or not the job ever ran.

Known difference from the direct count: an entry logged later with a time in an hour already
rolled up is not in that hour's row, and erasing a customer wipes their votes from the
timeline but not from the hourly totals (anonymous figures survive an erasure).
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, func, literal, select, union_all
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.clock import as_utc, utcnow
from crm_core.models import AppState, Interaction, InteractionHour, InteractionKind
from crm_core.services._figures import dialect_name
from crm_core.services._sql import dialect_insert, unit_of_work
from crm_core.types import UTCDateTime

HOURS_KEY = "interaction_hours"
HOUR = timedelta(hours=1)
SETTLE = timedelta(hours=1)
# A week of hours per transaction: the first run over a long history never holds SQLite's
# write lock for long.
SLICE = timedelta(days=7)


@dataclass(frozen=True)
class KindCounts:
    count: int = 0
    helpful: int = 0
    unhelpful: int = 0


def helpful_flag() -> Any:
    """The vote of a ``kb_feedback`` interaction (``details.helpful``), as SQL boolean."""
    return col(Interaction.details)["helpful"].as_boolean()


def floor_hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def ceil_hour(moment: datetime) -> datetime:
    floor = floor_hour(moment)
    return floor if floor == moment else floor + HOUR


def _hour_of(dialect: str, moment: Any) -> Any:
    """The start of the UTC hour of a timestamp column, as SQL of the column's own type."""
    if dialect == "postgresql":
        return func.timezone("UTC", func.date_trunc("hour", func.timezone("UTC", moment)))
    # SQLite keeps UTC as ISO text with microseconds: cut after the hour, pad to that width.
    return func.substr(moment, 1, 13).op("||")(literal(":00:00.000000"))


async def rolled_until(session: AsyncSession) -> datetime | None:
    """The end of the hours rolled up so far (``None``: never), no commit."""
    state = await session.get(AppState, HOURS_KEY, populate_existing=True)
    if state is None or "until" not in state.value:
        return None
    return as_utc(datetime.fromisoformat(state.value["until"]))


async def refresh_interaction_hours(
    *, session: AsyncSession, now: datetime | None = None, max_slices: int = 200
) -> int:
    """Roll up the hours over since the last run (a week per transaction); returns how many
    (hour, kind) rows were written. Meant for the analytics sweeper; idempotent."""
    until = floor_hour(as_utc(now or utcnow()) - SETTLE)
    async with unit_of_work(session):
        start = await rolled_until(session)
        if start is None:
            first: Any = select(func.min(col(Interaction.occurred_at)))
            earliest = (await session.exec(first)).scalar_one()
            start = floor_hour(as_utc(earliest)) if earliest is not None else until
    written = 0
    for _ in range(max_slices):
        if start >= until:
            break
        stop = min(start + SLICE, until)
        written += await _roll_up(session, start, stop)
        start = stop
    return written


async def _roll_up(session: AsyncSession, start: datetime, stop: datetime) -> int:
    at, kind, vote = col(Interaction.occurred_at), col(Interaction.kind), helpful_flag()
    hour = _hour_of(dialect_name(session), at).label("hour")
    rows = (
        select(
            hour,
            kind,
            func.count(),
            func.count(case((vote.is_(True), 1))),
            func.count(case((vote.is_(False), 1))),
        )
        .where(at >= start, at < stop)
        .group_by(hour, kind)
    )
    columns = ["hour", "kind", "count", "helpful", "unhelpful"]
    async with unit_of_work(session):
        insert = (
            dialect_insert(session, InteractionHour)
            .from_select(columns, rows)
            .on_conflict_do_nothing(index_elements=["hour", "kind"])
        )
        result = await session.exec(insert.returning(col(InteractionHour.kind)))
        written = len(result.all())
        mark = dialect_insert(session, AppState).values(
            key=HOURS_KEY, value={"until": stop.isoformat()}, updated_at=utcnow()
        )
        await session.exec(
            mark.on_conflict_do_update(index_elements=["key"], set_={"value": mark.excluded.value})
        )
    return written


def _ranges_cte(name: str, ranges: Sequence[tuple[int, datetime, datetime]]) -> Any:
    rows = [
        select(
            literal(i).label("i"),
            literal(start, UTCDateTime).label("s"),
            literal(end, UTCDateTime).label("e"),
        )
        for i, start, end in ranges
    ]
    return union_all(*rows).cte(name) if len(rows) > 1 else rows[0].cte(name)


async def kind_counts(
    session: AsyncSession,
    ranges: Sequence[tuple[datetime, datetime]],
    kinds: Iterable[InteractionKind],
) -> list[dict[str, KindCounts]]:
    """For each ``[start, end)`` of ``ranges``, the entries of ``kinds`` per kind (no commit):
    whole rolled-up hours from the rollup, the rest from the timeline; two queries in all."""
    wanted = [k.value for k in kinds]
    until = await rolled_until(session)
    covered: list[tuple[int, datetime, datetime]] = []
    rest: list[tuple[int, datetime, datetime]] = []
    for i, (start, end) in enumerate(ranges):
        low, high = ceil_hour(start), floor_hour(end)
        if until is not None:
            high = min(high, until)
        if until is None or low >= high:
            rest.append((i, start, end))
            continue
        covered.append((i, low, high))
        rest += [(i, s, e) for s, e in ((start, low), (high, end)) if s < e]
    totals: list[dict[str, list[int]]] = [{} for _ in ranges]
    if covered:
        c = _ranges_cte("covered", covered)
        hour, kind = col(InteractionHour.hour), col(InteractionHour.kind)
        rolled: Any = (
            select(
                c.c.i,
                kind,
                func.sum(col(InteractionHour.count)),
                func.sum(col(InteractionHour.helpful)),
                func.sum(col(InteractionHour.unhelpful)),
            )
            .join_from(c, InteractionHour, (hour >= c.c.s) & (hour < c.c.e))
            .where(kind.in_(wanted))
            .group_by(c.c.i, kind)
        )
        _add(totals, (await session.exec(rolled)).all())
    if rest:
        r = _ranges_cte("rest", rest)
        at, kind, vote = col(Interaction.occurred_at), col(Interaction.kind), helpful_flag()
        direct: Any = (
            select(
                r.c.i,
                kind,
                func.count(),
                func.count(case((vote.is_(True), 1))),
                func.count(case((vote.is_(False), 1))),
            )
            .join_from(r, Interaction, (at >= r.c.s) & (at < r.c.e) & kind.in_(wanted))
            .group_by(r.c.i, kind)
        )
        _add(totals, (await session.exec(direct)).all())
    return [{k: KindCounts(*v) for k, v in per.items()} for per in totals]


def _add(totals: list[dict[str, list[int]]], rows: Sequence[Any]) -> None:
    for i, kind, count, helpful, unhelpful in rows:
        entry = totals[int(i)].setdefault(str(kind), [0, 0, 0])
        entry[0] += int(count or 0)
        entry[1] += int(helpful or 0)
        entry[2] += int(unhelpful or 0)
