"""/customer: the 360° card of a customer."""

from __future__ import annotations

from tests.handlers.complaint_desk import start_with_complaints
from tests.handlers.conftest import HarnessFactory
from tests.handlers.desk import GROUP_ID, drain


async def test_customer_lookup_one_match_and_several(harness_factory: HarnessFactory) -> None:
    harness = await start_with_complaints(harness_factory)
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
