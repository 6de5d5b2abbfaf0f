"""The outbox end to end: the fake Bot API failing a share of the sends (429, 500, dropped
connections) while customers ask questions and a conversation is relayed both ways; nothing is
lost, nothing arrives twice, every chat gets its messages in order."""

from __future__ import annotations

import asyncio
import json
import re

from sqlmodel import col, select

from crm_core.models import OutboxMessage, OutboxStatus
from crm_core.services import outbox as store
from tests.handlers.conftest import BOTH_DATABASES, Harness, HarnessFactory
from tests.handlers.desk import GROUP_ID, latest_handoff, open_handoff, start

QUESTIONS = {
    "reset password": "I forgot my password",
    "How much is shipping?": "Shipping costs and free delivery",
    "How do gift cards work?": "Gift cards",
    "How do I get an invoice?": "Getting an invoice or receipt",
    "Do you use cookies?": "Cookies and tracking",
}
FAST_RETRIES = {"outbox_retry_seconds": 0.05}


def texts_to(harness: Harness, chat_id: int, thread_id: int | None = None) -> list[str]:
    return [m.text for m in harness.fake.sent_to(chat_id, thread_id=thread_id)]


async def outbox_rows(harness: Harness) -> list[OutboxMessage]:
    async with harness.session_factory() as session:
        return list(await session.exec(select(OutboxMessage).order_by(col(OutboxMessage.id))))


async def wait_until_outbox_empty(harness: Harness, timeout: float = 20) -> None:  # noqa: ASYNC109
    """Poll the outbox depth (bounded): the sender marks a row sent right after Telegram took
    it, a moment after the fake shows the message."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        async with harness.session_factory() as session:
            if (await store.counts(session=session)).pending == 0:
                return
        assert loop.time() < deadline, "the outbox did not empty"
        await asyncio.sleep(0.05)


@BOTH_DATABASES
async def test_under_random_faults_everything_arrives_once_and_in_order_per_chat(
    harness_factory: HarnessFactory,
) -> None:
    harness, group = await start(harness_factory, **FAST_RETRIES)
    sam = harness.agent("Sam", group=group)
    alice = harness.customer("Alice")
    bob = harness.customer("Bob")
    card = await open_handoff(harness, alice, sam)
    assert card.thread_id is not None
    harness.fake.inject_faults(0.3, seed=11)

    for n in range(8):
        await alice.send(f"message {n}")
        await sam.send(f"reply {n}", thread_id=card.thread_id)
    for question in QUESTIONS:
        await bob.send(question)

    relayed = [f"Alice: message {n}" for n in range(8)]
    await harness.fake.wait_for(
        lambda: sum(t in relayed for t in texts_to(harness, GROUP_ID, card.thread_id)) == 8,
        timeout=30,
    )
    await harness.fake.wait_for(
        lambda: (
            len(replies_to(harness, alice.id)) == 8
            and len(answers(harness, bob.id)) == len(QUESTIONS)
        ),
        timeout=30,
    )
    await wait_until_outbox_empty(harness)
    harness.fake.inject_faults(0)
    await harness.settle()

    # The relayed lines only (the card quotes the messages too, and is refreshed as they come).
    topic = [t for t in texts_to(harness, GROUP_ID, card.thread_id) if t.startswith("Alice: ")]
    assert topic == relayed  # once each, in order
    assert replies_to(harness, alice.id) == [str(n) for n in range(8)]
    assert answers(harness, bob.id) == list(QUESTIONS.values())
    injected = harness.fake.faults_injected
    assert injected["429"] and injected["500"] and injected["disconnect"], injected
    rows = await outbox_rows(harness)
    assert {row.status for row in rows} == {OutboxStatus.sent}
    assert any(row.attempts > 1 for row in rows)  # some went through the sender


def replies_to(harness: Harness, chat_id: int) -> list[str]:
    """The numbers of Sam's "reply <n>" messages that reached ``chat_id``, in order."""
    found = (re.search(r"\breply (\d+)\b", text) for text in texts_to(harness, chat_id))
    return [match.group(1) for match in found if match]


def answers(harness: Harness, chat_id: int) -> list[str]:
    """The article titles the bot answered ``chat_id`` with, in the order they arrived."""
    found: list[str] = []
    for message in harness.fake.sent_to(chat_id):
        title = next((t for t in QUESTIONS.values() if t in message.text), None)
        if title is not None:
            found.append(title)
    return found


