"""Rating a closed conversation, and its comment."""

from __future__ import annotations

from crm_core.models import (
    HandoffStatus,
)
from tests.handlers.conftest import BOTH_DATABASES, HarnessFactory
from tests.handlers.desk import (
    GROUP_ID,
    card_shows,
    latest_handoff,
    open_handoff,
    start,
    topic_named,
)


@BOTH_DATABASES
async def test_resolve_closes_topic_and_rating_with_comment_is_stored(
    harness_factory: HarnessFactory,
) -> None:
    harness, group = await start(harness_factory)
    sam = harness.agent("Sam", group=group)
    alice = harness.customer("Alice")
    card = await open_handoff(harness, alice, sam)
    await sam.send("Refund is on its way", thread_id=card.thread_id)
    await alice.expect("Refund is on its way")

    await sam.send("/resolve refund issued", thread_id=card.thread_id)

    await sam.expect("Resolved by Sam: refund issued", thread_id=card.thread_id)
    ask = await alice.expect("How satisfied")
    assert "refund issued" in ask.text
    assert group.topics[card.thread_id].closed
    # The reply auto-claimed it a moment ago: the card follows once it may be edited again.
    await card_shows(harness, card, buttons=["✅ Resolved by Sam"])
    await topic_named(harness, group, card.thread_id, "✅ H-1 · Alice · closed")
    await alice.press("4", ask)
    await alice.expect("rating us 4/5")
    rated = await sam.expect("Alice rated", thread_id=card.thread_id)
    assert "★★★★☆ (4/5)" in rated.text
    await alice.ask("Quick and friendly, thanks", contains="passed your comment on")
    commented = await sam.expect("added to their rating", thread_id=card.thread_id)
    assert "Quick and friendly, thanks" in commented.text

    handoff = await latest_handoff(harness)
    assert handoff.status == HandoffStatus.closed and handoff.summary == "refund issued"
    assert (handoff.csat_score, handoff.csat_comment) == (4, "Quick and friendly, thanks")
    # The next question goes to the bot again, not to the agents.
    await harness.settle()
    agents_before = len(harness.fake.sent_to(GROUP_ID))
    await alice.send("How do I return an item?")
    await harness.settle()
    assert len(harness.fake.sent_to(GROUP_ID)) == agents_before
    assert alice.replies[-1].text != ask.text


async def test_a_command_skips_the_rating_comment(harness_factory: HarnessFactory) -> None:
    harness, group = await start(harness_factory)
    sam = harness.agent("Sam", group=group)
    alice = harness.customer("Alice")
    card = await open_handoff(harness, alice, sam)
    await sam.send("/resolve", thread_id=card.thread_id)
    await alice.press("5", await alice.expect("How satisfied"))
    await alice.expect("rating us 5/5")

    await alice.ask("/help", contains="/complaint")
    await alice.send("Where is my order?")  # a question again, not a comment
    await harness.settle()

    handoff = await latest_handoff(harness)
    assert (handoff.csat_score, handoff.csat_comment) == (5, None)
    assert not any("passed your comment" in m.text for m in alice.replies)


async def test_a_forged_rating_button_cannot_rate_someone_elses_handoff(
    harness_factory: HarnessFactory,
) -> None:
    """Callback data comes from the client; Bob sending Alice's ``sat:<id>:1`` changes nothing."""
    harness, group = await start(harness_factory)
    sam = harness.agent("Sam", group=group)
    alice, bob = harness.customer("Alice"), harness.customer("Bob")
    card = await open_handoff(harness, alice, sam)
    await sam.send("/resolve", thread_id=card.thread_id)
    ask = await alice.expect("How satisfied")
    forged = ask.button("1")["callback_data"]
    bob_message = await bob.ask("/help", contains="/complaint")

    query_id = await bob.callback(forged, bob_message)
    await bob.expect_silence()
    assert harness.fake.answered_callbacks[query_id]  # the spinner stops
    assert (await latest_handoff(harness)).csat_score is None
    await bob.ask("Great service, really", contains="")  # no comment flow was started for Bob
    assert (await latest_handoff(harness)).csat_comment is None

    await alice.press("5", ask)
    await alice.expect("rating us 5/5")
    assert (await latest_handoff(harness)).csat_score == 5


async def test_a_menu_button_after_the_rating_is_not_taken_as_the_comment(
    harness_factory: HarnessFactory,
) -> None:
    harness, group = await start(harness_factory)
    sam = harness.agent("Sam", group=group)
    alice = harness.customer("Alice")
    card = await open_handoff(harness, alice, sam)
    await sam.send("/resolve", thread_id=card.thread_id)
    await alice.press("5", await alice.expect("How satisfied"))
    thanks = await alice.expect("rating us 5/5")
    assert "menu" in thanks.text  # says how to skip the comment

    await alice.ask("📋 My complaints", contains="no complaints")

    handoff = await latest_handoff(harness)
    assert (handoff.csat_score, handoff.csat_comment) == (5, None)
    assert not any("passed your comment" in m.text for m in alice.replies)
