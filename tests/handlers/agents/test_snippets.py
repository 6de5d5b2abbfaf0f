"""Canned replies: kept by supervisors, sent by agents with /s name."""

from __future__ import annotations

from tests.handlers.conftest import HarnessFactory
from tests.handlers.desk import drain, open_handoff, start

SUPERVISOR_ID = 9001


async def test_a_supervisor_keeps_snippets_and_an_agent_sends_one_with_the_name_filled_in(
    harness_factory: HarnessFactory,
) -> None:
    harness, group = await start(harness_factory, supervisor_ids=str(SUPERVISOR_ID))
    sam = harness.agent("Sam", group=group)
    sue = harness.agent("Sue", group=group, user_id=SUPERVISOR_ID)
    alice = harness.customer("Alice", last_name="Smith")
    card = await open_handoff(harness, alice, sam)
    await drain(harness, alice, sam, sue)

    await sue.send("/snippet add refund Hi {{ name }}, refunds take 3 working days. <b>Thanks</b>")
    await sue.expect("Saved snippet refund")
    await sam.send("/snippet add sneaky text")  # an agent is no supervisor
    await sam.expect("supervisors")
    await sam.send("/snippets")
    listed = await sam.expect("Snippets")
    assert "refund — Hi {{ name }}, refunds take 3" in listed.text

    await sam.send("/s refund", thread_id=card.thread_id)
    told = await alice.expect("refunds take 3 working days")
    # The customer's first name filled in; the text is shown literally (no HTML from staff).
    assert told.text == "Sam (support team): Hi Alice, refunds take 3 working days. <b>Thanks</b>"

    await sam.send("/s nothing-like-this", thread_id=card.thread_id)
    await sam.expect("There is no snippet “nothing-like-this”")
    await sue.send("/snippet add broken Hello {{ name")
    await sue.expect("cannot be used")
    await sue.send("/snippet add spy {{ customer.phone }}")
    await sue.expect("cannot be used")
    await alice.expect_silence()