@BOTH_DATABASES
async def test_a_reply_whose_retries_run_out_is_delivered_later_and_the_chat_keeps_order(
    harness_factory: HarnessFactory,
) -> None:
    harness, _ = await start(harness_factory, outbox_retry_seconds=0.2)
    alice = harness.customer("Alice")
    await alice.ask("/start", contains="Alice")
    # More 429s than the rate limiter retries (3): the answer cannot go now.
    harness.fake.rate_limit("sendMessage", chat_id=alice.id, retry_after=1, times=4)

    await alice.send("reset password")
    await harness.settle()
    queued = [row for row in await outbox_rows(harness) if row.status == OutboxStatus.pending]
    assert len(queued) == 1 and queued[0].chat_id == alice.id
    await alice.send("Do you use cookies?")  # waits behind the queued answer

    first = await alice.expect("I forgot my password", timeout=15)
    second = await alice.expect("Cookies and tracking", timeout=15)
    assert first.message_id < second.message_id
    await wait_until_outbox_empty(harness)
    assert all(row.status == OutboxStatus.sent for row in await outbox_rows(harness))


async def test_a_queued_message_to_a_customer_who_blocked_the_bot_is_not_retried(
    harness_factory: HarnessFactory,
) -> None:
    harness, group = await start(harness_factory, **FAST_RETRIES)
    sam = harness.agent("Sam", group=group)
    alice = harness.customer("Alice")
    card = await open_handoff(harness, alice, sam)
    # The reply cannot go now (a 500, answered before the fake looks at the chat); when the
    # sender tries again, Telegram says Alice blocked the bot.
    harness.fake.block(alice.id)
    harness.fake.fail_next("sendMessage", 500, "Internal Server Error")
    before = len(sends_to(harness, alice.id))

    await sam.send("Are you still there?", thread_id=card.thread_id)

    await sam.expect("has blocked the bot", thread_id=card.thread_id, timeout=10)
    assert (await latest_handoff(harness)).unreachable
    rows = [row for row in await outbox_rows(harness) if row.chat_id == alice.id]
    assert [row.status for row in rows][-1] == OutboxStatus.unreachable
    tries = len(sends_to(harness, alice.id))
    assert tries - before == 2  # the first attempt and the sender's, no more
    assert await harness.app.send_outbox() == 0
    assert len(sends_to(harness, alice.id)) == tries


def sends_to(harness: Harness, chat_id: int) -> list[object]:
    return [c for c in harness.fake.calls("sendMessage") if c.params.get("chat_id") == chat_id]


async def test_a_message_telegram_refuses_for_good_is_kept_as_failed_not_retried(
    harness: Harness,
) -> None:
    alice = harness.customer("Alice")
    harness.fake.fail_next("sendMessage", 400, "Bad Request: chat not found")

    await alice.send("/help")
    await harness.settle()

    rows = await outbox_rows(harness)
    assert [row.status for row in rows][:1] == [OutboxStatus.failed]
    assert "chat not found" in (rows[0].error or "").lower()
    assert await harness.app.send_outbox() == 0  # nothing left to send


@BOTH_DATABASES
async def test_messages_queued_while_telegram_is_down_survive_a_restart(
    harness_factory: HarnessFactory,
) -> None:
    harness = await harness_factory(**FAST_RETRIES)
    alice = harness.customer("Alice")
    await alice.ask("/start", contains="Alice")
    harness.fake.inject_faults(1.0, kinds=["500"], methods=["sendMessage"])  # Telegram is down

    await alice.send("reset password")
    await alice.send("Do you use cookies?")
    await harness.settle()
    await harness.restart()  # the queued answers are in the database, not in this process
    assert [row.status for row in await outbox_rows(harness)].count(OutboxStatus.pending) == 2
    harness.fake.inject_faults(0)  # Telegram is back

    first = await alice.expect("I forgot my password", timeout=15)
    second = await alice.expect("Cookies and tracking", timeout=15)
    assert first.message_id < second.message_id
    await wait_until_outbox_empty(harness)


async def test_a_document_asked_for_while_telegram_is_down_arrives_whole_later(
    harness_factory: HarnessFactory,
) -> None:
    harness = await harness_factory(**FAST_RETRIES)
    alice = harness.customer("Alice")
    await alice.ask("/email alice@example.com", contains="noted")
    harness.fake.inject_faults(1.0, kinds=["500"], methods=["sendDocument"])  # Telegram is down

    await alice.send("/mydata")
    await harness.settle()
    (queued,) = [row for row in await outbox_rows(harness) if row.method == "send_document"]
    assert queued.status == OutboxStatus.pending  # its content waits in the database
    harness.fake.inject_faults(0)  # Telegram is back

    document = await alice.expect("everything we store", timeout=15)
    assert document.method == "sendDocument"
    data = json.loads(harness.fake.files[document.data["document"]["file_id"]])
    assert data["customer"]["email"] == "alice@example.com"
    await wait_until_outbox_empty(harness)
