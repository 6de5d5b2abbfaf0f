"""The plumbing every update passes: scope, logging, errors, ordering, limits."""

from __future__ import annotations

import asyncio
import io
import logging
import re

from sqlmodel import col, func, select
from telegram import Update
from telegram.ext import CallbackQueryHandler, CommandHandler

from crm_core.errors import InvalidInput
from crm_core.models import Customer as CustomerRow
from crm_core.models import Direction, Interaction
from handlers.core.context import DeskContext
from handlers.core.send import send_html
from tests.fakes.bot_api import FakeUser
from tests.handlers.conftest import BOTH_DATABASES, Harness, HarnessFactory


async def _interactions(harness: Harness, customer_tg_id: int) -> list[Interaction]:
    await harness.settle()  # the bot logs a reply after Telegram accepted it
    async with harness.session_factory() as session:
        rows = await session.exec(select(Interaction).order_by(col(Interaction.id)))
        return [row for row in rows.all() if row.details.get("chat_id") == customer_tg_id]


@BOTH_DATABASES
async def test_start_greets_by_first_name_escaping_a_hostile_name(harness: Harness) -> None:
    mallory = harness.customer("<b>&", language_code="de")

    reply = await mallory.ask("/start", contains="Hallo")  # German templates exist now

    assert "Hallo, <b>&!" in reply.text  # shown literally, and the fake's HTML parser accepted it
    assert "&lt;b&gt;&amp;" in (reply.html or "")
    buttons = reply.keyboard_buttons()
    assert any("beschwerde" in b["text"].lower() for b in buttons)  # the German menu
    assert any(b.get("request_contact") for b in buttons)
    # Inbound command and outbound greeting are both on the customer's timeline.
    rows = await _interactions(harness, mallory.id)
    assert [(r.direction, r.text) for r in rows] == [
        (Direction.inbound, "/start"),
        (Direction.outbound, reply.text),
    ]
    async with harness.session_factory() as session:
        customer = (await session.exec(select(CustomerRow))).one()
    assert customer.name == "<b>&" and customer.last_seen_at is not None
    assert rows[0].customer_id == rows[1].customer_id == customer.id


@BOTH_DATABASES
async def test_redelivered_update_is_processed_and_logged_once(harness: Harness) -> None:
    alice = harness.customer("Alice")
    await alice.ask("/start", contains="Alice")
    update_id = harness.fake.delivered_update_ids[-1]

    harness.fake.redeliver(update_id)

    await alice.expect_silence()
    assert harness.fake.delivered_update_ids.count(update_id) == 2  # it did arrive twice
    async with harness.session_factory() as session:
        inbound = await session.exec(
            select(func.count()).where(Interaction.idempotency_key == f"tg:{update_id}")
        )
        outbound = await session.exec(
            select(func.count()).where(Interaction.direction == Direction.outbound)
        )
        assert inbound.one() == 1
        assert outbound.one() == 1


async def test_token_never_logged_even_at_debug(harness_factory: HarnessFactory) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        harness = await harness_factory()  # installs the redaction filter on root handlers
        alice = harness.customer("Alice")
        await alice.ask("/start", contains="Alice")
        await harness.restart()
        await alice.ask("/help", contains="/complaint")
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    logged = stream.getvalue()
    assert "getUpdates" in logged and "sendMessage" in logged  # the URLs were logged...
    assert harness.fake.token not in logged  # ...without the token
    assert harness.fake.token.split(":")[1] not in logged
    assert not re.search(r"bot\d+:[A-Za-z0-9_-]{10,}", logged)


