"""/cancel: leaving a flow, withdrawing a request for a person."""

from __future__ import annotations

from crm_core.models import (
    HandoffStatus,
)
from tests.handlers.conftest import HarnessFactory
from tests.handlers.desk import GROUP_ID, latest_handoff, start


async def test_cancel_withdraws_a_waiting_request_and_tells_the_agents(
    harness_factory: HarnessFactory,
) -> None:
    harness, group = await start(harness_factory)
    sam = harness.agent("Sam", group=group)
    alice = harness.customer("Alice")
    await alice.ask("/human", contains="They will reply here")
    card = await sam.expect("Handoff")

    await alice.ask("/cancel", contains="withdrawn your request")
    await sam.expect("withdrew this request", thread_id=card.thread_id)
    handoff = await latest_handoff(harness)
    assert handoff.status is HandoffStatus.closed
    assert handoff.summary == "withdrawn by the customer"
    await alice.ask("/cancel", contains="There is nothing to cancel")  # nothing left


async def test_cancel_does_not_withdraw_a_claimed_conversation(
    harness_factory: HarnessFactory,
) -> None:
    harness, group = await start(harness_factory)
    sam = harness.agent("Sam", group=group)
    alice = harness.customer("Alice")
    await alice.ask("/human", contains="They will reply here")
    card = await sam.expect("Handoff")
    await sam.press("Claim", card)
    await harness.settle()

    await alice.ask("/cancel", contains="already looking after you")
    assert (await latest_handoff(harness)).status is HandoffStatus.claimed


async def test_a_withdrawn_request_leaves_no_claim_button_and_closes_its_topic(
    harness_factory: HarnessFactory,
) -> None:
    harness, group = await start(harness_factory)
    sam = harness.agent("Sam", group=group)
    alice = harness.customer("Alice")
    await alice.ask("/human", contains="They will reply here")
    card = await sam.expect("Handoff")

    await alice.ask("/cancel", contains="withdrawn your request")
    await sam.expect("withdrew this request", thread_id=card.thread_id)
    await harness.settle()

    shown = harness.fake.message(GROUP_ID, card.message_id)
    assert [b["text"] for b in shown.inline_buttons()] == ["🚫 Withdrawn by the customer"]
    assert card.thread_id is not None and group.topics[card.thread_id].closed
