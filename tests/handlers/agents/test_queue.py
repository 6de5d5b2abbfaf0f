"""/queue: who is waiting, and the open complaints."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import select

from crm_core.clock import utcnow
from crm_core.models import Customer as CustomerRow
from crm_core.models import Purchase
from tests.handlers.complaint_desk import start_with_complaints
from tests.handlers.conftest import HarnessFactory
from tests.handlers.desk import GROUP_ID, drain, open_handoff


async def test_queue_lists_waiting_oldest_first_and_marks_valuable_customers(
    harness_factory: HarnessFactory,
) -> None:
    harness = await start_with_complaints(harness_factory)
    sam = harness.agent("Sam", group=harness.fake.chats[GROUP_ID])
    alice = harness.customer("Alice")
    bob = harness.customer("Bob")
    await open_handoff(harness, alice, sam)
    await open_handoff(harness, bob, sam)
    await bob.send("/filetest Late again")
    await harness.settle()
    # Bob is a big spender: many recent purchases.
    async with harness.session_factory() as session:
        ids = {c.name: c.id for c in (await session.exec(select(CustomerRow))).all()}
        for days in range(12):
            when = utcnow() - timedelta(days=days)
            session.add(Purchase(customer_id=ids["Bob"], amount_minor=50_000, purchased_at=when))
        when = utcnow() - timedelta(days=300)
        session.add(Purchase(customer_id=ids["Alice"], amount_minor=500, purchased_at=when))
        await session.commit()
    await drain(harness, sam)

    await sam.send("/queue")
    queue = await sam.expect("Waiting for a person")

    lines = queue.text.splitlines()
    waiting = [line for line in lines if "H-" in line]
    assert ["Alice" in waiting[0], "Bob" in waiting[1]] == [True, True]
    assert waiting[1].startswith("💎") and not waiting[0].startswith("💎")
    assert any("C-" in line and "Bob" in line and "unassigned" in line for line in lines)
