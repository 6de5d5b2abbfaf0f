"""/queue: who is waiting, and the open complaints."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import select
from telegram import Update
from telegram.ext import CommandHandler

from crm_core.clock import utcnow
from crm_core.models import Customer as CustomerRow
from crm_core.models import Purchase
from crm_core.services.complaints import file_complaint
from handlers.agents.announce import announce_complaint
from handlers.core.context import DeskContext
from tests.handlers.conftest import Harness, HarnessFactory
from tests.handlers.desk import GROUP_ID, drain, open_handoff


async def file_test_complaint(update: Update, context: DeskContext) -> None:
    """/filetest <text>: file a delivery complaint for the sender and announce it."""
    assert context.customer_id is not None
    complaint = await file_complaint(
        session=context.session,
        customer_id=context.customer_id,
        category="delivery",
        severity="high",
        description=" ".join(context.args or []) or "Parcel lost",
    )
    assert complaint.id is not None
    await announce_complaint(context, complaint_id=complaint.id)


async def start(harness_factory: HarnessFactory, *, forum: bool = True) -> Harness:
    harness = await harness_factory(
        agent_chat_id=GROUP_ID, extra_handlers=[CommandHandler("filetest", file_test_complaint)]
    )
    harness.agents_group(GROUP_ID, forum=forum)
    return harness


async def test_queue_lists_waiting_oldest_first_and_marks_valuable_customers(
    harness_factory: HarnessFactory,
) -> None:
    harness = await start(harness_factory)
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
