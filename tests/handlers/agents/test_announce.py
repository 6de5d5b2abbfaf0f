"""Posting into the agents' group: topics and cards, recovered when Telegram says no."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from crm_core.models import HandoffStatus
from handlers.agents.cards import TOPIC_NAME_LIMIT, handoff_topic_name
from tests.handlers.conftest import HarnessFactory
from tests.handlers.desk import (
    GROUP_ID,
    drain,
    latest_handoff,
    open_handoff,
    start,
    topic_named,
)


async def test_deleted_topic_is_recreated_and_the_relay_carries_on(
    harness_factory: HarnessFactory,
) -> None:
    harness, group = await start(harness_factory)
    sam = harness.agent("Sam", group=group)
    alice = harness.customer("Alice")
    card = await open_handoff(harness, alice, sam)
    assert card.thread_id is not None
    harness.fake.delete_topic(GROUP_ID, card.thread_id)

    await alice.send("Still waiting...")

    continued = await sam.expect("(continued)")
    new_thread = continued.thread_id
    assert new_thread is not None and new_thread != card.thread_id
    assert continued.button("Claim")  # still waiting: claimable from the new card
    relayed = await sam.expect("Still waiting...", thread_id=new_thread)
    assert relayed.text == "Alice: Still waiting..."
    assert (await latest_handoff(harness)).topic_id == new_thread
    await sam.send("Here now", thread_id=new_thread)
    await alice.expect("Here now")


async def test_closed_topic_is_reopened(harness_factory: HarnessFactory) -> None:
    harness, group = await start(harness_factory)
    sam = harness.agent("Sam", group=group)
    alice = harness.customer("Alice")
    card = await open_handoff(harness, alice, sam)
    assert card.thread_id is not None
    group.topics[card.thread_id].closed = True
    harness.fake.fail_next("sendMessage", 400, "Bad Request: TOPIC_CLOSED")

    await alice.send("Hello?")

    await sam.expect("Alice: Hello?", thread_id=card.thread_id)
    assert not group.topics[card.thread_id].closed


async def test_a_failed_announcement_is_made_good_by_the_next_message(
    harness_factory: HarnessFactory,
) -> None:
    harness, group = await start(harness_factory)
    sam = harness.agent("Sam", group=group)
    alice = harness.customer("Alice")
    harness.fake.fail_next("createForumTopic", 400, "Bad Request: not enough rights")
    await alice.send("My parcel never arrived")
    await drain(harness, alice)
    await alice.ask("/human", contains="person")  # the customer is not bothered with it
    await harness.settle()
    assert not harness.fake.sent_to(GROUP_ID)

    await alice.send("Hello?")

    card = await sam.expect("Handoff H-")
    assert "My parcel never arrived" in card.text and card.button("Claim")
    await sam.expect("Alice: Hello?", thread_id=card.thread_id)


@given(
    st.text(min_size=0, max_size=400),
    st.sampled_from(list(HandoffStatus)),
    st.none() | st.text(max_size=200),
)
def test_a_handoff_topic_name_always_fits_and_keeps_the_reference(
    name: str, status: HandoffStatus, agent: str | None
) -> None:
    title = handoff_topic_name(status, "H-12 / C-000034", name, agent)
    assert 1 <= len(title) <= TOPIC_NAME_LIMIT
    assert " H-12 / C-000034 · " in title


def test_a_handoff_topic_name_says_who_waits_and_who_has_whom() -> None:
    assert handoff_topic_name(HandoffStatus.waiting, "H-7", "Ann  K") == "🙋 H-7 · Ann K · waiting"
    claimed = handoff_topic_name(HandoffStatus.claimed, "H-7", "Ann K", "Sam")
    assert claimed == "💬 H-7 · Ann K · with Sam"
    assert handoff_topic_name(HandoffStatus.closed, "H-7", None) == "✅ H-7 · closed"


async def test_handoff_and_complaint_reach_the_agents_group(
    harness_factory: HarnessFactory,
) -> None:
    group_id = -1001000000001
    harness = await harness_factory(agent_chat_id=group_id)
    group = harness.agents_group(group_id)
    sam = harness.agent("Sam", group=group)
    alice = harness.customer("Alice")
    answer = await alice.ask("i forgot my password", contains="I forgot my password")
    await alice.press("Not helpful", answer)
    offer = await alice.expect("did not help")

    await alice.press("Talk to a person", offer)

    await alice.expect("They will reply here")
    card = await sam.expect("Handoff")
    assert "I forgot my password" in card.text and "did not help" in card.text

    await alice.ask("/complaint", contains="What is it about?")
    await alice.press("Price")
    await alice.ask("Too expensive <b>&", contains="Submit it?")
    await alice.press("Submit")
    filed = await alice.expect("registered as")
    reference = filed.text.split("registered as ")[1].split(".")[0]
    assert reference in (await sam.expect(reference)).text


async def test_a_complaints_photos_and_documents_reach_its_topic(
    harness_factory: HarnessFactory,
) -> None:
    harness, group = await start(harness_factory)
    sam = harness.agent("Sam", group=group)
    alice = harness.customer("Alice")
    await alice.ask("/complaint", contains="What is it about?")
    await alice.press("Delivery")
    await alice.expect("describe what happened")
    photo = await alice.send_photo()
    await alice.expect("File attached (1 so far)")
    document = await alice.send_document("receipt.pdf")
    await alice.expect("File attached (2 so far)")
    summary = await alice.ask("The parcel arrived crushed", contains="Submit it?")
    await alice.press("Submit", summary)
    await alice.expect("registered as")

    card = await sam.expect("Complaint C-")
    assert "2 attachments" in card.text
    first = await sam.expect("attachment 1 of 2", thread_id=card.thread_id)
    second = await sam.expect("attachment 2 of 2", thread_id=card.thread_id)
    assert first.data["photo"][-1]["file_id"] == photo.data["photo"][-1]["file_id"]
    assert second.data["document"]["file_id"] == document.data["document"]["file_id"]


async def test_erasure_leaves_no_name_in_the_agents_group(harness_factory: HarnessFactory) -> None:
    harness, group = await start(harness_factory)
    sam = harness.agent("Sam", group=group)
    alice = harness.customer("Alice", last_name="Smith")
    handoff_card = await open_handoff(harness, alice, sam)
    await alice.ask("/complaint", contains="What is it about?")
    await alice.press("Delivery")
    await alice.expect("describe what happened")
    summary = await alice.ask("The parcel arrived crushed", contains="Submit it?")
    await alice.press("Submit", summary)
    await alice.expect("registered as")
    complaint_card = await sam.expect("Complaint C-")
    assert handoff_card.thread_id and complaint_card.thread_id
    assert "Alice Smith" in group.topics[complaint_card.thread_id].name

    await alice.press("Yes", await alice.ask("/forgetme", contains="really"))
    await alice.expect("has been erased")
    # A card edited a moment ago is refreshed by the refresher once the group's pace allows.
    await topic_named(harness, group, handoff_card.thread_id, "✅ H-1 · closed")
    await topic_named(harness, group, complaint_card.thread_id, "🟡 C-000001 · open")

    def cards_without_personal_data() -> bool:
        shown = [
            harness.fake.message(GROUP_ID, card.message_id).text
            for card in (handoff_card, complaint_card)
        ]
        return all("Alice" not in text and "crushed" not in text for text in shown)

    await harness.fake.wait_for(cards_without_personal_data, what="cards without Alice's data")
