"""Notes and complaint comments stay among the agents."""

from __future__ import annotations

from sqlmodel import select

from crm_core.models import (
    ComplaintEvent,
    Direction,
    HandoffStatus,
    InteractionKind,
)
from tests.handlers.complaint_desk import file_and_announce
from tests.handlers.conftest import HarnessFactory
from tests.handlers.desk import (
    GROUP_ID,
    agent_photo,
    drain,
    interactions,
    latest_handoff,
    open_handoff,
    start,
)


async def test_internal_notes_stay_in_the_group(harness_factory: HarnessFactory) -> None:
    harness, group = await start(harness_factory)
    sam = harness.agent("Sam", group=group)
    alice = harness.customer("Alice")
    card = await open_handoff(harness, alice, sam)
    await drain(harness, alice)

    await sam.send("/note customer sounds upset\nwants a call", thread_id=card.thread_id)
    await sam.send("! promised a call back", thread_id=card.thread_id)
    await alice.expect_silence()

    notes = await interactions(harness, InteractionKind.note)
    assert [(n.text, n.direction) for n in notes] == [
        ("customer sounds upset\nwants a call", Direction.internal),
        ("promised a call back", Direction.internal),
    ]
    assert not await interactions(harness, InteractionKind.agent_reply)
    # A note does not claim the handoff either.
    assert (await latest_handoff(harness)).status == HandoffStatus.waiting


async def test_a_photo_captioned_as_a_note_stays_in_the_group(
    harness_factory: HarnessFactory,
) -> None:
    harness, group = await start(harness_factory)
    sam = harness.agent("Sam", group=group)
    alice = harness.customer("Alice")
    card = await open_handoff(harness, alice, sam)
    await drain(harness, alice)

    harness.fake.push_message(
        sam.user,
        None,
        chat=group,
        thread_id=card.thread_id,
        extra=agent_photo("! internal: the warehouse screenshot"),
    )
    await alice.expect_silence()

    harness.fake.push_message(
        sam.user,
        None,
        chat=group,
        thread_id=card.thread_id,
        extra=agent_photo("/note the courier's\nproof of delivery"),
    )
    await alice.expect_silence()

    first, second = await interactions(harness, InteractionKind.note)
    assert first.text == "internal: the warehouse screenshot"
    assert first.details.get("file_ids") == ["agentphoto1"]
    assert second.text == "the courier's\nproof of delivery"
    assert not await interactions(harness, InteractionKind.agent_reply)


async def test_discussion_in_a_complaint_topic_is_kept_as_internal_comments(
    harness_factory: HarnessFactory,
) -> None:
    harness, sam, alice, card = await file_and_announce(harness_factory)
    await harness.settle()  # the announcement has linked its topic (a person is never faster)

    await sam.send("Courier says it left the depot sealed", thread_id=card.thread_id)
    await sam.send("Chatter elsewhere in the group")  # not in the complaint's place
    await harness.settle()

    async with harness.session_factory() as session:
        events = (await session.exec(select(ComplaintEvent))).all()
    comments = [e for e in events if e.action == "comment"]
    assert [(c.note, c.actor_type.value) for c in comments] == [
        ("Courier says it left the depot sealed", "agent")
    ]
    # Nothing of the discussion reached the customer.
    assert not any("Courier" in message.text for message in alice.replies)


async def test_notes_and_comments_are_acknowledged_so_agents_tell_them_from_replies(
    harness_factory: HarnessFactory,
) -> None:
    harness, group = await start(harness_factory)
    sam = harness.agent("Sam", group=group)
    alice = harness.customer("Alice")
    card = await open_handoff(harness, alice, sam)
    await drain(harness, alice, sam)

    note = await sam.send("! check the courier first", thread_id=card.thread_id)
    command = await sam.send("/note she prefers e-mail", thread_id=card.thread_id)
    answer = await sam.send("We are on it", thread_id=card.thread_id)
    await alice.expect("We are on it")
    await harness.settle()

    assert harness.fake.reactions[(GROUP_ID, note.message_id)] == ["✍"]
    assert harness.fake.reactions[(GROUP_ID, command.message_id)] == ["✍"]
    assert (GROUP_ID, answer.message_id) not in harness.fake.reactions  # a reply is no note


async def test_a_note_is_acknowledged_in_words_where_reactions_are_refused(
    harness_factory: HarnessFactory,
) -> None:
    harness, group = await start(harness_factory)
    sam = harness.agent("Sam", group=group)
    alice = harness.customer("Alice")
    card = await open_handoff(harness, alice, sam)
    await drain(harness, alice, sam)
    harness.fake.fail_next("setMessageReaction", 400, "Bad Request: REACTION_INVALID")

    await sam.send("! internal only", thread_id=card.thread_id)

    await sam.expect("Internal note kept", thread_id=card.thread_id)
    await alice.expect_silence()
