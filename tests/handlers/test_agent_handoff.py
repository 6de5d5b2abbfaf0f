"""Handoffs in the agents' group, end to end: card, claim, relay, notes, resolve, rating."""

from __future__ import annotations

from sqlmodel import col, select

from crm_core.models import Direction, Handoff, HandoffStatus, Interaction, InteractionKind
from tests.fakes.bot_api import FakeChat
from tests.handlers.conftest import Customer, Harness, HarnessFactory

GROUP_ID = -1001000000001


async def start(harness_factory: HarnessFactory, *, forum: bool = True, **settings: object):
    harness = await harness_factory(agent_chat_id=GROUP_ID, **settings)
    group = harness.agents_group(GROUP_ID, forum=forum)
    return harness, group


async def handoff_row(harness: Harness) -> Handoff:
    await harness.settle()
    async with harness.session_factory() as session:
        return (await session.exec(select(Handoff).order_by(col(Handoff.id).desc()))).first()


async def ask_for_human(customer: Customer) -> None:
    await customer.send("My parcel never arrived")
    await customer.expect()
    await customer.ask("/human")


async def test_forum_card_claim_and_relay_both_ways(harness_factory: HarnessFactory) -> None:
    harness, group = await start(harness_factory)
    sam = harness.agent("Sam", group=group)
    alice = harness.customer("Alice", username="alice_w")
    await ask_for_human(alice)

    card = await sam.expect("Handoff H-")
    assert card.thread_id is not None
    topic = group.topics[card.thread_id]
    assert "Alice" in topic.name and "H-" in topic.name
    assert "@alice_w" in card.text and "My parcel never arrived" in card.text

    await sam.press("Claim", card)
    await sam.expect("Sam took this conversation", thread_id=card.thread_id)
    assert "Sam" in harness.fake.message(GROUP_ID, card.message_id).button("Sam")["text"]
    await alice.expect("Sam from our team has joined")

    await alice.send("Hello, anyone?")
    relayed = await sam.expect("Hello, anyone?", thread_id=card.thread_id)
    assert relayed.text.startswith("Alice")

    await sam.send("Hi Alice, I am looking into it", thread_id=card.thread_id)
    answer = await alice.expect("looking into it")
    assert answer.text.startswith("Sam")

    handoff = await handoff_row(harness)
    assert handoff.status == HandoffStatus.claimed and handoff.first_agent_reply_at is not None
