"""/human: asking for a person."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import select

from crm_core.business_hours import DAYS
from crm_core.clock import utcnow
from crm_core.models import (
    Handoff,
    HandoffStatus,
)
from tests.handlers.conftest import BOTH_DATABASES, Harness, HarnessFactory

AGENTS_GROUP_ID = -1001000000001  # the agents' supergroup in the fake


@BOTH_DATABASES
async def test_human_opens_one_handoff(harness_factory: HarnessFactory) -> None:
    harness = await harness_factory(agent_chat_id=AGENTS_GROUP_ID)
    harness.agents_group(AGENTS_GROUP_ID)
    alice = harness.customer("Alice")

    await alice.ask("/human", contains="They will reply here")

    async with harness.session_factory() as session:
        (handoff,) = (await session.exec(select(Handoff))).all()
    assert handoff.status == HandoffStatus.waiting
    assert handoff.customer_id == await harness.customer_id_of(alice)
    assert handoff.next_reminder_at is not None
    # Asking again while it is open (the agents' relay stops plain messages, not commands).
    await alice.ask("/human", contains="already waiting")
    async with harness.session_factory() as session:
        assert len((await session.exec(select(Handoff))).all()) == 1


async def test_a_customer_asking_for_a_person_is_told_their_place_and_the_usual_wait(
    harness_factory: HarnessFactory,
) -> None:
    harness = await harness_factory(agent_chat_id=AGENTS_GROUP_ID)
    group = harness.agents_group(AGENTS_GROUP_ID)
    sam = harness.agent("Sam", group=group)
    alice, bob, carol = (
        harness.customer("Alice"),
        harness.customer("Bob"),
        harness.customer("Carol"),
    )

    first = await alice.ask("/human", contains="They will reply here")
    assert "You are next in line." in first.text  # no history yet: no promise of a time
    second = await bob.ask("/human", contains="They will reply here")
    assert "You are number 2 in line." in second.text

    card = await sam.expect("Alice")
    await sam.press("Claim", card)
    await alice.expect("joined")
    third = await carol.ask("/human", contains="They will reply here")
    assert "number 2 in line; people usually hear from us within about" in third.text


async def test_human_without_an_agents_group_promises_no_reply(harness: Harness) -> None:
    alice = harness.customer("Alice")

    reply = await alice.ask("/human", contains="no one from our team is connected")
    assert "will reply" not in reply.text
    assert reply.button("File a complaint")  # the way forward that does work
    async with harness.session_factory() as session:
        (handoff,) = (await session.exec(select(Handoff))).all()
    assert handoff.status == HandoffStatus.waiting  # the request is on record all the same


async def test_outside_business_hours_the_customer_is_told_when_a_person_will_reply(
    harness_factory: HarnessFactory,
) -> None:
    tomorrow = utcnow() + timedelta(days=1)
    spec = f"{DAYS[tomorrow.weekday()]} 09:00-17:00"  # closed all of today
    harness = await harness_factory(agent_chat_id=AGENTS_GROUP_ID, business_hours=spec)
    harness.agents_group(AGENTS_GROUP_ID)
    alice = harness.customer("Alice")

    told = await alice.ask("/human", contains="They will reply here")

    assert f"We are closed right now: a person will reply from {tomorrow:%d %b %Y}, 09:00 UTC" in (
        told.text
    )
