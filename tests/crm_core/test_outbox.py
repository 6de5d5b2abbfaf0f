"""The outbox store: queued messages go out oldest first per chat, a claim is held by one
sender, passing failures are rescheduled, a blocked chat is given up at once, and the send
budget counts across sessions (instances). On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.clock import utcnow
from crm_core.db import SessionFactory
from crm_core.services import outbox as store
from crm_core.services.outbox import OutgoingMessage

LEASE = timedelta(minutes=2)


def message(chat_id: int, text: str, priority: int = 0) -> OutgoingMessage:
    return OutgoingMessage(
        chat_id=chat_id,
        method="send_message",
        payload={"chat_id": chat_id, "text": text},
        priority=priority,
    )


async def queue(session: AsyncSession, *messages: OutgoingMessage) -> None:
    await store.add_pending_no_commit(session, messages)
    await session.commit()


async def test_only_the_oldest_pending_message_of_a_chat_is_due(session: AsyncSession) -> None:
    await queue(session, message(1, "a1"), message(2, "b1"), message(1, "a2"))

    claimed = await store.claim_due(session, lease=LEASE)

    assert [row.payload["text"] for row in claimed] == ["a1", "b1"]
    assert await store.has_pending_no_commit(session, 1)
    assert not await store.has_pending_no_commit(session, 3)
    await session.commit()


async def test_a_claimed_message_is_not_claimed_again_until_its_lease_ends(
    session_factory: SessionFactory,
) -> None:
    async with session_factory() as session:
        await queue(session, message(1, "a1"))
    async with session_factory() as one, session_factory() as other:
        first, second = await asyncio.gather(
            store.claim_due(one, lease=LEASE), store.claim_due(other, lease=LEASE)
        )
    assert len(first) + len(second) == 1  # one sender holds it
    async with session_factory() as session:
        later = utcnow() + LEASE + timedelta(seconds=1)
        assert len(await store.claim_due(session, lease=LEASE, now=later)) == 1  # sender died


async def test_sent_frees_the_chat_and_the_next_message_is_due(session: AsyncSession) -> None:
    await queue(session, message(1, "a1"), message(1, "a2"))
    (head,) = await store.claim_due(session, lease=LEASE)
    assert head.id is not None

    await store.mark_sent(session=session, outbox_id=head.id, message_ids=[7])

    (following,) = await store.claim_due(session, lease=LEASE)
    assert following.payload["text"] == "a2"
    counts = await store.counts(session=session)
    assert counts.pending == 2 - 1 and counts.failed == 0


async def test_a_passing_failure_waits_and_keeps_the_chat_behind_it(
    session: AsyncSession,
) -> None:
    await queue(session, message(1, "a1"), message(1, "a2"))
    (head,) = await store.claim_due(session, lease=LEASE)
    assert head.id is not None
    soon = utcnow() + timedelta(seconds=30)

    await store.reschedule(session=session, outbox_id=head.id, not_before=soon, error="500")

    assert await store.claim_due(session, lease=LEASE) == []  # a2 waits behind a1
    (again,) = await store.claim_due(session, lease=LEASE, now=soon + timedelta(seconds=1))
    assert again.id == head.id and again.attempts == 1 and again.error == "500"


async def test_higher_priority_goes_first(session: AsyncSession) -> None:
    await queue(session, message(1, "campaign", priority=2), message(2, "reply", priority=0))

    claimed = await store.claim_due(session, lease=LEASE, limit=1)

    assert [row.payload["text"] for row in claimed] == ["reply"]


async def test_a_blocked_chat_gives_up_all_its_messages_at_once(session: AsyncSession) -> None:
    await queue(session, message(1, "a1"), message(1, "a2"), message(2, "b1"))

    assert await store.mark_chat_unreachable(session=session, chat_id=1, error="403") == 2

    assert [row.payload["text"] for row in await store.claim_due(session, lease=LEASE)] == ["b1"]
    assert await store.pending_messages(session=session, chat_id=1) == []


async def test_purge_keeps_pending_messages(session: AsyncSession) -> None:
    await queue(session, message(1, "waiting"))
    await store.add_sent_no_commit(session, [message(2, "sent")], [5])
    await session.commit()

    assert await store.purge(session=session, older_than=utcnow() + timedelta(seconds=1)) == 1

    assert (await store.counts(session=session)).pending == 1


async def test_the_send_budget_is_shared_by_sessions_and_all_or_nothing(
    session_factory: SessionFactory,
) -> None:
    window = 1_000_000

    async def take(*takes: tuple[str, int, int]) -> tuple[str, int] | None:
        async with session_factory() as session:  # a fresh session: another instance
            return await store.take_budget(session, takes)

    results = await asyncio.gather(*(take(("all", window, 3)) for _ in range(5)))
    assert results.count(None) == 3  # five senders, three units
    # A full chat budget takes nothing from the overall one.
    assert await take(("chat:9", window, 1)) is None
    assert await take(("all", window + 1, 2), ("chat:9", window, 1)) == ("chat:9", window)
    assert await take(("all", window + 1, 2)) is None
    assert await take(("all", window + 1, 2)) is None
    assert await take(("all", window + 1, 2)) == ("all", window + 1)

    async with session_factory() as session:
        await store.purge_budget(session=session, before_window=window + 1)
    assert await take(("all", window, 3)) is None  # that window was forgotten
