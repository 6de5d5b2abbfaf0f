"""Data subject rights: export everything deskbot holds about a customer, or forget them.

Forgetting is delete-and-anonymise: whatever identifies or was said by the person goes (name,
contact data, tags, channel identities, message texts, complaint descriptions, notes, CSAT
comments, order references, conversation state), while the skeleton of each row stays (kinds,
times, categories, statuses, scores, amounts) so that statistics and RFM keep adding up.
"""

from datetime import datetime
from typing import Any

from sqlalchemy import delete, update
from sqlmodel import SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.clock import utcnow
from crm_core.models import (
    ChannelIdentity,
    Complaint,
    ComplaintEvent,
    Customer,
    Direction,
    FlowState,
    Handoff,
    HandoffStatus,
    Interaction,
    InteractionKind,
    Purchase,
)
from crm_core.services._sql import unit_of_work
from crm_core.services.customers import resolve_customer

ERASED_DESCRIPTION = ""


def _dump(row: SQLModel, *, exclude: set[str] | None = None) -> dict[str, Any]:
    return row.model_dump(mode="json", exclude=exclude)


async def export_customer_data(*, session: AsyncSession, customer_id: int) -> dict[str, Any]:
    """Everything stored about the customer (the merge survivor), as JSON-ready data."""
    async with unit_of_work(session):
        customer = await resolve_customer(session, customer_id)
        cid = customer.id
        merged = await _all(session, select(Customer).where(Customer.merged_into_id == cid))
        identities = await _all(
            session, select(ChannelIdentity).where(ChannelIdentity.customer_id == cid)
        )
        complaints = await _all(session, select(Complaint).where(Complaint.customer_id == cid))
        complaint_ids = [c.id for c in complaints]
        handoffs = await _all(session, select(Handoff).where(Handoff.customer_id == cid))
        interactions = await _all(
            session,
            select(Interaction)
            .where(
                (col(Interaction.customer_id) == cid)
                | col(Interaction.complaint_id).in_(complaint_ids)
                | col(Interaction.handoff_id).in_([h.id for h in handoffs])
            )
            .order_by(col(Interaction.occurred_at), col(Interaction.id)),
        )
        events = await _all(
            session,
            select(ComplaintEvent)
            .where(col(ComplaintEvent.complaint_id).in_(complaint_ids))
            .order_by(col(ComplaintEvent.created_at), col(ComplaintEvent.id)),
        )
        purchases = await _all(
            session,
            select(Purchase).where(Purchase.customer_id == cid).order_by(col(Purchase.id)),
        )
        person_ids = [cid, *(m.id for m in merged)]
        flows = await _all(
            session, select(FlowState).where(col(FlowState.customer_id).in_(person_ids))
        )
    events_by_complaint: dict[int, list[dict[str, Any]]] = {}
    for event in events:
        events_by_complaint.setdefault(event.complaint_id, []).append(_dump(event))
    return {
        "exported_at": utcnow().isoformat(),
        "customer": _dump(customer),
        "merged_customers": [_dump(m) for m in merged],
        "identities": [_dump(i) for i in identities],
        "interactions": [_dump(i) for i in interactions],
        "complaints": [
            {**_dump(c), "events": events_by_complaint.get(c.id or 0, [])} for c in complaints
        ],
        "handoffs": [_dump(h) for h in handoffs],
        "purchases": [_dump(p) for p in purchases],
        "conversation_state": [_dump(f) for f in flows],
    }


async def _all(session: AsyncSession, stmt: Any) -> list[Any]:
    return list((await session.exec(stmt)).all())


async def forget_customer(
    *, session: AsyncSession, customer_id: int, now: datetime | None = None
) -> None:
    """Erase the person, keep the statistics (see the module docstring).

    Their channel identities are deleted, so the next message from the same Telegram account
    starts a brand-new customer. An open handoff is closed (nobody could be answered any more).
    """
    now = now or utcnow()
    async with unit_of_work(session):
        customer = await resolve_customer(session, customer_id)
        cid = customer.id
        assert cid is not None
        # The person plus every tombstone merged into them.
        person = (col(Customer.id) == cid) | (col(Customer.merged_into_id) == cid)
        await session.exec(
            update(Customer)
            .where(person)
            .values(name=None, phone=None, email=None, external_id=None, tags=[])
        )
        await session.exec(
            update(Customer).where(col(Customer.id) == cid).values(anonymized_at=now)
        )
        # Rows still keyed by a tombstone's id count as theirs too (e.g. a flow a handler saved
        # under the id it held while the merge happened).
        ids = list((await session.exec(select(Customer.id).where(person))).all())
        await session.exec(delete(ChannelIdentity).where(col(ChannelIdentity.customer_id).in_(ids)))
        await session.exec(delete(FlowState).where(col(FlowState.customer_id).in_(ids)))
        await _wipe_content(session, ids, now)
        await session.flush()
        session.add(
            Interaction(
                customer_id=cid,
                channel="system",
                direction=Direction.internal,
                kind=InteractionKind.system,
                details={"event": "erased"},
                occurred_at=now,
            )
        )


async def _wipe_content(session: AsyncSession, ids: list[int | None], now: datetime) -> None:
    complaint_ids = select(Complaint.id).where(col(Complaint.customer_id).in_(ids))
    handoff_ids = select(Handoff.id).where(col(Handoff.customer_id).in_(ids))
    # Also agent-side entries about their complaints and handoffs (which may carry no customer).
    await session.exec(
        update(Interaction)
        .where(
            (col(Interaction.customer_id).in_(ids))
            | col(Interaction.complaint_id).in_(complaint_ids)
            | col(Interaction.handoff_id).in_(handoff_ids)
        )
        .values(text=None, details={}, idempotency_key=None)
    )
    await session.exec(
        update(Complaint)
        .where(col(Complaint.customer_id).in_(ids))
        .values(description=ERASED_DESCRIPTION, attachments=[], resolution_note=None)
    )
    await session.exec(
        update(ComplaintEvent)
        .where(col(ComplaintEvent.complaint_id).in_(complaint_ids))
        .values(note=None)
    )
    await session.exec(
        update(Handoff)
        .where(col(Handoff.customer_id).in_(ids), col(Handoff.status) != HandoffStatus.closed)
        .values(status=HandoffStatus.closed, closed_at=now, next_reminder_at=None)
    )
    await session.exec(
        update(Handoff)
        .where(col(Handoff.customer_id).in_(ids))
        .values(reason=None, summary=None, csat_comment=None)
    )
    await session.exec(
        update(Purchase).where(col(Purchase.customer_id).in_(ids)).values(external_ref=None)
    )
