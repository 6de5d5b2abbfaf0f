"""The customer's own data: /mycomplaints, /mydata, /forgetme."""

from __future__ import annotations

import json

from sqlmodel import col, select

from crm_core.models import (
    ActorType,
    ChannelIdentity,
    Complaint,
    Direction,
    Interaction,
)
from crm_core.models import Customer as CustomerRow
from crm_core.services.agents import ensure_agent
from crm_core.services.complaints import (
    assign_complaint,
    comment_complaint,
    file_complaint,
    transition_complaint,
)
from handlers.customer.my_data import history_lines
from tests.handlers.conftest import BOTH_DATABASES, Harness


async def _file_worked_complaint(harness: Harness, customer_id: int) -> Complaint:
    """A complaint an agent took, moved on and commented on (publicly and internally)."""
    async with harness.session_factory() as session:
        complaint = await file_complaint(
            session=session, customer_id=customer_id, category="product", description="Broken lid"
        )
        agent = await ensure_agent(session=session, telegram_user_id=777, display_name="Sam Secret")
        assert agent.id is not None
        await assign_complaint(session=session, reference=complaint.reference, agent_id=agent.id)
        await transition_complaint(
            session=session,
            reference=complaint.reference,
            to_status="in_progress",
            actor_type=ActorType.agent,
            actor_id=agent.id,
        )
        await comment_complaint(
            session=session,
            reference=complaint.reference,
            actor_type=ActorType.agent,
            actor_id=agent.id,
            text="A new lid is on its way <b>&",
            visible_to_customer=True,
        )
        await comment_complaint(
            session=session,
            reference=complaint.reference,
            actor_type=ActorType.agent,
            actor_id=agent.id,
            text="INTERNAL: customer seems grumpy",
        )
        return complaint


@BOTH_DATABASES
async def test_my_complaints_and_history_show_only_what_the_customer_may_see(
    harness: Harness,
) -> None:
    alice = harness.customer("Alice")
    await alice.ask("/mycomplaints", contains="no complaints")
    complaint = await _file_worked_complaint(harness, await harness.customer_id_of(alice))

    listing = await alice.ask("📋 My complaints", contains="Your complaints")

    assert f"{complaint.reference} (product) — in progress" in listing.text
    await alice.press(complaint.reference, listing)
    history = await alice.expect("History")
    assert "Broken lid" in history.text
    assert "filed by you" in history.text and "taken on by our team" in history.text
    assert "status changed to in progress by our team" in history.text
    assert "A new lid is on its way <b>&" in history.text
    assert "INTERNAL" not in history.text and "Sam Secret" not in history.text

    bob = harness.customer("Bob")
    greeting = await bob.ask("/start", contains="Bob")
    # Bob forges Alice's button data in his own chat.
    await bob.callback(listing.button(complaint.reference)["callback_data"], greeting)
    refused = await bob.expect("cannot find")
    assert "Broken lid" not in refused.text


async def test_mydata_sends_everything_as_json(harness: Harness) -> None:
    alice = harness.customer("Alice", username="alice_tg")
    await alice.ask("/email alice@example.com", contains="noted")

    await alice.send("/mydata")
    await harness.settle()

    (document,) = [m for m in alice.replies if m.method == "sendDocument"]
    (upload,) = [r for r in harness.fake.calls("sendDocument") if not r.error]
    file_id = document.data["document"]["file_id"]
    data = json.loads(harness.fake.files[file_id])
    assert data["customer"]["email"] == "alice@example.com"
    assert data["identities"][0]["username"] == "alice_tg"
    texts = [i["text"] for i in data["interactions"]]
    assert "/email alice@example.com" in texts and "/mydata" in texts
    assert "everything we store" in document.text
    async with harness.session_factory() as session:
        logged = (await session.exec(select(Interaction).order_by(col(Interaction.id)))).all()
    assert logged[-1].direction == Direction.outbound
    assert logged[-1].details["document"] == "deskbot-my-data.json"
    assert upload.params["chat_id"] in (alice.id, str(alice.id))


@BOTH_DATABASES
async def test_forgetme_no_keeps_and_yes_erases(harness: Harness) -> None:
    alice = harness.customer("Alice", username="alice_tg")
    await alice.ask("/email alice@example.com", contains="noted")
    cid = await harness.customer_id_of(alice)

    await alice.press("No", await alice.ask("/forgetme", contains="really"))
    await alice.expect("nothing was changed")
    async with harness.session_factory() as session:
        kept = await session.get(CustomerRow, cid)
        assert kept is not None and kept.email == "alice@example.com"

    await alice.press("Yes", await alice.ask("/forgetme", contains="really"))

    await alice.expect("has been erased")
    await harness.settle()
    async with harness.session_factory() as session:
        erased = await session.get(CustomerRow, cid)
        assert erased is not None and erased.anonymized_at is not None
        assert erased.name is None and erased.email is None
        rows = (await session.exec(select(Interaction))).all()
        identities = (await session.exec(select(ChannelIdentity))).all()
    assert identities == []
    # Nothing left that ties the record to the Telegram account or to what was said.
    assert all(r.text is None for r in rows if r.customer_id == cid)
    assert all(str(alice.id) not in json.dumps(r.details) for r in rows)
    assert not [r for r in rows if r.customer_id is None and r.text]

    # A new message starts a brand-new customer.
    await alice.ask("/start", contains="Alice")
    assert await harness.customer_id_of(alice) != cid


async def test_forget_redelivered_yes_does_not_run_twice(harness: Harness) -> None:
    alice = harness.customer("Alice")
    await alice.press("Yes", await alice.ask("/forgetme", contains="really"))
    await alice.expect("has been erased")

    harness.fake.redeliver(harness.fake.delivered_update_ids[-1])

    await alice.expect_silence()
    async with harness.session_factory() as session:
        people = (await session.exec(select(CustomerRow))).all()
        identities = (await session.exec(select(ChannelIdentity))).all()
    # The repeated "yes" did not bring the erased person back as a new customer.
    assert [(p.name, p.anonymized_at is not None) for p in people] == [(None, True)]
    assert identities == []


def test_history_hides_internal_comments_and_names() -> None:
    from datetime import UTC, datetime

    from crm_core.models import ComplaintEvent, ComplaintStatus

    at = datetime(2026, 1, 2, 3, 4, tzinfo=UTC)

    def event(action: str, actor: ActorType, note: str | None = None) -> ComplaintEvent:
        to_status = ComplaintStatus.resolved if action == "status_changed" else None
        return ComplaintEvent(
            complaint_id=1, action=action, actor_type=actor, note=note, to_status=to_status,
            created_at=at,
        )  # fmt: skip

    events = [
        event("filed", ActorType.customer),
        event("assigned", ActorType.agent, "Sam Secret"),
        event("comment", ActorType.agent, "internal"),
        event("comment", ActorType.agent, "public"),
        event("comment", ActorType.customer, "mine"),
        event("status_changed", ActorType.agent, "fixed"),
        event("sla_breached", ActorType.system),
    ]
    lines = history_lines(events, {("comment", "public"), ("status_changed", "fixed")})

    assert [(line["action"], line["note"]) for line in lines] == [
        ("filed", None),
        ("assigned", None),
        ("comment", "public"),
        ("comment", "mine"),
        ("status_changed", "fixed"),
    ]
    assert lines[0]["when"] == "02 Jan 2026, 03:04 UTC"
