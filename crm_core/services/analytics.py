"""The desk's figures for supervisors: a period against the previous one, per-day series for the
chart, what is breaching its SLA now, and per-agent figures.

Everything is aggregated by the database (filtered counts, grouped counts, percentiles in SQL;
see ``crm_core.services._figures``); Python only arranges the few numbers that come back.

Definitions (a window is ``[start, end)``):

- *opened*: complaints filed in the window; by category, status (their status now) and severity;
- *resolved*: complaints whose (final) resolution falls in the window;
- *open*: the backlog at the end of the window: filed before it and not resolved by then (a
  reopened complaint counts as unresolved since filing: its earlier resolution was cleared);
- *first response*: for complaints filed in the window, from filing to the agent's first
  response, whichever came first: a status change by an agent, a comment shown to the customer,
  or a reply in the customer's chat (``col(Complaint.first_response_at)``, kept by the complaint and
  handoff services when it happens, so that no timeline search is needed here);
- *resolution*: filing to the final resolution, for complaints filed in the window;
- *SLA breaches*: complaints filed in the window that are unresolved past due now, or were
  resolved after their due time;
- *reopened*: complaints filed in the window that were reopened at least once;
- *handoffs*: requests for a person made in the window; claimed: those taken by an agent; wait:
  request to claim;
- *satisfaction*: ratings of the window's handoffs: average (1..5), the share of 4-5 (the
  satisfaction index) and the count;
- *bot*: questions answered by the knowledge base without a person (``kb_answer``), suggestions,
  questions it could not answer, helpful / unhelpful votes; *handoffs after a bot answer*:
  handoffs requested within 72 h after a bot answer to that customer; *verified resolutions*:
  bot answers followed, for 72 h, by no handoff, no complaint, no new question and no unhelpful
  vote from that customer. Only answers at least 72 h old can be verified: the rate is
  verified / matured, so a fresh period shows no rate yet rather than a flattering one.
  Probing each answer's aftermath costs seconds for a month of a busy desk, so a periodic job
  (:func:`refresh_bot_outcomes`) records each answer's outcome once its 72 h are over; the
  figures count those rows and probe only the answers the job has not reached yet. The counts
  per kind and the votes come from hourly totals kept by another job
  (``crm_core.services.interaction_hours``) with the same "the rest live" rule.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from itertools import pairwise
from typing import Any

from sqlalchemy import and_, case, exists, func, literal, or_, select, union_all
from sqlalchemy.orm import aliased
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.clock import as_utc, utcnow
from crm_core.models import (
    Agent,
    AppState,
    BotAnswerOutcome,
    Complaint,
    ComplaintCategory,
    ComplaintStatus,
    Handoff,
    Interaction,
    InteractionKind,
    Severity,
)
from crm_core.periods import Period, Window, day_starts, desk_zone
from crm_core.services._figures import (
    Spread,
    dialect_name,
    seconds_between,
    shifted,
    spread,
    spreads,
    without_jit,
)
from crm_core.services._sql import dialect_insert, unit_of_work
from crm_core.services.interaction_hours import KindCounts, kind_counts
from crm_core.types import UTCDateTime

S = ComplaintStatus
K = InteractionKind
UNRESOLVED = (S.open, S.in_progress)
FOLLOW_UP = timedelta(hours=72)
SATISFIED_MIN = 4
BOT_QUESTION_KINDS = (K.kb_answer, K.kb_suggest, K.kb_none)
OUTCOMES_KEY = "bot_outcomes"
# A week of answers per transaction: ~1 s of SQLite's write lock at 10M interactions.
OUTCOME_SLICE = timedelta(days=7)


# --------------------------------------------------------------------------------------------
# Figures of one window
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BotFigures:
    answered: int = 0
    suggested: int = 0
    unanswered: int = 0
    helpful: int = 0
    unhelpful: int = 0
    handoffs_after_answer: int = 0
    matured: int = 0
    verified: int = 0

    @property
    def questions(self) -> int:
        return self.answered + self.suggested + self.unanswered

    @property
    def verified_rate(self) -> float | None:
        return self.verified / self.matured if self.matured else None


@dataclass(frozen=True)
class DeskFigures:
    window: Window
    opened: int = 0
    resolved: int = 0
    open_at_end: int = 0
    by_category: dict[str, int] = field(default_factory=dict)
    by_status: dict[str, int] = field(default_factory=dict)
    by_severity: dict[str, int] = field(default_factory=dict)
    first_response: Spread = field(default_factory=Spread)
    resolution: Spread = field(default_factory=Spread)
    sla_breached: int = 0
    reopened: int = 0
    handoffs_requested: int = 0
    handoffs_claimed: int = 0
    handoff_wait: Spread = field(default_factory=Spread)
    csat_count: int = 0
    csat_average: float | None = None
    csat_satisfied: int = 0
    bot: BotFigures = field(default_factory=BotFigures)

    @property
    def csat_share_satisfied(self) -> float | None:
        """The satisfaction index: share of ratings 4 or 5."""
        return self.csat_satisfied / self.csat_count if self.csat_count else None


@dataclass(frozen=True)
class Change:
    current: float | None
    previous: float | None

    @property
    def delta(self) -> float | None:
        if self.current is None or self.previous is None:
            return None
        return self.current - self.previous

    @property
    def relative(self) -> float | None:
        """Change as a fraction of the previous value (None when that was 0 or unknown)."""
        delta = self.delta
        if delta is None or not self.previous:
            return None
        return delta / self.previous


def _secs(value: timedelta | None) -> float | None:
    return value.total_seconds() if value is not None else None


# The flat figures compared with the previous period (durations in seconds, rates 0..1).
FIGURES: dict[str, Callable[[DeskFigures], float | None]] = {
    "opened": lambda f: f.opened,
    "resolved": lambda f: f.resolved,
    "open": lambda f: f.open_at_end,
    "first_response_median": lambda f: _secs(f.first_response.median),
    "first_response_p90": lambda f: _secs(f.first_response.p90),
    "resolution_median": lambda f: _secs(f.resolution.median),
    "resolution_p90": lambda f: _secs(f.resolution.p90),
    "sla_breached": lambda f: f.sla_breached,
    "reopened": lambda f: f.reopened,
    "handoffs_requested": lambda f: f.handoffs_requested,
    "handoffs_claimed": lambda f: f.handoffs_claimed,
    "handoff_wait_median": lambda f: _secs(f.handoff_wait.median),
    "csat_average": lambda f: f.csat_average,
    "csat_share_satisfied": lambda f: f.csat_share_satisfied,
    "csat_count": lambda f: f.csat_count,
    "bot_answered": lambda f: f.bot.answered,
    "bot_helpful": lambda f: f.bot.helpful,
    "bot_unhelpful": lambda f: f.bot.unhelpful,
    "bot_handoffs_after_answer": lambda f: f.bot.handoffs_after_answer,
    "bot_verified_rate": lambda f: f.bot.verified_rate,
}


@dataclass(frozen=True)
class DeskReport:
    period: Period
    now: datetime
    current: DeskFigures
    previous: DeskFigures

    def change(self, name: str) -> Change:
        """A figure of :data:`FIGURES` now and in the previous period."""
        getter = FIGURES[name]
        return Change(getter(self.current), getter(self.previous))

    def changes(self) -> dict[str, Change]:
        return {name: self.change(name) for name in FIGURES}


async def desk_report(
    *, session: AsyncSession, period: Period, now: datetime | None = None
) -> DeskReport:
    """The /stats figures of ``period`` and of the previous period of the same length."""
    now = as_utc(now or utcnow())
    async with unit_of_work(session):
        await without_jit(session)
        current = await _figures(session, period.current, now)
        previous = await _figures(session, period.previous, now)
    return DeskReport(period=period, now=now, current=current, previous=previous)


async def desk_figures(
    *, session: AsyncSession, window: Window, now: datetime | None = None
) -> DeskFigures:
    """The figures of one window (see the module docstring)."""
    async with unit_of_work(session):
        await without_jit(session)
        return await _figures(session, window, as_utc(now or utcnow()))


async def _figures(session: AsyncSession, w: Window, now: datetime) -> DeskFigures:
    dialect = dialect_name(session)
    return DeskFigures(
        window=w,
        **await _complaint_groups(session, w, now),
        **await _complaint_counts(session, w),
        first_response=await spread(session, _first_response_values(dialect, w)),
        resolution=await spread(session, _resolution_values(dialect, w)),
        **await _handoff_figures(session, w),
        handoff_wait=await spread(session, _wait_values(dialect, w)),
        bot=await _bot_figures(session, w, now),
    )


def _filed_in(w: Window) -> list[Any]:
    created = col(Complaint.created_at)
    return [created >= w.start, created < w.end]


async def _complaint_groups(session: AsyncSession, w: Window, now: datetime) -> dict[str, Any]:
    # One range scan of the covering index for the groups, the breaches and the reopens.
    stmt = (
        select(
            col(Complaint.status),
            col(Complaint.category),
            col(Complaint.severity),
            func.count(),
            func.count(case((_breached(now), 1))),
            func.count(case((col(Complaint.reopen_count) > 0, 1))),
        )
        .where(*_filed_in(w))
        .group_by(col(Complaint.status), col(Complaint.category), col(Complaint.severity))
    )
    by_status = {s.value: 0 for s in S}
    by_category = {c.value: 0 for c in ComplaintCategory}
    by_severity = {v.value: 0 for v in Severity}
    opened = breached = reopened = 0
    rows = (await session.exec(stmt)).all()  # type: ignore[call-overload]
    for status, category, severity, count, late, reopens in rows:
        by_status[str(status)] += count
        by_category[str(category)] += count
        by_severity[str(severity)] += count
        opened += count
        breached += late
        reopened += reopens
    return {
        "opened": opened,
        "by_status": by_status,
        "by_category": by_category,
        "by_severity": by_severity,
        "sla_breached": breached,
        "reopened": reopened,
    }


def _count(*conditions: Any) -> Any:
    return select(func.count()).select_from(Complaint).where(*conditions).scalar_subquery()


def _breached(now: datetime) -> Any:
    due = col(Complaint.sla_due_at)
    return and_(
        due.is_not(None),
        or_(
            and_(col(Complaint.status).in_(UNRESOLVED), due < now),
            col(Complaint.resolved_at) > due,
        ),
    )


async def _complaint_counts(session: AsyncSession, w: Window) -> dict[str, Any]:
    resolved_at, created_at = col(Complaint.resolved_at), col(Complaint.created_at)
    stmt = select(
        _count(resolved_at >= w.start, resolved_at < w.end),
        # Backlog at the end: filed before it and not resolved by then, i.e. unresolved now
        # (a small partial index) or resolved only after the end (a range of the resolutions'
        # index): neither counts the whole history, as "filed before - resolved before" did.
        _count(resolved_at.is_(None), created_at < w.end),
        _count(resolved_at >= w.end, created_at < w.end),
    )
    resolved, unresolved, resolved_later = (await session.exec(stmt)).one()  # type: ignore[call-overload]
    return {"resolved": resolved, "open_at_end": unresolved + resolved_later}


def _first_response_values(dialect: str, w: Window, *, grouped: bool = False) -> Any:
    first = col(Complaint.first_response_at)
    value = seconds_between(dialect, col(Complaint.created_at), first).label("v")
    columns = [value, col(Complaint.assignee_id).label("g")] if grouped else [value]
    return select(*columns).where(*_filed_in(w), first.is_not(None))


def _resolution_values(dialect: str, w: Window) -> Any:
    resolved_at = col(Complaint.resolved_at)
    value = seconds_between(dialect, col(Complaint.created_at), resolved_at).label("v")
    return select(value).where(*_filed_in(w), resolved_at.is_not(None))


def _requested_in(w: Window) -> list[Any]:
    requested = col(Handoff.requested_at)
    return [requested >= w.start, requested < w.end]


def _wait_values(dialect: str, w: Window) -> Any:
    claimed = col(Handoff.claimed_at)
    value = seconds_between(dialect, col(Handoff.requested_at), claimed).label("v")
    return select(value).where(*_requested_in(w), claimed.is_not(None))


async def _handoff_figures(session: AsyncSession, w: Window) -> dict[str, Any]:
    score = col(Handoff.csat_score)
    stmt = select(
        func.count(),
        func.count(col(Handoff.claimed_at)),
        func.count(score),
        func.avg(score),
        func.coalesce(func.sum(case((score >= SATISFIED_MIN, 1), else_=0)), 0),
    ).where(*_requested_in(w))
    requested, claimed, rated, average, satisfied = (await session.exec(stmt)).one()  # type: ignore[call-overload]
    return {
        "handoffs_requested": requested,
        "handoffs_claimed": claimed,
        "csat_count": rated,
        "csat_average": float(average) if average is not None else None,
        "csat_satisfied": int(satisfied),
    }


def _in_window(w: Window) -> list[Any]:
    at = col(Interaction.occurred_at)
    return [at >= w.start, at < w.end]


def _settled(dialect: str, answer: Any) -> Any:
    """No new question, unhelpful vote, handoff or complaint within FOLLOW_UP of ``answer``
    (the most frequent reason first: SQLite stops at the first probe that finds something)."""
    at, horizon = col(answer.occurred_at), shifted(dialect, col(answer.occurred_at), FOLLOW_UP)
    later = aliased(Interaction)
    return and_(
        ~exists().where(
            col(later.customer_id) == col(answer.customer_id),
            col(later.occurred_at) > at,
            col(later.occurred_at) <= horizon,
            col(later.kind).in_([*BOT_QUESTION_KINDS, K.kb_feedback]),
            or_(
                col(later.kind) != K.kb_feedback,
                col(later.details)["helpful"].as_boolean().is_(False),
            ),
        ),
        ~exists().where(
            col(Handoff.customer_id) == col(answer.customer_id),
            col(Handoff.requested_at) > at,
            col(Handoff.requested_at) <= horizon,
        ),
        ~exists().where(
            col(Complaint.customer_id) == col(answer.customer_id),
            col(Complaint.created_at) > at,
            col(Complaint.created_at) <= horizon,
        ),
    )


async def _bot_figures(session: AsyncSession, w: Window, now: datetime) -> BotFigures:
    dialect = dialect_name(session)
    # Counts per kind and the votes: hourly totals where the rollup has them (see
    # crm_core.services.interaction_hours), the timeline for the rest.
    (counts,) = await kind_counts(session, [(w.start, w.end)], [*BOT_QUESTION_KINDS, K.kb_feedback])
    none = KindCounts()
    answered = counts.get(K.kb_answer.value, none).count
    suggested = counts.get(K.kb_suggest.value, none).count
    unanswered = counts.get(K.kb_none.value, none).count
    votes = counts.get(K.kb_feedback.value, none)
    helpful, unhelpful = votes.helpful, votes.unhelpful
    after = select(func.count()).where(
        *_requested_in(w),
        _later_answer_exists(dialect),
    )
    handoffs_after = (await session.exec(after)).scalar_one()  # type: ignore[call-overload]
    matured, verified = await _verified(session, w, now)
    return BotFigures(
        answered=answered,
        suggested=suggested,
        unanswered=unanswered,
        helpful=helpful,
        unhelpful=unhelpful,
        handoffs_after_answer=handoffs_after,
        matured=matured,
        verified=verified,
    )


async def _verified(session: AsyncSession, w: Window, now: datetime) -> tuple[int, int]:
    """(answers of the window at least 72 h old, verified ones): from the recorded outcomes as
    far as :func:`refresh_bot_outcomes` got, probing the aftermath of the rest."""
    mature_end = min(w.end, now - FOLLOW_UP)
    recorded_until = await _outcomes_until(session)
    matured = verified = 0
    live_start = w.start
    if recorded_until is not None and min(mature_end, recorded_until) > w.start:
        covered = min(mature_end, recorded_until)
        at = col(BotAnswerOutcome.answered_at)
        stmt: Any = select(
            func.count(), func.count(case((col(BotAnswerOutcome.verified).is_(True), 1)))
        ).where(at >= w.start, at < covered)
        matured, verified = (await session.exec(stmt)).one()
        live_start = covered
    if live_start < mature_end:
        live_matured, live_verified = (
            await session.exec(_probe_answers(dialect_name(session), live_start, mature_end))
        ).one()
        matured, verified = matured + live_matured, verified + live_verified
    return int(matured), int(verified)


def _probe_answers(dialect: str, start: datetime, end: datetime) -> Any:
    """Count the bot answers in [start, end) and those settled (the expensive part)."""
    answer = aliased(Interaction)
    return select(func.count(), func.count(case((_settled(dialect, answer), 1)))).where(
        col(answer.kind) == K.kb_answer,
        col(answer.occurred_at) >= start,
        col(answer.occurred_at) < end,
        col(answer.customer_id).is_not(None),
    )


async def _outcomes_until(session: AsyncSession) -> datetime | None:
    state = await session.get(AppState, OUTCOMES_KEY, populate_existing=True)
    if state is None or "until" not in state.value:
        return None
    return as_utc(datetime.fromisoformat(state.value["until"]))


async def refresh_bot_outcomes(
    *, session: AsyncSession, now: datetime | None = None, max_slices: int = 200
) -> int:
    """Record the outcome of every bot answer that turned 72 h old since the last run; returns
    how many were recorded. Meant for a periodic job (every few minutes: each run then checks
    only the answers of those minutes). Works through the backlog a week per transaction, so
    that the first run over a long history never holds SQLite's write lock for long; an answer
    logged with a time before the last run's end is not picked up (timeline entries are logged
    when they happen)."""
    until = as_utc(now or utcnow()) - FOLLOW_UP
    async with unit_of_work(session):
        start = await _outcomes_until(session)
        if start is None:
            first: Any = select(func.min(col(Interaction.occurred_at))).where(
                col(Interaction.kind) == K.kb_answer
            )
            earliest = (await session.exec(first)).scalar_one()
            start = as_utc(earliest) if earliest is not None else until
    recorded = 0
    for _ in range(max_slices):
        if start >= until:
            break
        stop = min(start + OUTCOME_SLICE, until)
        recorded += await _record_outcomes(session, start, stop)
        start = stop
    return recorded


async def _record_outcomes(session: AsyncSession, start: datetime, stop: datetime) -> int:
    dialect = dialect_name(session)
    answer = aliased(Interaction)
    verified = case((_settled(dialect, answer), True), else_=False)
    rows = select(col(answer.id), col(answer.customer_id), col(answer.occurred_at), verified).where(
        col(answer.kind) == K.kb_answer,
        col(answer.occurred_at) >= start,
        col(answer.occurred_at) < stop,
        col(answer.customer_id).is_not(None),
    )
    columns = ["interaction_id", "customer_id", "answered_at", "verified"]
    async with unit_of_work(session):
        insert = (
            dialect_insert(session, BotAnswerOutcome)
            .from_select(columns, rows)
            .on_conflict_do_nothing(index_elements=["interaction_id"])
        )
        result = await session.exec(insert.returning(col(BotAnswerOutcome.interaction_id)))
        recorded = len(result.all())
        mark = dialect_insert(session, AppState).values(
            key=OUTCOMES_KEY, value={"until": stop.isoformat()}, updated_at=utcnow()
        )
        await session.exec(
            mark.on_conflict_do_update(index_elements=["key"], set_={"value": mark.excluded.value})
        )
    return recorded


def _later_answer_exists(dialect: str) -> Any:
    """The handoff was requested within FOLLOW_UP after a bot answer to the same customer."""
    answer = aliased(Interaction)
    return exists().where(
        col(answer.customer_id) == col(Handoff.customer_id),
        col(answer.kind) == K.kb_answer,
        col(answer.occurred_at) <= col(Handoff.requested_at),
        col(answer.occurred_at) >= shifted(dialect, col(Handoff.requested_at), -FOLLOW_UP),
    )


# --------------------------------------------------------------------------------------------
# Per-day series for the chart
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DailySeries:
    """One entry per local day of the window (first and last day cut at the window's edges)."""

    days: list[date]
    complaints_by_category: dict[str, list[int]]
    resolution_hours: list[float | None]  # average time to resolution of that day's resolutions
    bot_answered: list[int]
    handoffs_requested: list[int]

    @property
    def self_service_rate(self) -> list[float | None]:
        """Share of help given by the bot: answers / (answers + requests for a person)."""
        rates: list[float | None] = []
        for answered, handoffs in zip(self.bot_answered, self.handoffs_requested, strict=True):
            total = answered + handoffs
            rates.append(answered / total if total else None)
        return rates


def _days_cte(edges: list[datetime]) -> Any:
    rows = [
        select(
            literal(i).label("d"),
            literal(start, UTCDateTime).label("s"),
            literal(end, UTCDateTime).label("e"),
        )
        for i, (start, end) in enumerate(pairwise(edges))
    ]
    return union_all(*rows).cte("days") if len(rows) > 1 else rows[0].cte("days")


async def daily_series(
    *, session: AsyncSession, window: Window, time_zone: str = "UTC"
) -> DailySeries:
    zone = desk_zone(time_zone)
    edges = day_starts(window, zone)
    edges[0], edges[-1] = max(edges[0], window.start), min(edges[-1], window.end)
    days = [
        (edge.astimezone(zone)).date() for edge in edges[:-1]
    ]  # local date of each bucket's start
    n = len(days)
    dialect = dialect_name(session)
    by_category = {c.value: [0] * n for c in ComplaintCategory}
    resolution: list[float | None] = [None] * n
    answered, handoffs = [0] * n, [0] * n
    async with unit_of_work(session):
        await without_jit(session)
        d = _days_cte(edges)
        created = col(Complaint.created_at)
        filed = (
            select(d.c.d, col(Complaint.category), func.count())
            .join_from(d, Complaint, and_(created >= d.c.s, created < d.c.e))
            .group_by(d.c.d, col(Complaint.category))
        )
        for day, category, count in (await session.exec(filed)).all():  # type: ignore[call-overload]
            by_category[str(category)][day] = count
        resolved_at = col(Complaint.resolved_at)
        hours = seconds_between(dialect, col(Complaint.created_at), resolved_at) / 3600.0
        resolved = (
            select(d.c.d, func.avg(hours))
            .join_from(d, Complaint, and_(resolved_at >= d.c.s, resolved_at < d.c.e))
            .group_by(d.c.d)
        )
        for day, average in (await session.exec(resolved)).all():  # type: ignore[call-overload]
            resolution[day] = round(float(average), 3) if average is not None else None
        per_day = await kind_counts(session, list(pairwise(edges)), [K.kb_answer])
        for day, counts in enumerate(per_day):
            answered[day] = counts.get(K.kb_answer.value, KindCounts()).count
        requested = col(Handoff.requested_at)
        asked = (
            select(d.c.d, func.count())
            .join_from(d, Handoff, and_(requested >= d.c.s, requested < d.c.e))
            .group_by(d.c.d)
        )
        for day, count in (await session.exec(asked)).all():  # type: ignore[call-overload]
            handoffs[day] = count
    return DailySeries(days, by_category, resolution, answered, handoffs)


# --------------------------------------------------------------------------------------------
# SLA watch list
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SlaItem:
    complaint_id: int
    reference: str
    category: str
    severity: str
    status: str
    customer_id: int | None
    assignee_id: int | None
    assignee_name: str | None
    created_at: datetime
    sla_due_at: datetime
    age: timedelta
    overdue: timedelta  # positive: past due by this much; negative: due in this much

    @property
    def breached(self) -> bool:
        return self.overdue > timedelta(0)


@dataclass(frozen=True)
class SlaWatch:
    now: datetime
    within: timedelta
    breached: int
    breaching: int
    items: list[SlaItem]


async def sla_watchlist(
    *,
    session: AsyncSession,
    now: datetime | None = None,
    within: timedelta = timedelta(hours=4),
    limit: int = 30,
) -> SlaWatch:
    """Unresolved complaints past due, or due within ``within``, most urgent (earliest due)
    first, with the totals of each kind (the list itself is cut at ``limit``)."""
    now = as_utc(now or utcnow())
    due = col(Complaint.sla_due_at)
    unresolved = col(Complaint.status).in_(UNRESOLVED)
    horizon = now + within
    stmt = (
        select(
            col(Complaint.id),
            col(Complaint.reference),
            col(Complaint.category),
            col(Complaint.severity),
            col(Complaint.status),
            col(Complaint.customer_id),
            col(Complaint.assignee_id),
            col(Agent.display_name),
            col(Complaint.created_at),
            due,
        )
        .outerjoin(Agent, col(Agent.id) == col(Complaint.assignee_id))
        .where(unresolved, due.is_not(None), due < horizon)
        .order_by(due, col(Complaint.id))
        .limit(limit)
    )
    totals = select(
        func.count(case((due < now, 1))),
        func.count(case((due >= now, 1))),
    ).where(unresolved, due.is_not(None), due < horizon)
    async with unit_of_work(session):
        rows = (await session.exec(stmt)).all()  # type: ignore[call-overload]
        breached, breaching = (await session.exec(totals)).one()  # type: ignore[call-overload]
    items = [
        SlaItem(
            complaint_id=row[0],
            reference=row[1],
            category=str(row[2]),
            severity=str(row[3]),
            status=str(row[4]),
            customer_id=row[5],
            assignee_id=row[6],
            assignee_name=row[7],
            created_at=as_utc(row[8]),
            sla_due_at=as_utc(row[9]),
            age=now - as_utc(row[8]),
            overdue=now - as_utc(row[9]),
        )
        for row in rows
    ]
    return SlaWatch(now=now, within=within, breached=breached, breaching=breaching, items=items)


# --------------------------------------------------------------------------------------------
# Per agent
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentFigures:
    agent_id: int
    name: str
    active: bool
    handoffs_claimed: int = 0
    complaints_resolved: int = 0
    first_response: Spread = field(
        default_factory=Spread
    )  # of the window's complaints assigned to the agent
    rating_average: float | None = None
    rating_count: int = 0


async def agent_figures(*, session: AsyncSession, window: Window) -> list[AgentFigures]:
    """Per agent (active ones, and inactive ones with figures in the window), busiest first."""
    w = window
    claimed_at = col(Handoff.claimed_at)
    resolved_at = col(Complaint.resolved_at)
    score = col(Handoff.csat_score)
    async with unit_of_work(session):
        await without_jit(session)
        roster: Any = select(col(Agent.id), col(Agent.display_name), col(Agent.active))
        agents = (await session.exec(roster)).all()
        claims = await _by_agent(
            session,
            select(col(Handoff.agent_id), func.count())
            .where(claimed_at >= w.start, claimed_at < w.end, col(Handoff.agent_id).is_not(None))
            .group_by(col(Handoff.agent_id)),
        )
        resolved = await _by_agent(
            session,
            select(col(Complaint.assignee_id), func.count())
            .where(resolved_at >= w.start, resolved_at < w.end)
            .group_by(col(Complaint.assignee_id)),
        )
        ratings_stmt = (
            select(col(Handoff.agent_id), func.avg(score), func.count(score))
            .where(*_requested_in(w), score.is_not(None))
            .group_by(col(Handoff.agent_id))
        )
        ratings = {
            agent: (float(avg), int(n))
            for agent, avg, n in (await session.exec(ratings_stmt)).all()  # type: ignore[call-overload]
        }
        dialect = dialect_name(session)
        responses = await spreads(
            session, _first_response_values(dialect, w, grouped=True), grouped=True
        )
    result = []
    for agent_id, name, active in agents:
        average, count = ratings.get(agent_id, (None, 0))
        figures = AgentFigures(
            agent_id=agent_id,
            name=name,
            active=bool(active),
            handoffs_claimed=claims.get(agent_id, 0),
            complaints_resolved=resolved.get(agent_id, 0),
            first_response=responses.get(agent_id, Spread()),
            rating_average=average,
            rating_count=count,
        )
        busy = figures.handoffs_claimed or figures.complaints_resolved or figures.rating_count
        if active or busy or figures.first_response.count:
            result.append(figures)
    result.sort(key=lambda a: (-(a.handoffs_claimed + a.complaints_resolved), a.name))
    return result


async def _by_agent(session: AsyncSession, stmt: Any) -> dict[int, int]:
    return {agent: int(n) for agent, n in (await session.exec(stmt)).all() if agent is not None}
