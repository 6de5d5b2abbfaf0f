"""The complaint flow: category, description, summary, submit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import update
from sqlmodel import col, func, select
from telegram import Chat, Document, Message, PhotoSize

from crm_core.clock import utcnow
from crm_core.errors import DomainError
from crm_core.models import (
    Complaint,
    ComplaintCategory,
    FlowState,
    Interaction,
    InteractionKind,
    Severity,
)
from handlers.core.config import DeskConfig
from handlers.core.texts import Texts
from handlers.customer import complaint_flow
from handlers.customer.complaint_flow import (
    ComplaintDraft,
    attachment_of,
    check_description,
    sla_policy,
)
from tests.handlers.conftest import BOTH_DATABASES, Customer, Harness, HarnessFactory


async def _complaints(harness: Harness) -> list[Complaint]:
    await harness.settle()
    async with harness.session_factory() as session:
        return list((await session.exec(select(Complaint).order_by(col(Complaint.id)))).all())


async def _flows(harness: Harness) -> list[FlowState]:
    await harness.settle()
    async with harness.session_factory() as session:
        return list((await session.exec(select(FlowState))).all())


async def _start(customer: Customer, category: str = "Delivery") -> None:
    await customer.ask("/complaint", contains="What is it about?")
    await customer.press(category)
    await customer.expect("describe what happened")


@BOTH_DATABASES
async def test_complaint_with_photo_edit_and_submit(harness: Harness) -> None:
    alice = harness.customer("Alice")
    await _start(alice)

    photo = await alice.send_photo()
    await alice.expect("File attached (1 so far)")
    await alice.send("The parcel arrived crushed")
    summary = await alice.expect("Submit it?")
    assert "Category: 🚚 Delivery" in summary.text and "Attachments: 1" in summary.text
    assert "The parcel arrived crushed" in summary.text

    await alice.press("Edit", summary)
    await alice.expect("new description")
    summary = await alice.ask("Parcel crushed, the vase inside is broken", contains="Submit it?")
    assert "vase inside is broken" in summary.text and "Attachments: 1" in summary.text
    await alice.press("Submit", summary)

    filed = await alice.expect("registered as")
    (complaint,) = await _complaints(harness)
    assert complaint.reference in filed.text
    assert "within 24 hours" in filed.text  # the configured SLA for medium severity
    assert complaint.category == ComplaintCategory.delivery
    assert complaint.description == "Parcel crushed, the vase inside is broken"
    assert complaint.attachments == [photo.data["photo"][-1]["file_id"]]
    assert complaint.sla_due_at is not None
    due = complaint.sla_due_at.replace(tzinfo=None) - complaint.created_at.replace(tzinfo=None)
    assert due == timedelta(hours=24)
    assert not summary.inline_buttons()  # submitted: the buttons are gone
    # Finished: the next text is a question for the knowledge base again.
    await alice.ask("i forgot my password", contains="I forgot my password")


async def test_caption_of_a_document_counts_as_the_description(harness: Harness) -> None:
    alice = harness.customer("Alice")
    await _start(alice, "Billing")

    await alice.send_document(caption="The invoice shows the wrong amount")

    summary = await alice.expect("Submit it?")
    assert "Attachments: 1" in summary.text and "wrong amount" in summary.text
    await alice.press("Submit", summary)
    await alice.expect("registered as")
    (complaint,) = await _complaints(harness)
    assert complaint.category == ComplaintCategory.billing and len(complaint.attachments) == 1


async def test_more_text_after_the_summary_adds_to_the_description(harness: Harness) -> None:
    alice = harness.customer("Alice")
    await _start(alice)
    await alice.ask("The parcel came late.", contains="Submit it?")

    summary = await alice.ask("And the box was wet.", contains="I added that")

    assert "The parcel came late.\nAnd the box was wet." in summary.text
    await alice.press("Submit", summary)
    await alice.expect("registered as")
    (complaint,) = await _complaints(harness)
    assert complaint.description == "The parcel came late.\nAnd the box was wet."


async def test_cancel_button_and_cancel_command_leave_the_flow(harness: Harness) -> None:
    alice = harness.customer("Alice")
    await alice.ask("/complaint", contains="What is it about?")
    await alice.press("Cancel")
    await alice.expect("cancelled")

    await _start(alice)
    await alice.ask("/cancel", contains="cancelled")
    await alice.ask("/cancel", contains="nothing to cancel")
    await alice.ask("i forgot my password", contains="I forgot my password")
    assert not await _complaints(harness)
    assert not await _flows(harness)


async def test_editing_an_old_complaint_command_starts_nothing(harness: Harness) -> None:
    alice = harness.customer("Alice")
    sent = await alice.send("/complaint")
    await alice.expect("What is it about?")
    await alice.ask("/cancel", contains="cancelled")

    edited = {**sent.data, "text": "/complaint again", "edit_date": sent.data["date"] + 5}
    harness.fake.push_update({"edited_message": edited})

    await alice.expect_silence()
    assert not await _flows(harness)


async def test_empty_and_too_long_descriptions_keep_the_step(harness: Harness) -> None:
    alice = harness.customer("Alice")
    await _start(alice)

    await alice.ask("   ", contains="description is empty")
    reply = await alice.ask("x" * 20_000, contains="too long")
    assert "20000 characters" in reply.text

    summary = await alice.ask("Late by two weeks", contains="Submit it?")
    assert "Late by two weeks" in summary.text


@BOTH_DATABASES
async def test_restart_in_the_middle_loses_nothing(harness: Harness) -> None:
    alice = harness.customer("Alice")
    await _start(alice)
    await alice.send_photo()
    await alice.expect("File attached")

    await harness.restart()

    summary = await alice.ask("Never arrived", contains="Submit it?")
    assert "Attachments: 1" in summary.text
    await alice.press("Submit", summary)
    await alice.expect("registered as")
    (complaint,) = await _complaints(harness)
    assert complaint.description == "Never arrived" and len(complaint.attachments) == 1


async def test_expired_flow_is_purged_and_its_buttons_say_so(harness: Harness) -> None:
    alice = harness.customer("Alice")
    categories = await alice.ask("/complaint", contains="What is it about?")
    async with harness.session_factory() as session:
        await session.exec(update(FlowState).values(expires_at=utcnow() - timedelta(seconds=1)))
        await session.commit()

    await harness.sweep()
    assert not await _flows(harness)

    await alice.press("Delivery", categories)
    await alice.expect("This has expired")
    await alice.ask("i forgot my password", contains="I forgot my password")
    assert not await _complaints(harness)


async def test_buttons_of_a_finished_flow_are_stale(harness: Harness) -> None:
    alice = harness.customer("Alice")
    first = await alice.ask("/complaint", contains="What is it about?")
    stale_data = first.button("Price")["callback_data"]
    await alice.press("Delivery", first)
    await alice.expect("describe")
    await alice.press("Submit", await alice.ask("Broken", contains="Submit it?"))
    await alice.expect("registered as")

    await alice.ask("/complaint", contains="What is it about?")  # a new flow
    await alice.callback(stale_data, first)

    await alice.expect("This has expired")
    (flow,) = [f for f in await _flows(harness) if f.flow == "complaint"]
    assert flow.step == "category"  # the new flow was not touched


@BOTH_DATABASES
async def test_duplicate_update_and_double_submit_file_once(harness: Harness) -> None:
    alice = harness.customer("Alice")
    await _start(alice)
    summary = await alice.ask("Too late", contains="Submit it?")
    submit = summary.button("Submit")["callback_data"]

    await alice.press("Submit", summary)
    await alice.expect("registered as")
    harness.fake.redeliver(harness.fake.delivered_update_ids[-1])  # Telegram repeats it
    await alice.expect_silence()
    await alice.callback(submit, summary)  # a second tap on Submit

    again = await alice.expect("already submitted")
    (complaint,) = await _complaints(harness)
    assert complaint.reference in again.text
    async with harness.session_factory() as session:
        filed = await session.exec(
            select(func.count()).where(
                Interaction.kind == InteractionKind.message,
                col(Interaction.text).contains("registered as"),
            )
        )
        assert filed.one() == 1


async def test_hostile_name_and_description_are_shown_literally(harness: Harness) -> None:
    mallory = harness.customer("<b>&", last_name="</pre>")
    await _start(mallory)

    summary = await mallory.ask("</pre><b>& <script>alert(1)</script>", contains="Submit it?")

    assert "</pre><b>& <script>alert(1)</script>" in summary.text
    await mallory.press("Submit", summary)
    await mallory.expect("registered as")
    assert not [r for r in harness.fake.calls("sendMessage") if r.error]


def test_description_check() -> None:
    assert check_description("  fine  ") == ("fine", None)
    assert check_description(" \n ") == (None, "complaint_description_empty")
    assert check_description(None) == (None, "complaint_description_empty")
    assert check_description("x" * 4001) == (None, "complaint_description_too_long")
    assert check_description("x" * 4000)[0] == "x" * 4000


def test_draft_round_trips_and_tokens_differ() -> None:
    draft = ComplaintDraft.new()
    draft.category, draft.description, draft.attachments = "price", "Too dear", ["f1"]
    assert ComplaintDraft.from_data(draft.to_data()) == draft
    assert ComplaintDraft.new().token != ComplaintDraft.new().token
    assert ComplaintDraft.from_data({}).token == ""


async def test_a_failed_filing_keeps_the_draft_for_another_submit(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = harness.customer("Alice")
    await _start(alice)
    summary = await alice.ask("Never arrived", contains="Submit it?")
    real_file_complaint = complaint_flow.file_complaint

    async def unavailable(**kwargs: Any) -> Complaint:
        raise DomainError("The complaints desk is briefly unavailable.")

    monkeypatch.setattr(complaint_flow, "file_complaint", unavailable)
    await alice.press("Submit", summary)
    await alice.expect("briefly unavailable")
    assert not await _complaints(harness)

    monkeypatch.setattr(complaint_flow, "file_complaint", real_file_complaint)
    await alice.press("Submit", summary)  # the same button: the draft was kept
    await alice.expect("registered as")
    (complaint,) = await _complaints(harness)
    assert complaint.description == "Never arrived"


def test_sla_policy_follows_the_configured_hours() -> None:
    policy = sla_policy(DeskConfig(sla_hours={"low": 96, "medium": 12, "high": 4, "critical": 1}))
    assert policy.hours_for(ComplaintCategory.price, Severity.medium) == 12
    assert policy.hours_for(ComplaintCategory.billing, Severity.critical) == 1


def test_attachment_of_prefers_the_largest_photo() -> None:
    small = PhotoSize("small", "us", 90, 90)
    big = PhotoSize("big", "ub", 800, 800)
    date = datetime(2026, 1, 1, tzinfo=UTC)
    chat = Chat(1, "private")
    assert attachment_of(Message(1, date, chat, photo=(small, big))) == "big"
    document = Document("doc", "ud")
    assert attachment_of(Message(2, date, chat, document=document)) == "doc"
    assert attachment_of(Message(3, date, chat, text="hi")) is None


@pytest.mark.parametrize("category", [c.value for c in ComplaintCategory])
def test_every_category_has_a_label(category: str) -> None:
    label = Texts().render_plain("complaint_category_label", "en", category=category)
    assert category.lower() in label.lower()


async def test_deadlines_are_told_in_the_desks_time_zone(harness_factory: HarnessFactory) -> None:
    harness = await harness_factory(timezone="Europe/Berlin")
    alice = harness.customer("Alice")
    await _start(alice)
    summary = await alice.ask("The parcel arrived crushed", contains="Submit it?")
    await alice.press("Submit", summary)

    filed = await alice.expect("registered as")
    (complaint,) = await _complaints(harness)
    assert complaint.sla_due_at is not None
    due = complaint.sla_due_at.astimezone(ZoneInfo("Europe/Berlin"))
    assert due.strftime("%d %b %Y, %H:%M ") + str(due.tzname()) in filed.text
    assert "UTC" not in filed.text
