"""The relay between a customer in a handoff and the agents' group, both ways."""

from __future__ import annotations

from sqlmodel import select

from crm_core.models import Agent as AgentRow
from crm_core.models import (
    AgentRole,
    Direction,
    HandoffStatus,
    InteractionKind,
)
from tests.handlers.conftest import BOTH_DATABASES, HarnessFactory
from tests.handlers.desk import (
    GROUP_ID,
    agent_photo,
    drain,
    interactions,
    latest_handoff,
    open_handoff,
    start,
    topic_named,
)


@BOTH_DATABASES
async def test_forum_card_claim_and_relay_both_ways(harness_factory: HarnessFactory) -> None:
    harness, group = await start(harness_factory)
    sam = harness.agent("Sam", group=group)
    alice = harness.customer("Alice", username="alice_w")

    card = await open_handoff(harness, alice, sam)

    assert card.thread_id is not None
    topic = group.topics[card.thread_id]
    assert topic.name.startswith("🙋 H-") and topic.name.endswith(" · Alice · waiting")
    assert "@alice_w" in card.text and "Customer since" in card.text
    assert "My parcel never arrived" in card.text  # the transcript
    assert "Claim" in card.button("Claim")["text"]

    await sam.press("Claim", card)
    await sam.expect("Sam took this conversation", thread_id=card.thread_id)
    assert harness.fake.message(GROUP_ID, card.message_id).button("Sam is on it")
    await alice.expect("Sam from our team has joined")
    await topic_named(
        harness,
        group,
        card.thread_id,
        topic.name.replace("🙋", "💬", 1).replace("waiting", "with Sam"),
    )

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


async def test_hostile_names_and_texts_are_shown_literally(harness_factory: HarnessFactory) -> None:
    harness, group = await start(harness_factory)
    sam = harness.agent("<i>Sam&", group=group)
    mallory = harness.customer("<b>Mal&lory</b>", username="mal")
    card = await open_handoff(harness, mallory, sam)
    assert "<b>Mal&lory</b>" in card.text
    assert " · <b>Mal&lory</b> · " in group.topics[card.thread_id].name

    await mallory.send("<script>&amp;")
    assert (await sam.expect("<script>")).text == "<b>Mal&lory</b>: <script>&amp;"
    await sam.send("/note <u>x</u> & y", thread_id=card.thread_id)
    await sam.send("a <b>c</b> & d", thread_id=card.thread_id)
    assert (await mallory.expect("<b>c</b>")).text == "<i>Sam& (support team): a <b>c</b> & d"
    await sam.send("/resolve <code> &", thread_id=card.thread_id)
    assert "<code> &" in (await mallory.expect("How satisfied")).text


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


async def test_a_customers_edit_reaches_the_topic_and_the_crm_keeps_both_versions(
    harness_factory: HarnessFactory,
) -> None:
    harness, group = await start(harness_factory)
    sam = harness.agent("Sam", group=group)
    alice = harness.customer("Alice")
    card = await open_handoff(harness, alice, sam)
    sent = await alice.send("My order is 1234")
    await sam.expect("My order is 1234", thread_id=card.thread_id)

    harness.fake.push_edit(sent, "My order is 1243, sorry")

    edited = await sam.expect("edited a message", thread_id=card.thread_id)
    assert "My order is 1243, sorry" in edited.text and "Alice" in edited.text
    inbound = [
        i.text
        for i in await interactions(harness, InteractionKind.message)
        if i.direction == Direction.inbound
    ]
    assert "My order is 1234" in inbound and "My order is 1243, sorry" in inbound
    await alice.expect_silence()  # the bot does not answer an edit
