"""The durable inbox of incoming updates (polling and webhook alike).

An update is written here *before* Telegram is told it arrived (the next ``getUpdates`` offset,
or the webhook's 200), and handled from here. So a crash between receiving and handling loses
nothing, a slow desk builds its backlog in the database instead of in memory, and a redelivered
update (same ``update_id``) is ignored.

Claiming: an instance takes, in one statement, the oldest pending updates whose chats have
nothing older pending (so at most one of a chat), and holds them under a lease
(``claimed_until``); the same transaction records what it finished since its last claim
(:func:`claim_batch`). Never two updates of one chat are in flight, across all instances
sharing the database: the conditional ``UPDATE`` re-checks the lease on the rows it changes,
and on PostgreSQL candidates another instance is claiming right now are skipped (``FOR UPDATE
SKIP LOCKED``) rather than waited for; on SQLite writers are serialised. A lease that runs out
(the instance crashed) makes the update claimable again.

The payload is stored as JSON text: ``crm_core`` knows nothing of Telegram's types.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, delete, exists, func, or_, select, update
from sqlalchemy.orm import aliased
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.clock import as_utc, utcnow
from crm_core.models import AppState, InboxState, InboxUpdate
from crm_core.services._sql import dialect_insert, unit_of_work

# How long a claim lasts unless renewed; a crashed instance's updates wait at most this long.
DEFAULT_LEASE = timedelta(seconds=30)
# Processing attempts before an update is kept as failed instead of retried.
MAX_ATTEMPTS = 5
MAX_ERROR_LENGTH = 2000


@dataclass(frozen=True, slots=True)
class IncomingUpdate:
    update_id: int
    order_key: str
    payload: str  # JSON text


@dataclass(frozen=True, slots=True)
class ClaimedUpdate:
    update_id: int
    order_key: str
    payload: str
    attempts: int  # including this one; > 1 means an earlier attempt failed or was cut off


@dataclass(frozen=True, slots=True)
class InboxCounts:
    pending: int
    in_flight: int
    failed: int
    done: int
    oldest_pending_at: datetime | None


async def store_updates(*, session: AsyncSession, updates: Sequence[IncomingUpdate]) -> int:
    """Write a batch in one transaction; returns how many were new (redeliveries are ignored)."""
    if not updates:
        return 0
    now = utcnow()
    rows = [
        {
            "update_id": item.update_id,
            "order_key": item.order_key,
            "payload": item.payload,
            "state": InboxState.pending.value,
            "attempts": 0,
            "received_at": now,
        }
        for item in {item.update_id: item for item in updates}.values()
    ]
    stmt = (
        dialect_insert(session, InboxUpdate)
        .values(rows)
        .on_conflict_do_nothing(index_elements=["update_id"])
        .returning(InboxUpdate.__table__.c.update_id)  # type: ignore[attr-defined]
    )
    async with unit_of_work(session):
        inserted = (await session.exec(stmt)).all()  # only the rows that were new
    return len(inserted)


def _claimable(now: datetime) -> list[ColumnElement[bool]]:
    """Conditions of a row that may be claimed now: pending, not leased, nothing older of its
    chat pending (an older one in flight or waiting for a retry blocks the chat)."""
    older = aliased(InboxUpdate)
    col = InboxUpdate.__table__.c  # type: ignore[attr-defined]
    return [
        col.state == InboxState.pending.value,
        or_(col.claimed_until.is_(None), col.claimed_until < now),
        ~exists().where(
            older.order_key == col.order_key,
            older.state == InboxState.pending.value,  # type: ignore[arg-type]
            older.update_id < col.update_id,
        ),
    ]


async def claim_next(
    *,
    session: AsyncSession,
    worker: str,
    lease: timedelta = DEFAULT_LEASE,
    skip_keys: Sequence[str] = (),
) -> ClaimedUpdate | None:
    """Claim the oldest claimable update for ``worker``, or ``None`` when there is none."""
    claimed = await claim_batch(
        session=session, worker=worker, limit=1, lease=lease, skip_keys=skip_keys
    )
    return claimed[0] if claimed else None


async def claim_batch(
    *,
    session: AsyncSession,
    worker: str,
    limit: int,
    lease: timedelta = DEFAULT_LEASE,
    skip_keys: Sequence[str] = (),
    done: Sequence[int] = (),
) -> list[ClaimedUpdate]:
    """Mark ``done`` handled, then claim up to ``limit`` of the oldest claimable updates for
    ``worker`` (at most one per chat: a chat's later updates wait behind its oldest), oldest
    first; one transaction, one statement each.

    Handing back what was handled and taking the next work in one round trip is what keeps the
    inbox cheap per update. On PostgreSQL the candidates are locked ``SKIP LOCKED``, so
    instances claiming at once take different rows instead of queueing on the same oldest one;
    the outer ``UPDATE`` re-checks the lease on each row it changes either way."""
    now = utcnow()
    col = InboxUpdate.__table__.c  # type: ignore[attr-defined]
    candidates = (
        select(col.update_id)
        .where(*_claimable(now))
        .order_by(col.update_id)
        .limit(max(limit, 0))
        .with_for_update(skip_locked=True)  # SQLite has no row locks: rendered as nothing
    )
    if skip_keys:
        candidates = candidates.where(col.order_key.not_in(list(skip_keys)))
    # Chosen once: as a subquery of the UPDATE, PostgreSQL may re-run it for every row it
    # updates, and each run (seeing the rows just claimed as leased) picks another one.
    picked = candidates.cte("picked").prefix_with("MATERIALIZED", dialect="postgresql")
    claim = (
        update(InboxUpdate)
        .where(
            col.update_id.in_(select(picked.c.update_id)),
            col.state == InboxState.pending.value,
            or_(col.claimed_until.is_(None), col.claimed_until < now),
        )
        .values(claimed_by=worker, claimed_until=now + lease, attempts=col.attempts + 1)
        .returning(col.update_id, col.order_key, col.payload, col.attempts)
    )
    async with unit_of_work(session):
        if done:
            await session.exec(_mark_done_statement(done))
        rows = (await session.exec(claim)).all() if limit > 0 else []
    claimed = [
        ClaimedUpdate(update_id=r[0], order_key=r[1], payload=r[2], attempts=r[3]) for r in rows
    ]
    return sorted(claimed, key=lambda item: item.update_id)  # RETURNING keeps no order


async def renew_leases(
    *, session: AsyncSession, worker: str, update_ids: Sequence[int], lease: timedelta
) -> int:
    """Extend this worker's claims on updates still being processed; returns how many."""
    if not update_ids:
        return 0
    col = InboxUpdate.__table__.c  # type: ignore[attr-defined]
    stmt = (
        update(InboxUpdate)
        .where(
            col.update_id.in_(list(update_ids)),
            col.claimed_by == worker,
            col.state == InboxState.pending.value,
        )
        .values(claimed_until=utcnow() + lease)
    )
    async with unit_of_work(session):
        result = await session.exec(stmt)
    return int(result.rowcount or 0)


async def mark_done(*, session: AsyncSession, update_id: int) -> None:
    async with unit_of_work(session):
        await session.exec(_mark_done_statement([update_id]))


def _mark_done_statement(update_ids: Sequence[int]) -> Any:
    col = InboxUpdate.__table__.c  # type: ignore[attr-defined]
    return (
        update(InboxUpdate)
        .where(col.update_id.in_(list(update_ids)))
        .values(
            state=InboxState.done.value,
            processed_at=utcnow(),
            claimed_by=None,
            claimed_until=None,
            last_error=None,
        )
    )


async def mark_failed_attempt(
    *,
    session: AsyncSession,
    update_id: int,
    error: str,
    retry_after: timedelta,
    max_attempts: int = MAX_ATTEMPTS,
) -> InboxState:
    """Record a failed attempt: retried after ``retry_after`` (its chat waits meanwhile, to keep
    the order), or kept as ``failed`` once ``max_attempts`` are used up. Returns the new state."""
    col = InboxUpdate.__table__.c  # type: ignore[attr-defined]
    async with unit_of_work(session):
        attempts = (
            await session.exec(select(col.attempts).where(col.update_id == update_id))  # type: ignore[call-overload]
        ).scalar_one_or_none()
        if attempts is None:
            return InboxState.failed
        gave_up = attempts >= max_attempts
        state = InboxState.failed if gave_up else InboxState.pending
        values: dict[str, object] = {
            "state": state.value,
            "last_error": error[:MAX_ERROR_LENGTH],
            "claimed_by": None,
            "claimed_until": None if gave_up else utcnow() + retry_after,
        }
        if gave_up:
            values["processed_at"] = utcnow()
        await session.exec(update(InboxUpdate).where(col.update_id == update_id).values(**values))
    return state


async def depth(*, session: AsyncSession) -> int:
    """Updates not yet handled (waiting or in flight)."""
    col = InboxUpdate.__table__.c  # type: ignore[attr-defined]
    stmt = (
        select(func.count()).select_from(InboxUpdate).where(col.state == InboxState.pending.value)
    )
    async with unit_of_work(session):
        return int((await session.exec(stmt)).scalar_one())  # type: ignore[call-overload]


async def counts(*, session: AsyncSession) -> InboxCounts:
    """What the inbox holds, for ``deskbot doctor`` and /metrics."""
    col = InboxUpdate.__table__.c  # type: ignore[attr-defined]
    now = utcnow()
    by_state = select(col.state, func.count()).group_by(col.state)
    in_flight = (
        select(func.count())
        .select_from(InboxUpdate)
        .where(col.state == InboxState.pending.value, col.claimed_until > now)
    )
    oldest = select(func.min(col.received_at)).where(col.state == InboxState.pending.value)
    async with unit_of_work(session):
        states = dict((await session.exec(by_state)).all())  # type: ignore[call-overload]
        flying = int((await session.exec(in_flight)).scalar_one())  # type: ignore[call-overload]
        oldest_at = (await session.exec(oldest)).scalar_one_or_none()  # type: ignore[call-overload]
    return InboxCounts(
        pending=int(states.get(InboxState.pending.value, 0)),
        in_flight=flying,
        failed=int(states.get(InboxState.failed.value, 0)),
        done=int(states.get(InboxState.done.value, 0)),
        oldest_pending_at=oldest_at,
    )


async def requeue(*, session: AsyncSession, update_id: int) -> bool:
    """Process a kept update again (a replay, e.g. after fixing what made it fail)."""
    col = InboxUpdate.__table__.c  # type: ignore[attr-defined]
    stmt = (
        update(InboxUpdate)
        .where(col.update_id == update_id)
        .values(
            state=InboxState.pending.value,
            attempts=0,
            claimed_by=None,
            claimed_until=None,
            processed_at=None,
        )
    )
    async with unit_of_work(session):
        result = await session.exec(stmt)
    return bool(result.rowcount)


async def purge_older_than(*, session: AsyncSession, before: datetime) -> int:
    """Delete handled (done or failed) updates received before ``before``; pending ones stay."""
    col = InboxUpdate.__table__.c  # type: ignore[attr-defined]
    stmt = delete(InboxUpdate).where(
        col.received_at < before, col.state != InboxState.pending.value
    )
    async with unit_of_work(session):
        result = await session.exec(stmt)
    return int(result.rowcount or 0)


# --------------------------------------------------------------------------------------------
# The polling lock: one instance per bot token may call getUpdates
# --------------------------------------------------------------------------------------------

POLLING_LOCK_KEY = "polling_lock"


@dataclass(frozen=True, slots=True)
class LockHolder:
    owner: str
    host: str
    pid: int
    heartbeat_at: datetime


async def acquire_polling_lock(
    *,
    session: AsyncSession,
    owner: str,
    host: str,
    pid: int,
    stale_after: timedelta,
    is_dead: Callable[[LockHolder], bool] | None = None,
) -> LockHolder | None:
    """Take the polling lock for ``owner``; returns ``None`` on success, else who holds it.

    The lock is taken over when its holder's heartbeat is older than ``stale_after``, or when
    ``is_dead(holder)`` says the holder is gone (a crashed process on this host)."""
    now = utcnow()
    value = {"owner": owner, "host": host, "pid": pid}
    insert = dialect_insert(session, AppState).values(
        key=POLLING_LOCK_KEY, value=value, updated_at=now
    )
    async with unit_of_work(session):
        result = await session.exec(insert.on_conflict_do_nothing(index_elements=["key"]))
        if result.rowcount:
            return None
        row = await session.get(
            AppState, POLLING_LOCK_KEY, populate_existing=True, with_for_update=True
        )
        assert row is not None
        holder = _holder(row)
        fresh = holder.heartbeat_at > now - stale_after
        dead = is_dead is not None and is_dead(holder)
        if holder.owner != owner and fresh and not dead:
            return holder
        row.value = value
        row.updated_at = now
        session.add(row)
    return None


async def heartbeat_polling_lock(*, session: AsyncSession, owner: str) -> bool:
    """Refresh the lock's heartbeat; ``False`` when ``owner`` no longer holds it."""
    async with unit_of_work(session):
        row = await session.get(
            AppState, POLLING_LOCK_KEY, populate_existing=True, with_for_update=True
        )
        if row is None or row.value.get("owner") != owner:
            return False
        row.updated_at = utcnow()
        session.add(row)
    return True


async def release_polling_lock(*, session: AsyncSession, owner: str) -> None:
    col = AppState.__table__.c  # type: ignore[attr-defined]
    async with unit_of_work(session):
        row = await session.get(AppState, POLLING_LOCK_KEY, populate_existing=True)
        if row is not None and row.value.get("owner") == owner:
            await session.exec(delete(AppState).where(col.key == POLLING_LOCK_KEY))


async def polling_lock_holder(*, session: AsyncSession) -> LockHolder | None:
    async with unit_of_work(session):
        row = await session.get(AppState, POLLING_LOCK_KEY, populate_existing=True)
        return None if row is None else _holder(row)


def _holder(row: AppState) -> LockHolder:
    return LockHolder(
        owner=str(row.value.get("owner", "")),
        host=str(row.value.get("host", "")),
        pid=int(row.value.get("pid", 0)),
        heartbeat_at=as_utc(row.updated_at),
    )


async def claim_owners(*, session: AsyncSession) -> list[str]:
    """Who holds leases on pending updates now (to spot the claims of a crashed process)."""
    col = InboxUpdate.__table__.c  # type: ignore[attr-defined]
    stmt = (
        select(col.claimed_by)
        .where(col.state == InboxState.pending.value, col.claimed_until > utcnow())
        .distinct()
    )
    async with unit_of_work(session):
        return [str(owner) for owner in (await session.exec(stmt)).scalars() if owner]  # type: ignore[call-overload]


async def release_updates(*, session: AsyncSession, update_ids: Sequence[int]) -> int:
    """Give back claimed updates that were never started (an instance stopping): claimable at
    once, and the claim does not count as an attempt."""
    col = InboxUpdate.__table__.c  # type: ignore[attr-defined]
    return await _release(session, col.update_id, update_ids, attempts=col.attempts - 1)


async def release_claims(*, session: AsyncSession, owners: Sequence[str]) -> int:
    """Make the updates claimed by ``owners`` (known to be gone) claimable at once, instead of
    when their leases run out."""
    col = InboxUpdate.__table__.c  # type: ignore[attr-defined]
    return await _release(session, col.claimed_by, owners)


async def _release(
    session: AsyncSession, column: Any, values: Sequence[Any], **changes: Any
) -> int:
    """Pending updates whose ``column`` is among ``values`` lose their claim."""
    if not values:
        return 0
    col = InboxUpdate.__table__.c  # type: ignore[attr-defined]
    stmt = (
        update(InboxUpdate)
        .where(column.in_(list(values)), col.state == InboxState.pending.value)
        .values(claimed_by=None, claimed_until=None, **changes)
    )
    async with unit_of_work(session):
        result = await session.exec(stmt)
    return int(result.rowcount or 0)
