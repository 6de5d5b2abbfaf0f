"""The durable inbox: idempotent storing, per-chat order, leases, retries, purge; the polling
lock. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

from sqlalchemy import update
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.clock import utcnow
from crm_core.db import SessionFactory
from crm_core.models import InboxState, InboxUpdate
from crm_core.services import inbox
from crm_core.services.inbox import IncomingUpdate


def _update(update_id: int, chat: str = "1") -> IncomingUpdate:
    return IncomingUpdate(
        update_id=update_id, order_key=chat, payload=json.dumps({"update_id": update_id})
    )


async def test_a_redelivered_update_is_stored_once(session: AsyncSession) -> None:
    assert await inbox.store_updates(session=session, updates=[_update(1), _update(2)]) == 2
    assert await inbox.store_updates(session=session, updates=[_update(2), _update(3)]) == 1
    assert await inbox.store_updates(session=session, updates=[_update(3), _update(3)]) == 0
    assert await inbox.depth(session=session) == 3


async def test_claims_follow_update_order_and_never_two_of_one_chat(session: AsyncSession) -> None:
    await inbox.store_updates(
        session=session, updates=[_update(1, "a"), _update(2, "a"), _update(3, "b")]
    )
    first = await inbox.claim_next(session=session, worker="w1")
    second = await inbox.claim_next(session=session, worker="w2")
    assert first is not None and second is not None
    assert (first.update_id, second.update_id) == (1, 3)  # 2 waits for 1 (same chat)
    assert await inbox.claim_next(session=session, worker="w3") is None
    await inbox.mark_done(session=session, update_id=1)
    third = await inbox.claim_next(session=session, worker="w3")
    assert third is not None and third.update_id == 2 and third.attempts == 1
    assert await inbox.depth(session=session) == 2  # 2 and 3 still in flight


async def test_a_batch_claim_takes_one_update_per_chat_and_records_the_finished(
    session: AsyncSession,
) -> None:
    await inbox.store_updates(
        session=session,
        updates=[_update(1, "a"), _update(2, "a"), _update(3, "b"), _update(4, "c")],
    )
    batch = await inbox.claim_batch(session=session, worker="w", limit=5)
    assert [item.update_id for item in batch] == [1, 3, 4]  # 2 waits behind 1
    assert await inbox.claim_batch(session=session, worker="w", limit=5) == []
    after = await inbox.claim_batch(session=session, worker="w", limit=5, done=[1, 3])
    assert [item.update_id for item in after] == [2]  # 1 recorded done: its chat moves on
    assert await inbox.depth(session=session) == 2  # 2 and 4
    assert await inbox.release_updates(session=session, update_ids=[2]) == 1
    again = await inbox.claim_next(session=session, worker="other")
    assert again is not None and again.update_id == 2 and again.attempts == 1  # not counted


async def _sixty_updates_in_seven_chats(session_factory: SessionFactory) -> None:
    async with session_factory() as session:
        await inbox.store_updates(
            session=session, updates=[_update(i, str(i % 7)) for i in range(1, 61)]
        )


def _each_once_in_chat_order(handled: list[tuple[str, int]]) -> None:
    assert sorted(u for _, u in handled) == list(range(1, 61))  # each exactly once
    for chat in {c for c, _ in handled}:
        ids = [u for c, u in handled if c == chat]
        assert ids == sorted(ids), f"chat {chat} out of order: {ids}"


async def test_concurrent_batch_claims_hand_out_each_update_once(
    session_factory: SessionFactory,
) -> None:
    await _sixty_updates_in_seven_chats(session_factory)
    handled: list[tuple[str, int]] = []

    async def instance(name: str) -> None:
        finished: list[int] = []
        async with session_factory() as session:
            while True:
                batch = await inbox.claim_batch(
                    session=session, worker=name, limit=3, done=finished
                )
                finished = [item.update_id for item in batch]
                handled.extend((item.order_key, item.update_id) for item in batch)
                if not batch:
                    if await inbox.depth(session=session) == 0:
                        return
                    await asyncio.sleep(0.005)

    await asyncio.wait_for(asyncio.gather(*(instance(f"i{n}") for n in range(3))), 60)
    _each_once_in_chat_order(handled)


async def test_concurrent_claims_hand_out_each_update_once(
    session_factory: SessionFactory,
) -> None:
    await _sixty_updates_in_seven_chats(session_factory)
    handled: list[tuple[str, int]] = []

    async def worker(name: str) -> None:
        async with session_factory() as session:
            while True:
                claimed = await inbox.claim_next(session=session, worker=name)
                if claimed is None:
                    if await inbox.depth(session=session) == 0:
                        return
                    await asyncio.sleep(0.005)
                    continue
                handled.append((claimed.order_key, claimed.update_id))
                await inbox.mark_done(session=session, update_id=claimed.update_id)

    await asyncio.wait_for(asyncio.gather(*(worker(f"w{n}") for n in range(4))), 60)
    _each_once_in_chat_order(handled)


async def test_an_expired_lease_is_taken_over(session: AsyncSession) -> None:
    await inbox.store_updates(session=session, updates=[_update(1), _update(2)])
    claimed = await inbox.claim_next(session=session, worker="crashed")
    assert claimed is not None and claimed.update_id == 1
    assert await inbox.claim_next(session=session, worker="other") is None  # chat blocked
    await _expire_leases(session)
    again = await inbox.claim_next(session=session, worker="other")
    assert again is not None and again.update_id == 1 and again.attempts == 2


async def test_renewed_leases_are_not_taken_over(session: AsyncSession) -> None:
    await inbox.store_updates(session=session, updates=[_update(1)])
    await inbox.claim_next(session=session, worker="w", lease=timedelta(seconds=-1))
    assert await inbox.renew_leases(
        session=session, worker="w", update_ids=[1], lease=timedelta(minutes=1)
    )
    assert await inbox.claim_next(session=session, worker="other") is None


async def test_a_failing_update_is_retried_then_kept_as_failed(session: AsyncSession) -> None:
    await inbox.store_updates(session=session, updates=[_update(1, "a"), _update(2, "a")])
    for attempt in range(1, 4):
        claimed = await inbox.claim_next(session=session, worker="w")
        assert claimed is not None and (claimed.update_id, claimed.attempts) == (1, attempt)
        state = await inbox.mark_failed_attempt(
            session=session, update_id=1, error="boom", retry_after=timedelta(0), max_attempts=3
        )
    assert state is InboxState.failed
    row = await session.get(InboxUpdate, 1, populate_existing=True)
    assert row is not None and row.last_error == "boom" and row.state is InboxState.failed
    nxt = await inbox.claim_next(session=session, worker="w")  # the chat moves on
    assert nxt is not None and nxt.update_id == 2
    counts = await inbox.counts(session=session)
    assert (counts.pending, counts.in_flight, counts.failed) == (1, 1, 1)
    assert await inbox.requeue(session=session, update_id=1)
    assert (await inbox.counts(session=session)).failed == 0


async def test_a_retry_waits_and_blocks_its_chat(session: AsyncSession) -> None:
    await inbox.store_updates(session=session, updates=[_update(1, "a"), _update(2, "a")])
    await inbox.claim_next(session=session, worker="w")
    await inbox.mark_failed_attempt(
        session=session, update_id=1, error="db down", retry_after=timedelta(minutes=1)
    )
    assert await inbox.claim_next(session=session, worker="w") is None


async def test_purge_keeps_pending_and_recent_updates(session: AsyncSession) -> None:
    await inbox.store_updates(session=session, updates=[_update(1), _update(2, "b"), _update(3)])
    for _ in range(2):
        claimed = await inbox.claim_next(session=session, worker="w")
        assert claimed is not None
        await inbox.mark_done(session=session, update_id=claimed.update_id)
    assert await inbox.purge_older_than(session=session, before=utcnow() - timedelta(hours=24)) == 0
    assert (
        await inbox.purge_older_than(session=session, before=utcnow() + timedelta(seconds=1)) == 2
    )
    assert await inbox.depth(session=session) == 1  # update 3 was never handled: kept


async def _expire_leases(session: AsyncSession) -> None:
    past = utcnow() - timedelta(seconds=1)
    await session.exec(update(InboxUpdate).values(claimed_until=past))  # type: ignore[call-overload]
    await session.commit()


# --- the polling lock -------------------------------------------------------------------------

STALE = timedelta(seconds=30)


async def test_a_second_poller_is_refused_while_the_first_lives(session: AsyncSession) -> None:
    assert (
        await inbox.acquire_polling_lock(
            session=session, owner="a", host="h1", pid=10, stale_after=STALE
        )
        is None
    )
    holder = await inbox.acquire_polling_lock(
        session=session, owner="b", host="h2", pid=11, stale_after=STALE
    )
    assert holder is not None and (holder.owner, holder.host, holder.pid) == ("a", "h1", 10)
    assert await inbox.heartbeat_polling_lock(session=session, owner="a")
    assert not await inbox.heartbeat_polling_lock(session=session, owner="b")
    await inbox.release_polling_lock(session=session, owner="a")
    assert (
        await inbox.acquire_polling_lock(
            session=session, owner="b", host="h2", pid=11, stale_after=STALE
        )
        is None
    )


async def test_a_stale_or_dead_holder_is_taken_over(session: AsyncSession) -> None:
    await inbox.acquire_polling_lock(session=session, owner="a", host="h", pid=1, stale_after=STALE)
    assert (
        await inbox.acquire_polling_lock(
            session=session, owner="b", host="h", pid=2, stale_after=timedelta(seconds=-1)
        )
        is None
    )
    assert not await inbox.heartbeat_polling_lock(session=session, owner="a")  # it lost it
    assert await inbox.acquire_polling_lock(
        session=session, owner="c", host="h", pid=3, stale_after=STALE,
        is_dead=lambda holder: holder.pid == 2,
    ) is None  # fmt: skip
    holder = await inbox.polling_lock_holder(session=session)
    assert holder is not None and holder.owner == "c"
