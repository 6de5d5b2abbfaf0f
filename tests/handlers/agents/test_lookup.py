"""/customer: the 360° card of a customer."""

from __future__ import annotations

from telegram import Update
from telegram.ext import CommandHandler

from crm_core.services.complaints import file_complaint
from handlers.agents.announce import announce_complaint
from handlers.core.context import DeskContext
from tests.handlers.conftest import Harness, HarnessFactory
from tests.handlers.desk import GROUP_ID, drain


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


async def test_customer_lookup_one_match_and_several(harness_factory: HarnessFactory) -> None:
    harness = await start(harness_factory)
    sam = harness.agent("Sam", group=harness.fake.chats[GROUP_ID])
    alice = harness.customer("Alice", last_name="Walker", username="alice_w")
    bob = harness.customer("Alex", last_name="Stone")
    await alice.send("/filetest Damaged")
    await bob.send("hello")
    await drain(harness, sam)

    await sam.send("/customer @alice_w")
    view = await sam.expect("Alice Walker")
    assert "@alice_w" in view.text and "Open complaints" in view.text and "C-" in view.text

    await sam.send("/customer Al")
    listing = await sam.expect("Several customers match")
    assert "Alice Walker" in listing.text and "Alex Stone" in listing.text

    await sam.send("/customer nobody-like-this")
    await sam.expect("No customer matches")