async def test_failing_handler_gives_a_short_apology_and_keeps_the_message(
    harness_factory: HarnessFactory,
) -> None:
    async def boom(update: Update, context: DeskContext) -> None:
        raise RuntimeError("secret internal detail")

    harness = await harness_factory(extra_handlers=[CommandHandler("boom", boom)])
    alice = harness.customer("Alice")

    reply = await alice.ask("/boom please", contains="Sorry")

    assert "secret internal detail" not in reply.text and "Traceback" not in reply.text
    rows = await _interactions(harness, alice.id)
    assert rows[0].direction == Direction.inbound and rows[0].text == "/boom please"
    # The bot keeps working after the failure.
    await alice.ask("/help", contains="/complaint")


async def test_domain_error_is_shown_as_its_friendly_message(
    harness_factory: HarnessFactory,
) -> None:
    async def bad_input(update: Update, context: DeskContext) -> None:
        raise InvalidInput("That does not look like an e-mail address.")

    harness = await harness_factory(extra_handlers=[CommandHandler("bad", bad_input)])
    alice = harness.customer("Alice")

    reply = await alice.ask("/bad", contains="e-mail")

    assert reply.text == "That does not look like an e-mail address."


async def test_long_text_is_split_into_messages_telegram_accepts(
    harness_factory: HarnessFactory,
) -> None:
    paragraph = "<b>Step</b> " + "do this &amp; that, " * 40
    long_html = "\n\n".join(f"{i}. {paragraph}" for i in range(30))

    async def long_answer(update: Update, context: DeskContext) -> None:
        await send_html(context, long_html)

    harness = await harness_factory(extra_handlers=[CommandHandler("long", long_answer)])
    alice = harness.customer("Alice")
    await alice.send("/long")
    await harness.settle()

    parts = alice.replies
    assert len(parts) >= 6
    assert all(len(p.text) <= 4096 for p in parts)
    assert not [r for r in harness.fake.calls("sendMessage") if r.error]
    assert "".join(p.text for p in parts).count("do this & that") == 30 * 40
    outbound = [r for r in await _interactions(harness, alice.id) if r.direction == "out"]
    assert len(outbound) == 1 and outbound[0].details["message_ids"] == [
        p.message_id for p in parts
    ]


async def test_unknown_command_and_unsupported_content_get_a_helpful_answer(
    harness: Harness,
) -> None:
    alice = harness.customer("Alice")
    reply = await alice.ask("/frobnicate now", contains="/frobnicate")
    assert "/help" in reply.text

    await alice.send_sticker()
    assert "text" in (await alice.expect("sticker")).text
    await alice.send_voice()
    await alice.expect("voice")


async def test_rate_limited_reply_is_retried_after_retry_after(harness: Harness) -> None:
    alice = harness.customer("Alice")
    harness.fake.rate_limit("sendMessage", chat_id=alice.id, retry_after=1)

    await alice.ask("/help", contains="/complaint")

    attempts = [r for r in harness.fake.calls("sendMessage") if r.params["chat_id"] == alice.id]
    assert [r.error.code if r.error else 200 for r in attempts] == [429, 200]
    assert attempts[1].time - attempts[0].time >= 1


async def test_blocked_customer_does_not_break_the_bot(harness: Harness) -> None:
    bob, alice = harness.customer("Bob"), harness.customer("Alice")
    harness.fake.block(bob.id)

    await bob.send("/start")
    await harness.settle()
    await alice.ask("/start", contains="Alice")

    rows = await _interactions(harness, bob.id)
    assert [r.direction for r in rows] == [Direction.inbound]  # no outbound: nothing arrived


@BOTH_DATABASES
async def test_restart_keeps_the_customer(harness: Harness) -> None:
    alice = harness.customer("Alice")
    await alice.ask("/start", contains="Alice")

    await harness.restart()
    await alice.ask("/start", contains="Alice")

    async with harness.session_factory() as session:
        assert len((await session.exec(select(CustomerRow))).all()) == 1


