"""Everything an agent needs to know about a customer, on one card, in a handful of queries."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, func
from sqlalchemy import select as sa_select
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.clock import as_utc, utcnow
from crm_core.models import (
    ChannelIdentity,
    ChannelIdentityPublic,
    Complaint,
    ComplaintPublic,
    ComplaintStatus,
    CustomerPublic,
    Handoff,
    HandoffPublic,
    HandoffStatus,
    InteractionPublic,
    Purchase,
)
from crm_core.services._sql import unit_of_work
from crm_core.services.customers import resolve_customer
from crm_core.services.interactions import recent_interactions_no_commit
from crm_core.services.rfm import MIXED_CURRENCY, RfmScore, customer_rfm_no_commit

PAST_HANDOFFS = 5


@dataclass(frozen=True)
class Customer360:
    customer: CustomerPublic
    identities: list[ChannelIdentityPublic]
    lifetime_value_minor: int
    currency: str | None
    purchase_count: int
    last_purchase_at: datetime | None
    recent_interactions: list[InteractionPublic]
    open_complaints: list[ComplaintPublic]
    open_handoff: HandoffPublic | None
    rfm: RfmScore | None
    first_purchase_at: datetime | None = None
    # The latest finished conversations with a person, newest first (their ratings included).
    past_handoffs: tuple[HandoffPublic, ...] = ()


async def get_customer_360(
    *,
    session: AsyncSession,
    customer_id: int,
    interactions_limit: int = 20,
    now: datetime | None = None,
) -> Customer360:
    """The customer (merge survivor) with identities, money, recent timeline, open work, RFM.

    Lifetime value is the net sum of all purchases and refunds; ``currency`` is None without
    purchases and ``"XXX"`` when they mix currencies.
    """
    now = as_utc(now or utcnow())
    async with unit_of_work(session):
        customer = await resolve_customer(session, customer_id)
        cid = customer.id
        identities = (
            await session.exec(
                select(ChannelIdentity)
                .where(ChannelIdentity.customer_id == cid)
                .order_by(col(ChannelIdentity.id))
            )
        ).all()
        money_query: Any = sa_select(
            func.coalesce(func.sum(Purchase.amount_minor), 0),
            func.sum(case((col(Purchase.amount_minor) > 0, 1), else_=0)),
            func.max(case((col(Purchase.amount_minor) > 0, Purchase.purchased_at))),
            func.min(Purchase.currency),
            func.max(Purchase.currency),
            func.min(case((col(Purchase.amount_minor) > 0, Purchase.purchased_at))),
        ).where(col(Purchase.customer_id) == cid)
        money = (await session.exec(money_query)).one()
        interactions = await recent_interactions_no_commit(session, cid, limit=interactions_limit)
        complaints = (
            await session.exec(
                select(Complaint)
                .where(Complaint.customer_id == cid, Complaint.status != ComplaintStatus.closed)
                .order_by(col(Complaint.created_at), col(Complaint.id))
            )
        ).all()
        # One query for the open conversation and the last finished ones: a customer has one
        # open handoff at a time, and it is their newest (a merge may leave an older one open,
        # which is still found among these).
        handoffs = (
            await session.exec(
                select(Handoff)
                .where(Handoff.customer_id == cid)
                .order_by(col(Handoff.id).desc())
                .limit(PAST_HANDOFFS + 2)
            )
        ).all()
        handoff = next((h for h in handoffs if h.status != HandoffStatus.closed), None)
        past = [h for h in handoffs if h.status == HandoffStatus.closed][:PAST_HANDOFFS]
        rfm = await customer_rfm_no_commit(session, cid, now=now)
    total, count, last_at, cur_min, cur_max, first_at = money
    return Customer360(
        customer=CustomerPublic.model_validate(customer),
        identities=[ChannelIdentityPublic.model_validate(i) for i in identities],
        lifetime_value_minor=int(total),
        currency=None if cur_min is None else (cur_min if cur_min == cur_max else MIXED_CURRENCY),
        purchase_count=int(count or 0),
        last_purchase_at=as_utc(last_at) if last_at is not None else None,
        recent_interactions=[InteractionPublic.model_validate(i) for i in interactions],
        open_complaints=[ComplaintPublic.model_validate(c) for c in complaints],
        open_handoff=HandoffPublic.model_validate(handoff) if handoff else None,
        rfm=rfm,
        first_purchase_at=as_utc(first_at) if first_at is not None else None,
        past_handoffs=tuple(HandoffPublic.model_validate(h) for h in past),
    )
