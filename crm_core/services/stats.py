"""Complaint and handoff statistics for supervisors.

Counts are computed in SQL (GROUP BY / filtered COUNT, identical on SQLite and PostgreSQL);
durations are fetched as timestamp pairs and summarised in Python, because medians and
timestamp arithmetic differ between the two databases and Python gives exact figures on both.

Definitions:
- the window selects complaints by ``created_at`` and handoffs by ``requested_at``, with
  ``since`` inclusive and ``until`` exclusive;
- time to first response: ``first_response_at - created_at`` (complaints that have one);
- time to resolution: ``resolved_at - created_at`` (resolved or closed complaints; a reopened
  complaint counts with its final resolution only);
- SLA breach: still open or in progress after its due time (``sla_due_at < now``), or resolved
  after its due time;
- reopen rate: complaints reopened at least once / complaints that reached a resolution at least
  once (resolved now, or reopened since);
- CSAT: average and count of the handoffs' scores; wait to claim: ``claimed_at - requested_at``.
"""

import statistics
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.clock import utcnow
from crm_core.errors import InvalidInput
from crm_core.models import (
    Complaint,
    ComplaintCategory,
    ComplaintStatus,
    Handoff,
    HandoffStatus,
    Severity,
)
from crm_core.services._sql import unit_of_work

S = ComplaintStatus
UNRESOLVED = (S.open, S.in_progress)
RESOLVED = (S.resolved, S.closed)


@dataclass(frozen=True)
class DurationSummary:
    count: int = 0
    median: timedelta | None = None
    average: timedelta | None = None

    @classmethod
    def of(cls, durations: list[timedelta]) -> "DurationSummary":
        if not durations:
            return cls()
        seconds = [d.total_seconds() for d in durations]
        return cls(
            count=len(seconds),
            median=timedelta(seconds=statistics.median(seconds)),
            average=timedelta(seconds=statistics.fmean(seconds)),
        )


def _zeros(enum: Any) -> dict[Any, int]:
    return {member: 0 for member in enum}


@dataclass(frozen=True)
class ComplaintStats:
    since: datetime | None
    until: datetime | None
    now: datetime
    total: int = 0
    by_status: dict[ComplaintStatus, int] = field(default_factory=lambda: _zeros(S))
    by_category: dict[ComplaintCategory, int] = field(
        default_factory=lambda: _zeros(ComplaintCategory)
    )
    by_severity: dict[Severity, int] = field(default_factory=lambda: _zeros(Severity))
    first_response: DurationSummary = DurationSummary()
    resolution: DurationSummary = DurationSummary()
    sla_breached_open: int = 0
    sla_breached_resolved: int = 0
    reopened: int = 0
    ever_resolved: int = 0
    csat_average: float | None = None
    csat_count: int = 0
    handoffs_by_status: dict[HandoffStatus, int] = field(
        default_factory=lambda: _zeros(HandoffStatus)
    )
    wait_to_claim: DurationSummary = DurationSummary()

    @property
    def sla_breaches(self) -> int:
        return self.sla_breached_open + self.sla_breached_resolved

    @property
    def reopen_rate(self) -> float | None:
        return self.reopened / self.ever_resolved if self.ever_resolved else None

    @property
    def handoffs_waiting(self) -> int:
        return self.handoffs_by_status[HandoffStatus.waiting]

    @property
    def handoffs_claimed(self) -> int:
        return self.handoffs_by_status[HandoffStatus.claimed]

    @property
    def handoffs_closed(self) -> int:
        return self.handoffs_by_status[HandoffStatus.closed]


async def complaint_stats(
    *,
    session: AsyncSession,
    since: datetime | None = None,
    until: datetime | None = None,
    now: datetime | None = None,
) -> ComplaintStats:
    if since is not None and until is not None and since >= until:
        raise InvalidInput("The start of the period must be before its end.")
    now = now or utcnow()
    in_window = _window(col(Complaint.created_at), since, until)
    async with unit_of_work(session):
        counts = await _complaint_counts(session, in_window)
        durations = await _complaint_durations(session, in_window)
        sla = await _sla_breaches(session, in_window, now)
        reopens = await _reopens(session, in_window)
        handoffs = await _handoff_figures(session, _window(col(Handoff.requested_at), since, until))
    return ComplaintStats(
        since=since, until=until, now=now, **counts, **durations, **sla, **reopens, **handoffs
    )


