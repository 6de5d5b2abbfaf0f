"""Every update is acted on once, however often Telegram delivers it (an offset not confirmed
before a restart, a webhook answered too late): no extra row, no extra message. Each case sends
one update, waits for its effects, then has Telegram deliver it again (twice, then three times
in all) and checks that nothing more happened."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from sqlmodel import func, select

from crm_core.models import ComplaintEvent, Handoff, Interaction
from tests.handlers.conftest import BOTH_DATABASES, Agent, Customer, Harness, HarnessFactory
from tests.handlers.desk import GROUP_ID, drain, open_handoff, start

SUPERVISOR_ID = 9001


async def footprint(harness: Harness) -> tuple[int, int, int, int]:
    """Bot messages sent, interactions, complaint events, handoffs."""
    await harness.settle()
    async with harness.session_factory() as session:
        counts = [
            (await session.exec(select(func.count()).select_from(model))).one()
            for model in (Interaction, ComplaintEvent, Handoff)
        ]
    sent = sum(1 for m in harness.fake.messages if m.from_bot)
    return (sent, *counts)  # type: ignore[return-value]


# (harness, sam, sue the supervisor, alice, ids of the setup) -> sends the one update.
Case = Callable[[Harness, Agent, Agent, Customer, dict[str, object]], Awaitable[object]]


async def file_complaint(harness: Harness, alice: Customer) -> str:
    await alice.ask("/complaint", contains="What is it about?")
    await alice.press("Delivery")
    await alice.expect("describe what happened")
    summary = await alice.ask("The parcel arrived crushed", contains="Submit it?")
    await alice.press("Submit", summary)
    filed = await alice.expect("registered as")
    return next(w for w in filed.text.split() if w.startswith("C-")).strip(".")


CASES: dict[
    str, Callable[[Harness, Agent, Agent, Customer, dict[str, object]], Awaitable[None]]
] = {
    "customer question": lambda h, sam, sue, alice, ctx: alice.send("How do I return an item?"),
    "customer /start": lambda h, sam, sue, alice, ctx: alice.send("/start"),
    "customer /mycomplaints": lambda h, sam, sue, alice, ctx: alice.send("/mycomplaints"),
    "agent reply in the topic": lambda h, sam, sue, alice, ctx: sam.send(
        "We are on it", thread_id=ctx["handoff_topic"]
    ),
    "agent ! note": lambda h, sam, sue, alice, ctx: sam.send(
        "! internal", thread_id=ctx["handoff_topic"]
    ),
    "agent /status": lambda h, sam, sue, alice, ctx: sam.send(f"/status {ctx['ref']} in_progress"),
    "agent /severity": lambda h, sam, sue, alice, ctx: sam.send(f"/severity {ctx['ref']} high"),
    "agent /assign": lambda h, sam, sue, alice, ctx: sam.send(f"/assign {ctx['ref']}"),
    "agent /queue": lambda h, sam, sue, alice, ctx: sam.send("/queue"),
    "agent /customer": lambda h, sam, sue, alice, ctx: sam.send("/customer Alice"),
    "comment in the complaint's topic": lambda h, sam, sue, alice, ctx: sam.send(
        "checked the warehouse", thread_id=ctx["complaint_topic"]
    ),
    "supervisor /stats": lambda h, sam, sue, alice, ctx: sue.send("/stats"),
}


@BOTH_DATABASES
@pytest.mark.parametrize("case", sorted(CASES))
async def test_a_redelivered_update_changes_nothing_more(
    harness_factory: HarnessFactory, case: str
) -> None:
    harness, group = await start(harness_factory, supervisor_ids=str(SUPERVISOR_ID))
    sam = harness.agent("Sam", group=group)
    sue = harness.agent("Sue", group=group, user_id=SUPERVISOR_ID)
    alice = harness.customer("Alice")
    card = await open_handoff(harness, alice, sam)
    reference = await file_complaint(harness, alice)
    complaint_card = await sam.expect("Complaint C-")
    await drain(harness, alice, sam, sue)
    context = {
        "handoff_topic": card.thread_id,
        "complaint_topic": complaint_card.thread_id,
        "ref": reference,
    }

    await CASES[case](harness, sam, sue, alice, context)
    after_once = await footprint(harness)
    update_id = harness.fake.delivered_update_ids[-1]
    for _ in range(2):  # delivered three times in all
        harness.fake.redeliver(update_id)
        await harness.settle()

    assert harness.fake.delivered_update_ids.count(update_id) == 3
    assert await footprint(harness) == after_once, case
    assert not [m for m in harness.fake.messages if m.chat_id == GROUP_ID and "rror" in m.text]
