"""Keyset pages of the CRM's lists, for readers outside the desk (the REST API): a page is
``limit`` rows after a position, newest first, so that walking a long list costs the same per
page and rows written meanwhile neither repeat nor vanish from the pages still to come."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.errors import CustomerNotFound
from crm_core.models import (
    ChannelIdentity,
    Complaint,
    ComplaintStatus,
    Interaction,
    Purchase,
)
from crm_core.services._sql import resolve_customer, unit_of_work


@dataclass(frozen=True)
class TimePosition:
    """Where a page ended in a list ordered by (time, id), both descending."""

    at: datetime
    id: int


def _before(time_column: Any, id_column: Any, position: TimePosition | None) -> Any:
    if position is None:
        return True
    return or_(time_column < position.at, and_(time_column == position.at, id_column < position.id))


async def interactions_page(
    *, session: AsyncSession, customer_id: int, after: TimePosition | None, limit: int
) -> list[Interaction]:
    """The customer's (merge survivor's) timeline, newest first; ``limit + 1`` rows are read so
    the caller knows whether another page follows."""
    async with unit_of_work(session):
        customer = await resolve_customer(session, customer_id)
        stmt = (
            select(Interaction)
            .where(
                Interaction.customer_id == customer.id,
                _before(col(Interaction.occurred_at), col(Interaction.id), after),
            )
            .order_by(col(Interaction.occurred_at).desc(), col(Interaction.id).desc())
            .limit(limit + 1)
        )
        return list((await session.exec(stmt)).all())


async def purchases_page(
    *, session: AsyncSession, customer_id: int, after: TimePosition | None, limit: int
) -> list[Purchase]:
    """The customer's purchases and refunds, newest first (``limit + 1`` rows)."""
    async with unit_of_work(session):
        customer = await resolve_customer(session, customer_id)
        stmt = (
            select(Purchase)
            .where(
                Purchase.customer_id == customer.id,
                _before(col(Purchase.purchased_at), col(Purchase.id), after),
            )
            .order_by(col(Purchase.purchased_at).desc(), col(Purchase.id).desc())
            .limit(limit + 1)
        )
        return list((await session.exec(stmt)).all())


async def complaints_page(
    *,
    session: AsyncSession,
    status: ComplaintStatus | None,
    customer_id: int | None,
    after_id: int | None,
    limit: int,
) -> list[Complaint]:
    """Complaints, newest filed first, optionally of one status and one customer (an absorbed
    customer's id means the survivor; an unknown one has none). ``limit + 1`` rows."""
    async with unit_of_work(session):
        stmt = select(Complaint)
        if customer_id is not None:
            try:
                customer = await resolve_customer(session, customer_id)
            except CustomerNotFound:
                return []
            stmt = stmt.where(Complaint.customer_id == customer.id)
        if status is not None:
            stmt = stmt.where(Complaint.status == status)
        if after_id is not None:
            stmt = stmt.where(col(Complaint.id) < after_id)
        stmt = stmt.order_by(col(Complaint.id).desc()).limit(limit + 1)
        return list((await session.exec(stmt)).all())


async def customer_identities(*, session: AsyncSession, customer_id: int) -> list[ChannelIdentity]:
    """The customer's (merge survivor's) channel identities, oldest first."""
    async with unit_of_work(session):
        customer = await resolve_customer(session, customer_id)
        stmt = (
            select(ChannelIdentity)
            .where(ChannelIdentity.customer_id == customer.id)
            .order_by(col(ChannelIdentity.id))
        )
        return list((await session.exec(stmt)).all())


async def find_identity(
    *, session: AsyncSession, channel: str, external_id: str
) -> ChannelIdentity | None:
    async with unit_of_work(session):
        stmt = select(ChannelIdentity).where(
            ChannelIdentity.channel == channel, ChannelIdentity.external_id == external_id
        )
        return (await session.exec(stmt)).first()
