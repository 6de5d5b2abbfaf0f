"""Agents working complaints: /status, /assign, /severity and the card's buttons."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import select

from crm_core.models import ComplaintEvent, ComplaintStatus
from tests.fakes.bot_api import StoredMessage
from tests.handlers.complaint_desk import complaint_row, file_and_announce
from tests.handlers.conftest import BOTH_DATABASES, Harness, HarnessFactory
from tests.handlers.desk import (
    GROUP_ID,
    a_minute_later,
    card_shows,
    drain,
    stale_cards,
    topic_named,
)


@BOTH_DATABASES
async def test_complaint_is_announced_and_status_changes_reach_the_customer(
    harness_factory: HarnessFactory,
) -> None:
    harness, sam, alice, card = await file_and_announce(harness_factory)
    group = harness.fake.chats[GROUP_ID]
    reference = (await complaint_row(harness)).reference
    assert card.thread_id is not None
    assert group.topics[card.thread_id].name == f"🟠 {reference} · Alice · open"
    assert "The parcel arrived empty" in card.text and "delivery" in card.text

    await sam.send(f"/status {reference} in_progress checking with the courier")
    told = await alice.expect(reference)
    assert "working on your complaint" in told.text and "checking with the courier" in told.text
    await sam.expect("moved", thread_id=card.thread_id)

    await sam.press("Resolved", card)
    await alice.expect("has been resolved")
    assert (await complaint_row(harness)).status == ComplaintStatus.resolved

    await sam.send("/assign", thread_id=card.thread_id)  # the topic implies the reference
    await sam.expect(f"Sam took {reference}", thread_id=card.thread_id)
    await sam.send("/status closed confirmed by phone", thread_id=card.thread_id)
    await alice.expect("is now closed")
    await harness.settle()
    assert group.topics[card.thread_id].closed
    await sam.send(f"/status {reference} open")  # reopened from the General topic
    await alice.expect("has been reopened")
    await sam.expect(f"moved {reference} to open", thread_id=card.thread_id)
    assert not group.topics[card.thread_id].closed
    complaint = await complaint_row(harness)
    assert complaint.assignee_id is not None and complaint.first_response_at is not None


async def test_complaint_errors_are_friendly_and_change_nothing(
    harness_factory: HarnessFactory,
) -> None:
    harness, sam, alice, card = await file_and_announce(harness_factory, "Wrong size", forum=False)
    reference = (await complaint_row(harness)).reference
    await drain(harness, alice, sam)

    await sam.send("/status C-999999 resolved")
    await sam.expect("There is no complaint C-999999")
    await sam.send(f"/status {reference} closed")
    await sam.expect("can go to in progress or resolved")
    await sam.send(f"/status {reference} sleeping")
    await sam.expect("Unknown status")
    await sam.send("/status")
    await sam.expect("Usage: /status")
    await alice.expect_silence()
    assert (await complaint_row(harness)).status == ComplaintStatus.open

    await sam.press("Assign to me", card)
    await sam.expect(f"Sam took {reference}")  # plain group: a reply to the card
    assert (await complaint_row(harness)).assignee_id is not None


async def test_a_status_note_keeps_its_line_breaks(harness_factory: HarnessFactory) -> None:
    harness, sam, alice, card = await file_and_announce(harness_factory)
    reference = (await complaint_row(harness)).reference

    await sam.send(f"/status {reference} resolved Refund sent.\nIt arrives in 3 days.")
    told = await alice.expect("has been resolved")
    assert "Refund sent.\nIt arrives in 3 days." in told.text
    again = "/status in_progress Looking again:\nthe courier called"
    await sam.send(again, thread_id=card.thread_id)
    told = await alice.expect("working on your complaint")
    assert "Looking again:\nthe courier called" in told.text
    async with harness.session_factory() as session:
        events = (await session.exec(select(ComplaintEvent))).all()
    assert "Refund sent.\nIt arrives in 3 days." in [e.note for e in events]


async def test_severity_triage_moves_the_sla_and_stays_internal(
    harness_factory: HarnessFactory,
) -> None:
    harness, sam, alice, card = await file_and_announce(harness_factory)
    filed = await complaint_row(harness)
    assert filed.severity.value == "high"

    await sam.send("/severity critical", thread_id=card.thread_id)  # the topic implies it
    told = await sam.expect("critical", thread_id=card.thread_id)
    assert f"Sam set {filed.reference} to critical severity" in told.text
    triaged = await complaint_row(harness)
    assert triaged.severity.value == "critical"
    # Due 2 h (the default critical SLA) after filing, not after the triage.
    assert triaged.sla_due_at == filed.created_at + timedelta(hours=2)
    async with harness.session_factory() as session:
        events = (await session.exec(select(ComplaintEvent))).all()
    assert [e.action for e in events][-1] == "severity_changed"

    await sam.send(f"/severity {filed.reference} urgent")
    await sam.expect("Choose one of: low, medium, high, critical")
    await sam.send("/severity")
    await sam.expect("Usage: /severity")
    await alice.expect_silence(timeout=0.5)  # triage is the desk's business, not a message


def buttons(harness: Harness, card: StoredMessage) -> list[str]:
    shown = harness.fake.message(GROUP_ID, card.message_id)
    return [button["text"] for button in shown.inline_buttons()]


@BOTH_DATABASES
async def test_the_complaint_card_and_topic_follow_every_change(
    harness_factory: HarnessFactory,
) -> None:
    harness, sam, alice, card = await file_and_announce(harness_factory, card_refresh_seconds=0.5)
    group = harness.fake.chats[GROUP_ID]
    reference = (await complaint_row(harness)).reference
    assert card.thread_id is not None
    topic = group.topics[card.thread_id]
    assert buttons(harness, card) == ["▶️ In progress", "✅ Resolved", "🙋 Assign to me"]

    # The first change after a quiet spell shows at once: before the press is fully handled.
    await sam.press("In progress", card)
    await alice.expect("working on your complaint")
    await harness.settle()
    shown = harness.fake.message(GROUP_ID, card.message_id)
    assert "in progress" in shown.text.splitlines()[0]
    assert buttons(harness, card) == ["✅ Resolved", "🙋 Assign to me"]
    assert topic.name == f"🟠 {reference} · Alice · in progress"

    # Quick changes after it show together, once the card may be edited again.
    await sam.send("/severity critical", thread_id=card.thread_id)
    await sam.send("/assign", thread_id=card.thread_id)
    await sam.expect(f"Sam took {reference}", thread_id=card.thread_id)
    await card_shows(harness, card, text="critical", buttons=["✅ Resolved"])
    await topic_named(harness, group, card.thread_id, f"🔴 {reference} · Alice · in progress")

    await sam.press("Resolved", card)
    await alice.expect("has been resolved")
    await card_shows(harness, card, buttons=["🗂 Closed", "↩️ Reopen"])
    await topic_named(harness, group, card.thread_id, f"✅ {reference} · Alice · resolved")

    # Something that changes nothing on the card sends no edit (Telegram would refuse it).
    await a_minute_later(harness)  # the card may be edited at once: nothing is put off
    edits = len(harness.fake.calls("editMessageText"))
    renames = len(harness.fake.calls("editForumTopic"))
    await sam.send(f"/assign {reference}")
    await sam.expect(f"Sam took {reference}")
    await harness.settle()
    assert len(harness.fake.calls("editMessageText")) == edits
    assert len(harness.fake.calls("editForumTopic")) == renames
    assert await stale_cards(harness) == []
    not_modified = [r for r in harness.fake.requests if "not modified" in str(r.error or "")]
    assert not_modified == []


async def test_a_stale_card_button_is_answered_at_once_and_explained_in_the_chat(
    harness_factory: HarnessFactory,
) -> None:
    harness, sam, alice, card = await file_and_announce(harness_factory)
    complaint = await complaint_row(harness)
    stale = card.button("Resolved")["callback_data"]  # the card as it was when announced
    await sam.send(f"/status {complaint.reference} resolved")
    await alice.expect("has been resolved")
    await drain(harness, alice, sam)

    query_id = harness.fake.push_callback(sam.user, stale, card)  # pressed on an old screen

    explained = await sam.expect("resolved", thread_id=card.thread_id)
    assert "cannot" in explained.text.lower() or "already" in explained.text.lower()
    answer = harness.fake.answered_callbacks[query_id]
    assert not answer.get("show_alert")  # answered before the work, with nothing to say
    methods = [r.method for r in harness.fake.requests]
    answered_at = max(
        i
        for i, r in enumerate(harness.fake.requests)
        if r.method == "answerCallbackQuery" and r.params.get("callback_query_id") == query_id
    )
    assert "sendMessage" in methods[answered_at:]  # the explanation came after the answer
    await alice.expect_silence()
    assert (await complaint_row(harness)).status == ComplaintStatus.resolved