async def test_one_chat_is_handled_in_order_while_other_chats_proceed(
    harness_factory: HarnessFactory,
) -> None:
    release = asyncio.Event()

    async def slow(update: Update, context: DeskContext) -> None:
        await release.wait()
        await send_html(context, "slow one done")

    harness = await harness_factory(extra_handlers=[CommandHandler("slow", slow)])
    alice, bob = harness.customer("Alice"), harness.customer("Bob")
    await alice.send("/slow")
    await alice.send("/help")

    await bob.ask("/help", contains="/complaint")  # Bob is not stuck behind Alice
    assert not alice.replies  # Alice's /help waits for her /slow

    release.set()
    await alice.expect("slow one done")
    await alice.expect("/complaint")  # ...and comes after it


async def test_group_messages_are_not_customers(harness: Harness) -> None:
    agents = harness.fake.add_group(-100777, "Agents", members={901: "member"})
    agent = FakeUser(id=901, first_name="Agent")
    harness.fake.push_message(agent, "/start", chat=agents)
    harness.fake.push_message(agent, "hello team", chat=agents)
    await harness.settle()

    assert not harness.fake.sent_to(agents.id)
    async with harness.session_factory() as session:
        assert (await session.exec(select(func.count()).select_from(CustomerRow))).one() == 0
        assert (await session.exec(select(func.count()).select_from(Interaction))).one() == 0


async def test_button_press_is_logged_and_a_failure_still_answers_it(
    harness_factory: HarnessFactory,
) -> None:
    async def explode(update: Update, context: DeskContext) -> None:
        raise RuntimeError("boom")

    harness = await harness_factory(extra_handlers=[CallbackQueryHandler(explode)])
    alice = harness.customer("Alice")
    greeting = await alice.ask("/start", contains="Alice")

    query_id = await alice.callback("test:boom", greeting)  # data no feature handles

    await alice.expect("Sorry")
    await harness.fake.wait_for(lambda: query_id in harness.fake.answered_callbacks)
    rows = await _interactions(harness, alice.id)
    assert rows[-2].details["callback_data"] == "test:boom"


async def test_sweepers_run_in_their_own_scope_and_failures_are_contained(
    harness_factory: HarnessFactory,
) -> None:
    seen: list[str] = []

    async def broken(context: DeskContext) -> None:
        raise RuntimeError("sweeper bug")

    async def announce(context: DeskContext) -> None:
        seen.append(type(context.session).__name__)
        group_id = context.deps.config.agent_chat_id
        assert group_id is not None
        await send_html(context, "sweep <b>ran</b>", chat_id=group_id)

    harness = await harness_factory(extra_sweepers=[broken, announce], agent_chat_id=-1001000000001)
    group = harness.agents_group(-1001000000001)
    sam = harness.agent("Sam", group=group)

    await harness.sweep()

    assert seen == ["AsyncSession"]
    assert (await sam.expect("sweep ran")).html == "sweep <b>ran</b>"


async def test_errors_in_a_forum_topic_are_answered_in_that_topic(
    harness_factory: HarnessFactory,
) -> None:
    async def bad_input(update: Update, context: DeskContext) -> None:
        raise InvalidInput("Claim it first.")

    harness = await harness_factory(extra_handlers=[CommandHandler("note", bad_input)])
    group = harness.agents_group()
    topic = harness.fake.add_topic(group.id, "C-000001")
    sam = harness.agent("Sam", group=group)

    await sam.send("/note hi", thread_id=topic.thread_id)

    assert (await sam.expect("Claim it first.")).thread_id == topic.thread_id


@BOTH_DATABASES
async def test_many_first_contacts_at_once(harness: Harness) -> None:
    customers = [harness.customer(f"C{i}") for i in range(25)]
    for customer in customers:
        await customer.send("/start")
        await customer.send("/help")

    for customer in customers:
        await customer.expect(f"Hello, {customer.user.first_name}!")
        await customer.expect("/complaint")
    await harness.settle()
    async with harness.session_factory() as session:
        assert (await session.exec(select(func.count()).select_from(CustomerRow))).one() == 25
        assert (await session.exec(select(func.count()).select_from(Interaction))).one() == 100