def _window(column: Any, since: datetime | None, until: datetime | None) -> list[Any]:
    conditions = []
    if since is not None:
        conditions.append(column >= since)
    if until is not None:
        conditions.append(column < until)
    return conditions


async def _complaint_counts(session: AsyncSession, window: list[Any]) -> dict[str, Any]:
    stmt = (
        select(
            col(Complaint.status), col(Complaint.category), col(Complaint.severity), func.count()
        )
        .where(*window)
        .group_by(col(Complaint.status), col(Complaint.category), col(Complaint.severity))
    )
    by_status, by_category, by_severity = _zeros(S), _zeros(ComplaintCategory), _zeros(Severity)
    total = 0
    for status, category, severity, count in (await session.exec(stmt)).all():
        by_status[S(status)] += count
        by_category[ComplaintCategory(category)] += count
        by_severity[Severity(severity)] += count
        total += count
    return {
        "total": total,
        "by_status": by_status,
        "by_category": by_category,
        "by_severity": by_severity,
    }


async def _complaint_durations(session: AsyncSession, window: list[Any]) -> dict[str, Any]:
    stmt = select(
        col(Complaint.created_at), col(Complaint.first_response_at), col(Complaint.resolved_at)
    ).where(
        *window,
        or_(col(Complaint.first_response_at).is_not(None), col(Complaint.resolved_at).is_not(None)),
    )
    rows = (await session.exec(stmt)).all()
    return {
        "first_response": DurationSummary.of([r - c for c, r, _ in rows if r is not None]),
        "resolution": DurationSummary.of([d - c for c, _, d in rows if d is not None]),
    }


async def _sla_breaches(session: AsyncSession, window: list[Any], now: datetime) -> dict[str, Any]:
    due = col(Complaint.sla_due_at)
    open_late = select(func.count()).where(
        *window, col(Complaint.status).in_(UNRESOLVED), due.is_not(None), due < now
    )
    resolved_late = select(func.count()).where(
        *window,
        col(Complaint.status).in_(RESOLVED),
        due.is_not(None),
        col(Complaint.resolved_at) > due,
    )
    return {
        "sla_breached_open": (await session.exec(open_late)).one(),
        "sla_breached_resolved": (await session.exec(resolved_late)).one(),
    }


async def _reopens(session: AsyncSession, window: list[Any]) -> dict[str, Any]:
    reopened = col(Complaint.reopen_count) > 0
    ever_resolved = or_(col(Complaint.status).in_(RESOLVED), reopened)
    return {
        "reopened": (await session.exec(select(func.count()).where(*window, reopened))).one(),
        "ever_resolved": (
            await session.exec(select(func.count()).where(*window, ever_resolved))
        ).one(),
    }


async def _handoff_figures(session: AsyncSession, window: list[Any]) -> dict[str, Any]:
    by_status = _zeros(HandoffStatus)
    grouped = select(col(Handoff.status), func.count()).where(*window).group_by(col(Handoff.status))
    for status, count in (await session.exec(grouped)).all():
        by_status[HandoffStatus(status)] = count
    score = col(Handoff.csat_score)
    csat_stmt = select(func.count(score), func.avg(score)).where(*window, score.is_not(None))
    csat_count, csat_avg = (await session.exec(csat_stmt)).one()
    claims_stmt = select(col(Handoff.requested_at), col(Handoff.claimed_at)).where(
        *window, col(Handoff.claimed_at).is_not(None)
    )
    claims = (await session.exec(claims_stmt)).all()
    return {
        "handoffs_by_status": by_status,
        "csat_count": csat_count,
        "csat_average": float(csat_avg) if csat_avg is not None else None,
        "wait_to_claim": DurationSummary.of([c - r for r, c in claims if c is not None]),
    }
