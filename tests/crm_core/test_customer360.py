from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.errors import CustomerNotFound
from crm_core.models import (
    Complaint,
    ComplaintCategory,
    ComplaintStatus,
    Direction,
    Handoff,
    HandoffStatus,
    InteractionKind,
)
from crm_core.services.customer360 import get_customer_360
from crm_core.services.customers import identify_customer, merge_customers
from crm_core.services.interactions import log_interaction
from crm_core.services.purchases import record_purchase
from crm_core.services.rfm import NEW, invalidate_rfm_cache

NOW = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _fresh_rfm_cache() -> Iterator[None]:
    invalidate_rfm_cache()
    yield
    invalidate_rfm_cache()


async def _setup(session: AsyncSession) -> tuple[int, int]:
    c = await identify_customer(
        session=session, channel="telegram", external_id="1", name="Ann", username="ann"
    )
    other = await identify_customer(session=session, channel="web", external_id="w1")
    assert c.id and other.id
    await merge_customers(
        session=session, survivor_id=c.id, absorbed_id=other.id, now=NOW - timedelta(hours=1)
    )
    for i in range(5):
        await log_interaction(
            session=session,
            customer_id=c.id,
            channel="telegram",
            direction=Direction.inbound,
            kind=InteractionKind.message,
            text=f"m{i}",
            occurred_at=NOW - timedelta(minutes=10 - i),
        )
    for days, amount in ((30, 2000), (3, 500), (1, -300)):
        await record_purchase(
            session=session,
            customer_id=c.id,
            amount_minor=amount,
            currency="EUR",
            purchased_at=NOW - timedelta(days=days),
        )
    for ref, status in (("C-1", ComplaintStatus.open), ("C-2", ComplaintStatus.closed)):
        session.add(
            Complaint(
                customer_id=c.id,
                reference=ref,
                category=ComplaintCategory.price,
                description="too dear",
                status=status,
            )
        )
    session.add(Handoff(customer_id=c.id, status=HandoffStatus.closed))
    session.add(Handoff(customer_id=c.id, status=HandoffStatus.waiting, reason="call me"))
    await session.commit()
    return c.id, other.id


async def test_360_shows_everything_an_agent_needs(session: AsyncSession) -> None:
    cid, absorbed = await _setup(session)

    view = await get_customer_360(
        session=session, customer_id=absorbed, interactions_limit=3, now=NOW
    )

    assert view.customer.id == cid and view.customer.name == "Ann"
    assert {(i.channel, i.external_id) for i in view.identities} == {
        ("telegram", "1"),
        ("web", "w1"),
    }
    assert (view.lifetime_value_minor, view.currency, view.purchase_count) == (2200, "EUR", 2)
    assert view.last_purchase_at == NOW - timedelta(days=3)
    assert view.first_purchase_at == NOW - timedelta(days=30)  # a refund is no first purchase
    assert [h.status for h in view.past_handoffs] == [HandoffStatus.closed]
    assert [i.text for i in view.recent_interactions] == ["m2", "m3", "m4"]
    assert [c.reference for c in view.open_complaints] == ["C-1"]
    assert view.open_handoff is not None and view.open_handoff.reason == "call me"
    assert view.rfm is not None
    assert (view.rfm.customer_id, view.rfm.frequency, view.rfm.segment) == (cid, 2, NEW)


async def test_360_of_a_newcomer(session: AsyncSession) -> None:
    c = await identify_customer(session=session, channel="telegram", external_id="9")
    assert c.id
    view = await get_customer_360(session=session, customer_id=c.id, now=NOW)
    assert (view.lifetime_value_minor, view.currency, view.purchase_count) == (0, None, 0)
    assert view.last_purchase_at is None and view.rfm is None
    assert view.first_purchase_at is None and view.past_handoffs == ()
    assert view.recent_interactions == [] and view.open_complaints == []
    assert view.open_handoff is None


async def test_360_uses_few_queries(session: AsyncSession, engine: AsyncEngine) -> None:
    cid, _ = await _setup(session)
    await get_customer_360(session=session, customer_id=cid, now=NOW)  # warm the RFM cache
    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        session.expunge_all()
        await get_customer_360(session=session, customer_id=cid, now=NOW)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)
    selects = [s for s in statements if s.lstrip().upper().startswith(("SELECT", "WITH"))]
    assert len(selects) <= 7, selects


async def test_360_of_unknown_customer(session: AsyncSession) -> None:
    with pytest.raises(CustomerNotFound):
        await get_customer_360(session=session, customer_id=12345)
