"""Handoffs in the agents' group, end to end: context card, claim, two-way relay, internal
notes, /resolve with the rating, in forum and plain groups."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from sqlmodel import col, select

from crm_core.models import Agent as AgentRow
from crm_core.models import (
    AgentRole,
    Direction,
    Handoff,
    HandoffStatus,
    Interaction,
    InteractionKind,
)
from crm_core.services.agents import set_agent_active
from tests.fakes.bot_api import FakeBotAPI, FakeChat, StoredMessage
from tests.handlers.conftest import BOTH_DATABASES, Agent, Customer, Harness, HarnessFactory

GROUP_ID = -1001000000001


async def start(
    harness_factory: HarnessFactory, *, forum: bool = True, **settings: Any
) -> tuple[Harness, FakeChat]:
    harness = await harness_factory(agent_chat_id=GROUP_ID, **settings)
    group = harness.agents_group(GROUP_ID, forum=forum)
    return harness, group


async def drain(harness: Harness, *people: Customer | Agent) -> None:
    """Let everything pending finish and mark it read."""
    await harness.settle()
    for person in people:
        person.cursor = len(harness.fake.messages)


async def latest_handoff(harness: Harness) -> Handoff:
    await harness.settle()
    async with harness.session_factory() as session:
        row = (await session.exec(select(Handoff).order_by(col(Handoff.id).desc()))).first()
    assert row is not None
    return row


async def interactions(harness: Harness, kind: InteractionKind) -> list[Interaction]:
    await harness.settle()
    async with harness.session_factory() as session:
        rows = await session.exec(
            select(Interaction).where(Interaction.kind == kind).order_by(col(Interaction.id))
        )
        return list(rows.all())


async def open_handoff(harness: Harness, customer: Customer, agent: Agent) -> StoredMessage:
    """The customer asks something, then for a person; returns the card agents see."""
    await customer.send("My parcel never arrived")
    await drain(harness, customer)
    await customer.ask("/human", contains="person")
    return await agent.expect("Handoff H-")


def agent_photo(caption: str) -> dict[str, Any]:
    photo = [{"file_id": "agentphoto1", "file_unique_id": "uap1", "width": 90, "height": 90}]
    return {"photo": photo, "caption": caption}


@BOTH_DATABASES
async def test_forum_card_claim_and_relay_both_ways(harness_factory: HarnessFactory) -> None:
    harness, group = await start(harness_factory)
    sam = harness.agent("Sam", group=group)
    alice = harness.customer("Alice", username="alice_w")

    card = await open_handoff(harness, alice, sam)

    assert card.thread_id is not None
    topic = group.topics[card.thread_id]
    assert topic.name.startswith("Alice · H-")
    assert "@alice_w" in card.text and "Customer since" in card.text
    assert "My parcel never arrived" in card.text  # the transcript
    assert "Claim" in card.button("Claim")["text"]

    await sam.press("Claim", card)
    await sam.expect("Sam took this conversation", thread_id=card.thread_id)
    assert harness.fake.message(GROUP_ID, card.message_id).button("Sam is on it")
    await alice.expect("Sam from our team has joined")

    await alice.send("Hello, anyone?")
    relayed = await sam.expect("Hello, anyone?", thread_id=card.thread_id)
    assert relayed.text == "Alice: Hello, anyone?"

    await sam.send("Hi Alice, I am looking into it", thread_id=card.thread_id)
    answer = await alice.expect("looking into it")
    assert answer.text == "Sam (support team): Hi Alice, I am looking into it"

    handoff = await latest_handoff(harness)
    assert handoff.status == HandoffStatus.claimed and handoff.first_agent_reply_at is not None
    replies = await interactions(harness, InteractionKind.agent_reply)
    assert [(r.direction, r.handoff_id) for r in replies] == [(Direction.outbound, handoff.id)]
    assert replies[0].text == answer.text


async def test_photos_and_documents_are_relayed_both_ways(
    harness_factory: HarnessFactory,
) -> None:
    harness, group = await start(harness_factory)
    sam = harness.agent("Sam", group=group)
    alice = harness.customer("Alice")
    card = await open_handoff(harness, alice, sam)

    await alice.send_photo(caption="the box was crushed")
    photo = await sam.expect("the box was crushed", thread_id=card.thread_id)
    assert photo.method == "copyMessage" and photo.data["photo"]
    assert photo.text == "Alice: the box was crushed"
    await alice.send_document("receipt.pdf")
    document = await sam.expect("Alice", thread_id=card.thread_id)
    assert document.data.get("document")
    await alice.send_sticker()  # no caption possible: copied as it is
    sticker = await harness.fake.wait_for(
        lambda: next((m for m in harness.fake.sent_to(GROUP_ID) if m.data.get("sticker")), None)
    )
    assert sticker.thread_id == card.thread_id and "caption" not in sticker.data

    harness.fake.push_message(
        sam.user, None, chat=group, thread_id=card.thread_id, extra=agent_photo("label to print")
    )
    copied = await alice.expect("label to print")
    assert copied.data["photo"] and copied.text == "Sam (support team): label to print"
    # The agent's first reply claimed the handoff.
    assert (await latest_handoff(harness)).status == HandoffStatus.claimed


async def test_plain_group_agents_work_by_replying_even_after_a_restart(
    harness_factory: HarnessFactory,
) -> None:
    harness, group = await start(harness_factory, forum=False)
    sam = harness.agent("Sam", group=group)
    alice = harness.customer("Alice")
    card = await open_handoff(harness, alice, sam)
    assert card.thread_id is None and not group.topics

    await alice.send("Are you there?")
    relayed = await sam.expect("Are you there?")
    assert relayed.data["reply_to_message"]["message_id"] == card.message_id

    await harness.restart()  # links live in the database
    await sam.send("Yes, checking now", reply_to=relayed)
    await alice.expect("Sam (support team): Yes, checking now")
    await sam.send("And the card works too", reply_to=card)
    await alice.expect("And the card works too")
    # Chatter that replies to nothing of the bot's stays in the group.
    await sam.send("coffee anyone?")
    await alice.expect_silence()

    await sam.send("/resolve sorted", reply_to=relayed)
    await sam.expect("Resolved by Sam: sorted")
    await alice.expect("How satisfied")
    assert (await latest_handoff(harness)).status == HandoffStatus.closed


async def test_two_agents_claim_at_once_one_wins_the_other_is_told(
    harness_factory: HarnessFactory,
) -> None:
    harness, group = await start(harness_factory)
    sam = harness.agent("Sam", group=group)
    kim = harness.agent("Kim", group=group)
    alice = harness.customer("Alice")
    card = await open_handoff(harness, alice, sam)

    first = await sam.press("Claim", card)
    second = await kim.press("Claim", card)
    await harness.settle()

    handoff = await latest_handoff(harness)
    assert handoff.status == HandoffStatus.claimed
    answers = harness.fake.answered_callbacks
    assert "text" not in answers[first] or not answers[first].get("show_alert")
    assert answers[second]["show_alert"] is True
    assert "Already taken by Sam" in answers[second]["text"]
    claimed = [m for m in harness.fake.sent_to(GROUP_ID) if "took this conversation" in m.text]
    assert len(claimed) == 1

    again = harness.fake.push_callback(sam.user, f"hc:{handoff.id}", card)  # e.g. a reminder's
    await harness.settle()
    assert "already yours" in answers[again]["text"]
    claimed = [m for m in harness.fake.sent_to(GROUP_ID) if "took this conversation" in m.text]
    assert len(claimed) == 1


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
    assert harness.fake.message(GROUP_ID, card.message_id).button("Resolved by Sam")
    await alice.press("4", ask)
    await alice.expect("rating us 4/5")
    await alice.ask("Quick and friendly, thanks", contains="passed your comment on")

    handoff = await latest_handoff(harness)
    assert handoff.status == HandoffStatus.closed and handoff.summary == "refund issued"
    assert (handoff.csat_score, handoff.csat_comment) == (4, "Quick and friendly, thanks")
    # The next question goes to the bot again, not to the agents.
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


async def test_non_member_gets_no_agent_powers(harness_factory: HarnessFactory) -> None:
    harness, group = await start(harness_factory)
    sam = harness.agent("Sam", group=group)
    eve = harness.agent("Eve", group=group, status="left")
    alice = harness.customer("Alice")
    card = await open_handoff(harness, alice, sam)
    await drain(harness, alice, sam)

    query_id = await eve.press("Claim", card)
    await eve.send("I am not an agent", thread_id=card.thread_id)
    await eve.send("/resolve", thread_id=card.thread_id)

    await eve.expect("Only members of the agents' group")
    await alice.expect_silence()
    answer = harness.fake.answered_callbacks[query_id]
    assert answer["show_alert"] and "Only members" in answer["text"]
    handoff = await latest_handoff(harness)
    assert handoff.status == HandoffStatus.waiting and handoff.agent_id is None


async def test_long_conversation_card_fits_one_message(harness_factory: HarnessFactory) -> None:
    harness, group = await start(harness_factory)
    sam = harness.agent("Sam", group=group)
    alice = harness.customer("Alice")
    for n in range(14):
        await alice.send(f"complaint part {n}: " + "the parcel & the box <were> damaged " * 40)
    await drain(harness, alice)

    await alice.ask("/human", contains="person")

    card = await sam.expect("Handoff H-")
    cards = [m for m in harness.fake.sent_to(GROUP_ID) if m.thread_id == card.thread_id]
    assert len(cards) == 1 and len(card.text) <= 4096
    assert "earlier messages left out" in card.text
    assert "complaint part 13" in card.text and "<were>" in card.text  # newest kept, escaped


async def test_an_agent_removed_from_the_group_loses_powers_after_the_cache(
    harness_factory: HarnessFactory,
) -> None:
    harness, group = await start(harness_factory, membership_cache_seconds=0)
    sam = harness.agent("Sam", group=group)
    alice = harness.customer("Alice")
    card = await open_handoff(harness, alice, sam)
    await sam.send("First answer", thread_id=card.thread_id)
    await alice.expect("First answer")

    harness.fake.set_member(GROUP_ID, sam.id, "kicked")
    await sam.send("Second answer", thread_id=card.thread_id)

    await sam.expect("Only members of the agents' group", thread_id=card.thread_id)
    await alice.expect_silence()
    replies = await interactions(harness, InteractionKind.agent_reply)
    assert [r.text for r in replies] == ["Sam (support team): First answer"]


async def test_supervisors_act_with_the_supervisor_role_and_unsigned_replies(
    harness_factory: HarnessFactory,
) -> None:
    harness, group = await start(harness_factory, supervisor_ids="9001", agent_signature="none")
    sue = harness.agent("Sue", group=group, user_id=9001)
    alice = harness.customer("Alice")
    card = await open_handoff(harness, alice, sue)

    await sue.send("Hello from the team", thread_id=card.thread_id)

    assert (await alice.expect("Hello from the team")).text == "Support team: Hello from the team"
    async with harness.session_factory() as session:
        agent = (await session.exec(select(AgentRow))).one()
    assert (agent.telegram_user_id, agent.role) == (9001, AgentRole.supervisor)


async def test_a_deactivated_agent_is_refused_before_anything_reaches_the_customer(
    harness_factory: HarnessFactory,
) -> None:
    harness, group = await start(harness_factory)
    sam = harness.agent("Sam", group=group)
    alice = harness.customer("Alice")
    card = await open_handoff(harness, alice, sam)
    await sam.send("! first note creates my agent row", thread_id=card.thread_id)
    await harness.settle()
    async with harness.session_factory() as session:
        agent = (await session.exec(select(AgentRow))).one()
        assert agent.id is not None
        await set_agent_active(session=session, agent_id=agent.id, active=False)
    await drain(harness, alice)

    await sam.send("Hello Alice", thread_id=card.thread_id)

    await sam.expect("deactivated", thread_id=card.thread_id)
    await alice.expect_silence()


async def test_hostile_names_and_texts_are_shown_literally(harness_factory: HarnessFactory) -> None:
    harness, group = await start(harness_factory)
    sam = harness.agent("<i>Sam&", group=group)
    mallory = harness.customer("<b>Mal&lory</b>", username="mal")
    card = await open_handoff(harness, mallory, sam)
    assert "<b>Mal&lory</b>" in card.text
    assert group.topics[card.thread_id].name.startswith("<b>Mal&lory</b> · H-")

    await mallory.send("<script>&amp;")
    assert (await sam.expect("<script>")).text == "<b>Mal&lory</b>: <script>&amp;"
    await sam.send("/note <u>x</u> & y", thread_id=card.thread_id)
    await sam.send("a <b>c</b> & d", thread_id=card.thread_id)
    assert (await mallory.expect("<b>c</b>")).text == "<i>Sam& (support team): a <b>c</b> & d"
    await sam.send("/resolve <code> &", thread_id=card.thread_id)
    assert "<code> &" in (await mallory.expect("How satisfied")).text


async def test_agents_get_their_command_menu_and_missing_rights_are_logged(
    harness_factory: HarnessFactory, fake: FakeBotAPI, caplog: pytest.LogCaptureFixture
) -> None:
    group = fake.add_group(GROUP_ID, forum=True)
    fake.set_member(group.id, fake.bot_user.id, "member")  # not an administrator

    with caplog.at_level(logging.WARNING, logger="handlers.agent_group"):
        await harness_factory(agent_chat_id=GROUP_ID)

    menu = [c["command"] for c in fake.commands[("chat", "")]]
    assert menu[:4] == ["queue", "customer", "note", "resolve"] and "stats" in menu
    assert "not an administrator of the agents' group" in caplog.text


async def test_a_full_length_caption_is_relayed_whole_both_ways(
    harness_factory: HarnessFactory,
) -> None:
    """Telegram allows 1024-character captions; with the sender's name in front the copy
    would exceed that, so the media goes first and the whole caption follows as text."""
    harness, group = await start(harness_factory)
    sam = harness.agent("Sam", group=group)
    alice = harness.customer("Alice")
    card = await open_handoff(harness, alice, sam)
    long_caption = ("The box was crushed & wet <really>. " * 29)[:1019] + "END-A"
    assert len(long_caption) == 1024

    await alice.send_photo(caption=long_caption)
    text = await sam.expect("END-A", thread_id=card.thread_id)
    assert "Alice: " + long_caption in text.text
    (photo,) = [m for m in harness.fake.sent_to(GROUP_ID) if m.data.get("photo")]
    assert not photo.data.get("caption") and photo.thread_id == card.thread_id
    await alice.expect_silence()  # no "could not reach the agents"

    caption = ("Please print this label and bring it to the post office. " * 18)[:1019] + "END-S"
    assert len(caption) == 1024
    harness.fake.push_message(
        sam.user, None, chat=group, thread_id=card.thread_id, extra=agent_photo(caption)
    )
    told = await alice.expect("END-S")
    assert told.text.startswith("Sam (support team): Please print")
    (copied,) = [m for m in alice.replies if m.data.get("photo")]
    assert not copied.data.get("caption")  # not twice
    agent_replies = await interactions(harness, InteractionKind.agent_reply)
    assert agent_replies and "END-S" in (agent_replies[-1].text or "")


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


async def test_a_redelivered_agent_reply_reaches_the_customer_once(
    harness_factory: HarnessFactory,
) -> None:
    """Telegram repeats an update after a crash before the offset was confirmed: the agent's
    reply must not reach the customer twice."""
    harness, group = await start(harness_factory)
    sam = harness.agent("Sam", group=group)
    alice = harness.customer("Alice")
    card = await open_handoff(harness, alice, sam)
    await sam.send("Your refund is on its way", thread_id=card.thread_id)
    await alice.expect("Your refund is on its way")
    await drain(harness, alice)

    harness.fake.redeliver(harness.fake.delivered_update_ids[-1])

    await alice.expect_silence()
    assert len(await interactions(harness, InteractionKind.agent_reply)) == 1


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


@pytest.mark.parametrize("data", ["m:human", "m:mycomplaints", "m:complaint", "m:share_phone"])
async def test_a_forged_customer_menu_button_in_the_group_does_nothing(
    harness_factory: HarnessFactory, caplog: pytest.LogCaptureFixture, data: str
) -> None:
    """Callback data comes from the client: a customer's menu button pressed on a group message
    is nobody's request (no handoff for "the group", no apology, no error logged)."""
    harness, group = await start(harness_factory)
    sam = harness.agent("Sam", group=group)
    alice = harness.customer("Alice")
    card = await open_handoff(harness, alice, sam)
    await drain(harness, sam)
    before = len(harness.fake.sent_to(GROUP_ID))

    query_id = harness.fake.push_callback(sam.user, data, card)
    await harness.settle()

    assert query_id in harness.fake.answered_callbacks  # the spinner stops
    assert len(harness.fake.sent_to(GROUP_ID)) == before  # nothing said in the group
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_cancel_withdraws_a_waiting_request_and_tells_the_agents(
    harness_factory: HarnessFactory,
) -> None:
    harness, group = await start(harness_factory)
    sam = harness.agent("Sam", group=group)
    alice = harness.customer("Alice")
    await alice.ask("/human", contains="They will reply here")
    card = await sam.expect("Handoff")

    await alice.ask("/cancel", contains="withdrawn your request")
    await sam.expect("withdrew this request", thread_id=card.thread_id)
    handoff = await latest_handoff(harness)
    assert handoff.status is HandoffStatus.closed
    assert handoff.summary == "withdrawn by the customer"
    await alice.ask("/cancel", contains="There is nothing to cancel")  # nothing left


async def test_cancel_does_not_withdraw_a_claimed_conversation(
    harness_factory: HarnessFactory,
) -> None:
    harness, group = await start(harness_factory)
    sam = harness.agent("Sam", group=group)
    alice = harness.customer("Alice")
    await alice.ask("/human", contains="They will reply here")
    card = await sam.expect("Handoff")
    await sam.press("Claim", card)
    await harness.settle()

    await alice.ask("/cancel", contains="already looking after you")
    assert (await latest_handoff(harness)).status is HandoffStatus.claimed
