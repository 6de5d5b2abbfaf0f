"""Reminders and escalation of conversations nobody claimed."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import select

from crm_core.clock import utcnow
from crm_core.models import Handoff, HandoffStatus
from handlers.agents import reminders as reminder_sweeper
from handlers.core.texts import Texts
from tests.handlers.conftest import BOTH_DATABASES, HarnessFactory
from tests.handlers.desk import GROUP_ID, open_handoff, start

SUPERVISOR_ID = 9001


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
    monkeypatch.setattr(reminder_sweeper, "sweep_now", lambda: utcnow() + timedelta(minutes=11))
    await harness.sweep()

    reminder = await sam.expect("has been waiting", thread_id=card.thread_id)
    assert "Alice" in reminder.text and reminder.button("Claim")
    # Nobody waits in silence: the customer hears they are not forgotten, and where they stand.
    still = await alice.expect("We have not forgotten you")
    assert "next in line" in still.text
    assert "Claim" in harness.fake.message(GROUP_ID, card.message_id).button("Claim")["text"]
    await harness.sweep()  # the reminder is not sent twice
    await harness.settle()
    reminders = [m for m in harness.fake.sent_to(GROUP_ID) if "has been waiting" in m.text]
    assert len(reminders) == 1

    monkeypatch.setattr(reminder_sweeper, "sweep_now", lambda: utcnow() + timedelta(minutes=32))
    await harness.sweep()

    private = await sue.expect_private("Nobody has claimed")
    assert "Alice" in private.text
    assert f'href="https://t.me/c/{str(GROUP_ID)[4:]}/' in (private.html or "")
    mention = await sam.expect("nobody has claimed", thread_id=card.thread_id)
    assert f"tg://user?id={SUPERVISOR_ID}" in (mention.html or "")
    async with harness.session_factory() as session:
        handoff = (await session.exec(select(Handoff))).one()
    assert handoff.escalated_at is not None and handoff.status == HandoffStatus.waiting


async def test_claiming_from_a_reminder_marks_the_reminder_and_the_card(
    harness_factory: HarnessFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness, group = await start(harness_factory)
    sam = harness.agent("Sam", group=group)
    alice = harness.customer("Alice")
    card = await open_handoff(harness, alice, sam)
    monkeypatch.setattr(reminder_sweeper, "sweep_now", lambda: utcnow() + timedelta(minutes=11))
    await harness.sweep()
    reminder = await sam.expect("has been waiting", thread_id=card.thread_id)

    await sam.press("Claim", reminder)

    await sam.expect("Sam took this conversation", thread_id=card.thread_id)
    await harness.settle()
    for message_id in (card.message_id, reminder.message_id):
        assert harness.fake.message(GROUP_ID, message_id).button("Sam is on it")
    monkeypatch.setattr(reminder_sweeper, "sweep_now", lambda: utcnow() + timedelta(hours=2))
    await harness.sweep()
    await harness.settle()
    assert not any("nobody has claimed" in m.text for m in harness.fake.sent_to(GROUP_ID))


def test_escalation_and_status_notice_keep_their_lines_apart() -> None:
    """trim_blocks eats the newline after a block tag: these once read "…5 min.Reason: …"."""
    texts = Texts()
    escalation = texts.render(
        "supervisor_escalation", "en", reference="H-1", name="Al", waited="5 min",
        reason="refund", link="https://t.me/c/1/2",
    )  # fmt: skip
    assert escalation.splitlines()[1:] == [
        "Reason: refund",
        '<a href="https://t.me/c/1/2">Open it in the agents\' group</a>',
    ]
    notice = texts.render(
        "agent_complaint_status_customer", "en", reference="C-1", status="resolved", note="ok"
    )
    assert notice.splitlines() == [
        "Your complaint C-1 has been resolved.",
        "Note from our team: ok",
    ]
