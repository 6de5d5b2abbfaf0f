"""Figures about the desk that the runtime reports (``/metrics``, ``deskbot doctor``)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select, text
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.models import Handoff, HandoffStatus
from crm_core.services._sql import unit_of_work


@dataclass(frozen=True, slots=True)
class HandoffCounts:
    open: int  # waiting or claimed
    waiting: int  # no agent has claimed them yet


async def handoff_counts(*, session: AsyncSession) -> HandoffCounts:
    status = Handoff.__table__.c.status  # type: ignore[attr-defined]
    stmt = select(status, func.count()).where(status != HandoffStatus.closed.value).group_by(status)
    async with unit_of_work(session):
        rows = dict((await session.exec(stmt)).all())  # type: ignore[call-overload]
    waiting = int(rows.get(HandoffStatus.waiting.value, 0))
    return HandoffCounts(open=sum(int(n) for n in rows.values()), waiting=waiting)


async def database_reachable(*, session: AsyncSession) -> None:
    """Raise when the database cannot answer a trivial query."""
    async with unit_of_work(session):
        await session.exec(text("SELECT 1"))  # type: ignore[call-overload]
