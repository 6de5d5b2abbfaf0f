"""Who may do what, checked as an attacker would try it: a customer reaching for another's
complaint (by its buttons' data), a non-member using agents' commands and buttons, an agent
using supervisors' commands. Every attempt is refused and changes nothing."""

from __future__ import annotations

import pytest
from sqlmodel import col, func, select

from crm_core.models import ComplaintEvent, Customer, Handoff, HandoffStatus, Interaction
from tests.handlers.conftest import Harness, HarnessFactory
from tests.handlers.desk import GROUP_ID, drain, open_handoff, start

SUPERVISOR_ID = 9001


async def changes(harness: Harness) -> tuple[int, ...]:
    """Complaint events, handoffs claimed, agent replies, ratings, erased customers: what an
    attack would alter."""
    await harness.settle()
    async with harness.session_factory() as session:
        events = (await session.exec(select(func.count()).select_from(ComplaintEvent))).one()
        claimed = (
            await session.exec(select(func.count()).where(Handoff.status != HandoffStatus.waiting))
        ).one()
        replies = (
            await session.exec(select(func.count()).where(Interaction.kind == "agent_reply"))
        ).one()
        rated = (
            await session.exec(select(func.count()).where(col(Handoff.csat_score).is_not(None)))
        ).one()
        erased = (
            await session.exec(select(func.count()).where(col(Customer.anonymized_at).is_not(None)))
        ).one()
    return events, claimed, replies, rated, erased


async def desk(harness_factory: HarnessFactory) -> tuple[Harness, dict[str, object]]:
    harness, group = await start(harness_factory, supervisor_ids=str(SUPERVISOR_ID))
    sam = harness.agent("Sam", group=group)
    eve = harness.agent("Eve", group=group, status="left")  # not a member
    alice, mallory = harness.customer("Alice"), harness.customer("Mallory")
    await alice.ask("/complaint", contains="What is it about?")
    await alice.press("Delivery")
    await alice.expect("describe what happened")
    summary = await alice.ask("My private address is 1 Main St", contains="Submit it?")
    await alice.press("Submit", summary)
    await alice.expect("registered as")
    complaint_card = await sam.expect("Complaint C-")
    await mallory.ask("/start", contains="Mallory")
    bob = harness.customer("Bob")
    handoff_card = await open_handoff(harness, bob, sam)
    await drain(harness, alice, mallory, sam, eve, bob)
    people = {"sam": sam, "eve": eve, "alice": alice, "mallory": mallory, "bob": bob}
    return harness, {**people, "complaint_card": complaint_card, "handoff_card": handoff_card}


ATTEMPTS = {
    "customer views another's complaint": ("mallory", "callback", "cv:1"),
    "customer rates another's conversation": ("mallory", "callback", "sat:1:1"),
    "customer forgets another record": ("mallory", "callback", "fg:yes:1"),
    "non-member claims": ("eve", "callback", "hc:1"),
    "non-member resolves a complaint by button": ("eve", "callback", "ks:1:resolved"),
    "non-member /customer": ("eve", "group", "/customer Alice"),
    "non-member /status": ("eve", "group", "/status C-000001 resolved"),
    "non-member /queue": ("eve", "group", "/queue"),
    "non-member replies in a topic": ("eve", "topic", "hello Bob, I am support"),
    "customer uses /customer": ("mallory", "private", "/customer Alice"),
    "customer uses /status": ("mallory", "private", "/status C-000001 closed"),
    "agent uses /stats": ("sam", "group", "/stats"),
    "agent uses /export": ("sam", "group", "/export 30d"),
    "agent uses /snippet": ("sam", "group", "/snippet add x y"),
    "customer uses /sla": ("mallory", "private", "/sla"),
}


@pytest.mark.parametrize("attempt", sorted(ATTEMPTS))
async def test_every_attempt_is_refused_and_changes_nothing(
    harness_factory: HarnessFactory, attempt: str
) -> None:
    harness, d = await desk(harness_factory)
    before = await changes(harness)
    who, how, what = ATTEMPTS[attempt]
    person = d[who]
    fake = harness.fake
    if how == "callback":
        target = (
            d["handoff_card"] if who == "eve" and what.startswith("hc") else d["complaint_card"]
        )
        if who == "mallory":  # pressed on the customer's own chat, data crafted
            target = fake.sent_to(person.id)[-1]  # type: ignore[attr-defined]
        fake.push_callback(person.user, what, target)  # type: ignore[attr-defined]
    elif how == "topic":
        card = d["handoff_card"]
        await person.send(what, thread_id=card.thread_id)  # type: ignore[attr-defined]
    else:
        await person.send(what)  # type: ignore[attr-defined]
    await harness.settle()

    assert await changes(harness) == before, attempt
    leaked = [
        m.text
        for m in fake.messages
        if m.from_bot
        and m.chat_id != GROUP_ID
        and "1 Main St" in m.text
        and m.chat_id != d["alice"].id  # type: ignore[attr-defined]
    ]
    assert leaked == [], attempt
    private_to_attacker = [m.text for m in fake.sent_to(person.id)]  # type: ignore[attr-defined]
    assert not any("1 Main St" in text or "Alice" in text for text in private_to_attacker[-3:])
