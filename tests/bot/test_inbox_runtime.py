"""Polling through the inbox: what Telegram was told had arrived is always stored first; a
backlog is drained on start; failing updates are retried, then kept as failed. Both databases."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from sqlmodel import select
from telegram import Update

from bot.inbox_runtime import order_key
from crm_core.db import SessionFactory
from crm_core.models import InboxState, InboxUpdate
from crm_core.services import inbox
from crm_core.services.inbox import IncomingUpdate
from tests.bot.inbox_harness import running
from tests.fakes.bot_api import FakeBotAPI, FakeUser, RecordedRequest


@pytest.fixture
async def fake() -> AsyncIterator[FakeBotAPI]:
    async with FakeBotAPI() as server:
        yield server


async def _stored_ids(session_factory: SessionFactory) -> set[int]:
    async with session_factory() as session:
        ids = set((await session.exec(select(InboxUpdate.update_id))).all())
        await session.commit()
    return ids


async def test_every_confirmed_update_is_already_in_the_inbox(
    fake: FakeBotAPI, session_factory: SessionFactory
) -> None:
    violations: list[str] = []
    confirmations: list[int] = []

    async def check(request: RecordedRequest) -> None:
        if request.method != "getUpdates" or not request.params.get("offset"):
            return
        offset = int(request.params["offset"])
        confirmed = {u for u in fake.delivered_update_ids if u < offset}
        missing = confirmed - await _stored_ids(session_factory)
        confirmations.append(offset)
        if missing:
            violations.append(f"offset {offset} confirms {sorted(missing)}, not stored")

    fake.request_hooks.append(check)
    users = [FakeUser(id=8000 + n, first_name=f"U{n}") for n in range(4)]
    async with running(fake, session_factory):
        for round_ in range(5):
            for user in users:
                fake.push_message(user, "/help" if round_ % 2 else "hello")
        await fake.wait_processed(timeout=60)
        replies = {user.id: len(fake.sent_to(user.id)) for user in users}
    assert confirmations and not violations, violations
    assert all(n == 5 for n in replies.values()), replies
    assert len(await _stored_ids(session_factory)) == 20


async def test_a_backlog_in_the_inbox_is_handled_on_start_in_order(
    fake: FakeBotAPI, session_factory: SessionFactory
) -> None:
    alice = FakeUser(id=8100, first_name="Alice")
    fake.private_chat(alice)
    backlog = []
    for n, text in enumerate(["hello", "/help", "thanks"]):
        payload = {
            "update_id": 500 + n,
            "message": {
                "message_id": n + 1, "date": 0, "chat": {"id": alice.id, "type": "private"},
                "from": alice.to_dict(), "text": text,
                **({"entities": [{"type": "bot_command", "offset": 0, "length": 5}]}
                   if text.startswith("/") else {}),
            },
        }  # fmt: skip
        backlog.append(IncomingUpdate(500 + n, str(alice.id), json.dumps(payload)))
    async with session_factory() as session:
        await inbox.store_updates(session=session, updates=backlog)
    async with running(fake, session_factory, poll=False):
        await fake.wait_for(lambda: len(fake.sent_to(alice.id)) >= 3, timeout=20)
    texts = [m.text for m in fake.sent_to(alice.id)]
    assert "Alice" in texts[0] and "You're welcome" in texts[2], texts
    async with session_factory() as session:
        assert await inbox.depth(session=session) == 0


async def test_a_failing_update_is_retried_then_kept_as_failed(
    fake: FakeBotAPI, session_factory: SessionFactory
) -> None:
    bob = FakeUser(id=8200, first_name="Bob")
    async with running(fake, session_factory) as (application, runtime):
        runtime.retry_base = 0.01
        original = application.process_update
        poisoned = fake.push_message(bob, "hello").data["message_id"]

        async def failing(update: object) -> None:
            message = getattr(update, "effective_message", None)
            if message is not None and message.message_id == poisoned:
                raise RuntimeError("the database went away")
            await original(update)

        application.process_update = failing  # type: ignore[method-assign]
        fake.push_message(bob, "/help")  # the chat goes on after the failed one
        await fake.wait_for(lambda: fake.sent_to(bob.id), timeout=30)
        assert len(fake.sent_to(bob.id)) == 1 and "/complaint" in fake.sent_to(bob.id)[0].text
        assert runtime.metrics.updates_failed._value.get() == inbox.MAX_ATTEMPTS
    async with session_factory() as session:
        counts = await inbox.counts(session=session)
        failed = (
            await session.exec(select(InboxUpdate).where(InboxUpdate.state == InboxState.failed))
        ).one()
    assert counts.failed == 1 and counts.pending == 0
    assert failed.attempts == inbox.MAX_ATTEMPTS
    assert failed.last_error == "RuntimeError: the database went away"


def _message_update(update_id: int, user: FakeUser, text: str) -> IncomingUpdate:
    payload = {
        "update_id": update_id,
        "message": {
            "message_id": update_id, "date": 0, "chat": {"id": user.id, "type": "private"},
            "from": user.to_dict(), "text": text,
        },
    }  # fmt: skip
    return IncomingUpdate(update_id, str(user.id), json.dumps(payload))


async def test_two_instances_share_one_inbox_without_doubles_and_in_chat_order(
    fake: FakeBotAPI, session_factory: SessionFactory
) -> None:
    users = [FakeUser(id=8300 + n, first_name=f"M{n}") for n in range(5)]
    for user in users:
        fake.private_chat(user)
    phrases = ["hello", "thanks", "How do I return an item?", "Where is my order?"]
    backlog = [
        _message_update(1000 + i, users[i % len(users)], phrases[i % len(phrases)])
        for i in range(40)
    ]
    async with session_factory() as session:
        await inbox.store_updates(session=session, updates=backlog)
    async with (
        running(fake, session_factory, poll=False, inbox_workers=3, instance="a:1:x") as (_, one),
        running(fake, session_factory, poll=False, inbox_workers=3, instance="b:2:y") as (_, two),
    ):
        await fake.wait_for(lambda: len(fake.processed_update_ids) >= 40, timeout=60)
        handled = {"one": one.metrics.updates_processed._value.get(),
                   "two": two.metrics.updates_processed._value.get()}  # fmt: skip
    assert sorted(fake.processed_update_ids) == [u.update_id for u in backlog], handled
    for user in users:
        assert len(fake.sent_to(user.id)) == 8  # one answer per message, none twice
    async with session_factory() as session:
        from crm_core.models import Direction, Interaction

        rows = (
            await session.exec(
                select(Interaction)
                .where(Interaction.direction == Direction.inbound)
                .order_by(Interaction.id)  # type: ignore[arg-type]
            )
        ).all()
    by_chat: dict[int, list[int]] = {}
    for row in rows:
        by_chat.setdefault(row.details["chat_id"], []).append(row.details["update_id"])
    assert all(ids == sorted(ids) and len(ids) == 8 for ids in by_chat.values()), by_chat


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_an_outage_is_retried_and_logged_once(
    fake: FakeBotAPI, session_factory: SessionFactory, caplog: pytest.LogCaptureFixture
) -> None:
    carol = FakeUser(id=8400, first_name="Carol")
    for _ in range(4):
        fake.fail_next("getUpdates", 502, "Bad Gateway")
    async with running(fake, session_factory, poll=False) as (_, runtime):
        runtime.backoff_base = 0.01
        runtime.start_polling()
        fake.push_message(carol, "hello")
        await fake.wait_for_message(carol.id, contains="Carol", timeout=20)
    failed = [r for r in fake.calls("getUpdates") if r.error is not None]
    assert len(failed) == 4
    warnings = [r.getMessage() for r in caplog.records if r.name == "bot.inbox_runtime"]
    assert len([w for w in warnings if "retrying with backoff" in w]) == 1, warnings
    assert len([w for w in warnings if "works again" in w]) == 1, warnings


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_outgoing_calls_and_429s_are_counted(
    fake: FakeBotAPI, session_factory: SessionFactory
) -> None:
    dan = FakeUser(id=8500, first_name="Dan")
    fake.rate_limit("sendMessage", chat_id=dan.id, retry_after=1)
    async with running(fake, session_factory) as (_, runtime):
        fake.push_message(dan, "hello")
        await fake.wait_for_message(dan.id, contains="Dan", timeout=20)
        await fake.wait_processed(timeout=10)
    page = runtime.metrics.render().decode()  # stopped: the update is marked done
    assert 'deskbot_telegram_rate_limited_total{method="sendMessage"} 1.0' in page, page
    assert 'deskbot_telegram_requests_total{method="sendMessage"} 2.0' in page, page
    assert 'deskbot_telegram_errors_total{error="RetryAfter",method="sendMessage"} 1.0' in page
    assert "deskbot_updates_processed_total 1.0" in page
    assert "deskbot_update_processing_seconds_count 1.0" in page


async def test_an_update_cut_off_before_its_answer_is_answered_after_the_restart(
    fake: FakeBotAPI, session_factory: SessionFactory
) -> None:
    """As the crashed process left it: both updates logged and claimed once; 601 had its
    answer sent (and logged), 602 had not. The restart answers 602 only."""
    from sqlalchemy import update

    from crm_core.models import Channel, Direction, InteractionKind
    from crm_core.services.customers import identify_customer
    from crm_core.services.interactions import log_interaction

    eve = FakeUser(id=8600, first_name="Eve")
    fake.private_chat(eve)
    async with session_factory() as session:
        await inbox.store_updates(
            session=session,
            updates=[_message_update(601, eve, "thanks"), _message_update(602, eve, "hello")],
        )
        customer = await identify_customer(
            session=session, channel=Channel.telegram, external_id=str(eve.id), name="Eve"
        )
        for key in ["tg:601", "tg:601:out:1", "tg:602"]:
            await log_interaction(
                session=session,
                customer_id=customer.id,
                channel=Channel.telegram,
                direction=Direction.outbound if ":out:" in key else Direction.inbound,
                kind=InteractionKind.message,
                idempotency_key=key,
            )
        await session.exec(update(InboxUpdate).values(attempts=1))  # type: ignore[call-overload]
        await session.commit()
    async with running(fake, session_factory, poll=False):
        await fake.wait_for(lambda: len(fake.processed_update_ids) >= 2, timeout=20)
    texts = [m.text for m in fake.sent_to(eve.id)]
    # Only the greeting for 602; 601 ("thanks") had been answered before the crash.
    assert len(texts) == 1 and "Eve" in texts[0], texts


def test_a_forum_groups_topics_are_ordered_apart_and_everything_else_per_chat() -> None:
    group = {"id": -1001, "type": "supergroup", "title": "Agents", "is_forum": True}
    agent = {"id": 7, "is_bot": False, "first_name": "Sam"}

    def message(update_id: int, **extra: object) -> Update:
        data = {"message_id": update_id, "date": 0, "chat": group, "from": agent, **extra}
        return Update.de_json({"update_id": update_id, "message": data}, None)

    in_topic = message(1, text="hi", message_thread_id=42, is_topic_message=True)
    other_topic = message(2, text="hi", message_thread_id=43, is_topic_message=True)
    general = message(3, text="/sla")
    reply_in_general = message(4, text="ok", message_thread_id=9)  # a reply thread, no topic
    pressed = Update.de_json(
        {
            "update_id": 5,
            "callback_query": {
                "id": "q",
                "from": agent,
                "chat_instance": "c",
                "data": "x",
                "message": {
                    "message_id": 10,
                    "date": 0,
                    "chat": group,
                    "message_thread_id": 42,
                    "is_topic_message": True,
                },
            },
        },
        None,
    )
    keys = [order_key(u) for u in (in_topic, other_topic, general, reply_in_general, pressed)]
    assert keys == ["-1001:42", "-1001:43", "-1001", "-1001", "-1001:42"]
