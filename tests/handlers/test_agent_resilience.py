"""When Telegram says no, and when time passes: lost topics, blocked customers, a migrated
group, flood limits, reminders and escalation across restarts."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import select

from crm_core.clock import utcnow
from crm_core.models import Handoff, HandoffStatus
from crm_core.services.app_state import get_state
from handlers import queue
from tests.handlers.conftest import BOTH_DATABASES, HarnessFactory
from tests.handlers.test_agent_handoff import GROUP_ID, drain, latest_handoff, open_handoff, start

NEW_GROUP_ID = -1002000000002
SUPERVISOR_ID = 9001


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


async def test_blocked_customer_marks_the_handoff_unreachable_and_agents_are_told(
    harness_factory: HarnessFactory,
) -> None:
    harness, group = await start(harness_factory)
    sam = harness.agent("Sam", group=group)
    alice = harness.customer("Alice")
    card = await open_handoff(harness, alice, sam)
    harness.fake.block(alice.id)

    await sam.send("Are you still there?", thread_id=card.thread_id)

    await sam.expect("has blocked the bot", thread_id=card.thread_id)
    assert (await latest_handoff(harness)).unreachable
    sends = len(harness.fake.calls("sendMessage"))
    await harness.settle()
    assert len(harness.fake.calls("sendMessage")) == sends  # no retry loop


@pytest.mark.parametrize("service_messages", [True, False])
async def test_group_migration_is_followed_and_persisted(
    harness_factory: HarnessFactory, service_messages: bool
) -> None:
    harness, group = await start(harness_factory, forum=False)
    sam = harness.agent("Sam", group=group)
    alice = harness.customer("Alice")
    await open_handoff(harness, alice, sam)
    await drain(harness, sam)

    harness.fake.migrate_group(GROUP_ID, NEW_GROUP_ID, push_service_messages=service_messages)
    await harness.settle()
    await alice.send("Anyone there?")

    relayed = await harness.fake.wait_for_message(NEW_GROUP_ID, "Alice: Anyone there?")
    handoff = await latest_handoff(harness)
    assert handoff.chat_id == NEW_GROUP_ID
    async with harness.session_factory() as session:
        state = await get_state(session=session, key="agent_chat_id")
    assert state is not None and state["chat_id"] == NEW_GROUP_ID

    await harness.restart()  # the new id is read from the database
    new_group = harness.fake.chats[NEW_GROUP_ID]
    harness.fake.push_message(sam.user, "Yes, here", chat=new_group, reply_to=relayed)
    await alice.expect("Sam (support team): Yes, here")


async def test_a_burst_under_flood_control_arrives_complete_and_in_order(
    harness_factory: HarnessFactory,
) -> None:
    harness, group = await start(harness_factory)
    sam = harness.agent("Sam", group=group)
    alice = harness.customer("Alice")
    card = await open_handoff(harness, alice, sam)
    harness.fake.rate_limit("sendMessage", chat_id=GROUP_ID, retry_after=1, times=2)

    for n in range(8):
        await alice.send(f"message {n}")
    await harness.fake.wait_for(
        lambda: any("message 7" in m.text for m in harness.fake.sent_to(GROUP_ID)), timeout=10
    )

    relayed = [m.text for m in harness.fake.sent_to(GROUP_ID, thread_id=card.thread_id)]
    assert [t for t in relayed if "message" in t] == [f"Alice: message {n}" for n in range(8)]
    assert any(r.error and r.error.code == 429 for r in harness.fake.requests)


@BOTH_DATABASES
async def test_reminder_survives_a_restart_then_supervisors_are_escalated_to(
    harness_factory: HarnessFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness, group = await start(harness_factory, supervisor_ids=str(SUPERVISOR_ID))
    sam = harness.agent("Sam", group=group)
    sue = harness.agent("Sue", group=group, user_id=SUPERVISOR_ID)
    alice = harness.customer("Alice")
    card = await open_handoff(harness, alice, sam)

    await harness.sweep()  # not due yet
    await harness.restart()
    monkeypatch.setattr(queue, "sweep_now", lambda: utcnow() + timedelta(minutes=11))
    await harness.sweep()

    reminder = await sam.expect("has been waiting", thread_id=card.thread_id)
    assert "Alice" in reminder.text and reminder.button("Claim")
    assert "Claim" in harness.fake.message(GROUP_ID, card.message_id).button("Claim")["text"]
    await harness.sweep()  # the reminder is not sent twice
    await harness.settle()
    reminders = [m for m in harness.fake.sent_to(GROUP_ID) if "has been waiting" in m.text]
    assert len(reminders) == 1

    monkeypatch.setattr(queue, "sweep_now", lambda: utcnow() + timedelta(minutes=32))
    await harness.sweep()

    private = await sue.expect_private("Nobody has claimed")
    assert "Alice" in private.text
    assert f'href="https://t.me/c/{str(GROUP_ID)[4:]}/' in (private.html or "")
    mention = await sam.expect("nobody has claimed", thread_id=card.thread_id)
    assert f"tg://user?id={SUPERVISOR_ID}" in (mention.html or "")
    async with harness.session_factory() as session:
        handoff = (await session.exec(select(Handoff))).one()
    assert handoff.escalated_at is not None and handoff.status == HandoffStatus.waiting


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


async def test_a_shared_contact_during_a_handoff_is_for_the_bot(
    harness_factory: HarnessFactory,
) -> None:
    harness, group = await start(harness_factory)
    sam = harness.agent("Sam", group=group)
    alice = harness.customer("Alice")
    await open_handoff(harness, alice, sam)
    await drain(harness, alice, sam)

    await alice.share_contact("+4915112345678")

    await alice.expect()  # the bot answered it (linking the phone)...
    await harness.settle()
    assert not [m for m in harness.fake.messages[sam.cursor :] if m.chat_id == GROUP_ID]


async def test_claiming_from_a_reminder_marks_the_reminder_and_the_card(
    harness_factory: HarnessFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness, group = await start(harness_factory)
    sam = harness.agent("Sam", group=group)
    alice = harness.customer("Alice")
    card = await open_handoff(harness, alice, sam)
    monkeypatch.setattr(queue, "sweep_now", lambda: utcnow() + timedelta(minutes=11))
    await harness.sweep()
    reminder = await sam.expect("has been waiting", thread_id=card.thread_id)

    await sam.press("Claim", reminder)

    await sam.expect("Sam took this conversation", thread_id=card.thread_id)
    await harness.settle()
    for message_id in (card.message_id, reminder.message_id):
        assert harness.fake.message(GROUP_ID, message_id).button("Sam is on it")
    monkeypatch.setattr(queue, "sweep_now", lambda: utcnow() + timedelta(hours=2))
    await harness.sweep()
    await harness.settle()
    assert not any("nobody has claimed" in m.text for m in harness.fake.sent_to(GROUP_ID))
