"""Quiet conversations close by themselves; a customer writing soon after a close reopens it."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from crm_core.clock import utcnow
from crm_core.models import Handoff, HandoffStatus, Interaction
from tests.handlers.conftest import BOTH_DATABASES, HarnessFactory
from tests.handlers.desk import card_shows, drain, latest_handoff, open_handoff, start


@BOTH_DATABASES
async def test_a_conversation_nobody_wrote_in_closes_and_asks_for_a_rating(
    harness_factory: HarnessFactory,
) -> None:
    harness, group = await start(harness_factory, auto_resolve_hours=1)
    sam = harness.agent("Sam", group=group)
    alice = harness.customer("Alice")
    card = await open_handoff(harness, alice, sam)
    await sam.press("Claim", card)
    await alice.expect("joined")
    await harness.sweep()  # active: nothing happens
    assert (await latest_handoff(harness)).status == HandoffStatus.claimed

    two_hours_ago = utcnow() - timedelta(hours=2)
    async with harness.session_factory() as session:
        await session.exec(update(Interaction).values(occurred_at=two_hours_ago))
        await session.exec(update(Handoff).values(claimed_at=two_hours_ago))
        await session.commit()
    await drain(harness, alice, sam)
    await harness.sweep()

    await alice.expect("How satisfied")
    await sam.expect("Closed after 1 hour", thread_id=card.thread_id)
    assert card.thread_id is not None and group.topics[card.thread_id].closed
    await card_shows(harness, card, buttons=["💤 Closed after 1 hour"])
    handoff = await latest_handoff(harness)
    assert handoff.status == HandoffStatus.closed and "without activity" in (handoff.summary or "")


async def test_writing_soon_after_a_close_reopens_the_conversation_with_its_agent(
    harness_factory: HarnessFactory,
) -> None:
    harness, group = await start(harness_factory, reopen_hours=24)
    sam = harness.agent("Sam", group=group)
    alice = harness.customer("Alice")
    card = await open_handoff(harness, alice, sam)
    await sam.press("Claim", card)
    await sam.send("/resolve", thread_id=card.thread_id)
    await alice.expect("How satisfied")
    await alice.ask("/help", contains="How I can help")  # a command skips the rating comment
    await card_shows(harness, card, buttons=["✅ Resolved by Sam"])
    await drain(harness, alice, sam)

    await alice.send("Sorry, one more thing: the invoice is wrong")

    await sam.expect("wrote again", thread_id=card.thread_id)
    await sam.expect("the invoice is wrong", thread_id=card.thread_id)
    assert card.thread_id is not None and not group.topics[card.thread_id].closed
    handoff = await latest_handoff(harness)
    assert handoff.status == HandoffStatus.claimed and handoff.closed_at is None
    await card_shows(harness, card, buttons=["✅ Sam is on it"])  # the card follows the reopening
    await sam.send("Fixed it", thread_id=card.thread_id)
    await alice.expect("Fixed it")
