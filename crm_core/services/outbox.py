"""The outbox: every message the bot sends is a row (``OutboxMessage``), and nothing Telegram
failed to take for a passing reason is lost.

- A message sent at once is recorded ``sent`` with :func:`add_sent_no_commit`, inside the
  caller's transaction (the one that logs the outbound Interaction): no extra commit.
- A message whose sending failed for a passing reason, or whose chat still has older pending
  messages, is written ``pending`` (:func:`add_pending_no_commit`); the sender
  (:func:`claim_due`, then :func:`mark_sent` / :func:`reschedule` / :func:`mark_failed` /
  :func:`mark_chat_unreachable`) delivers it later, oldest of each chat first.
- :func:`take_budget` counts sends per key and time window for the rate limiter, shared by
  every instance on the database.

Claiming without a lease column: the sender pushes a due row's ``not_before`` forward with a
compare-and-set on its old value; the instance whose UPDATE matched owns the row until then.
A crashed sender's row simply becomes due again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, delete, exists, func, update
from sqlalchemy import select as core_select
from sqlalchemy.orm import aliased
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.clock import utcnow
from crm_core.models import OutboxMessage, OutboxStatus, SendBudget
from crm_core.services._sql import dialect_insert, single_write

_TABLE = OutboxMessage.__table__  # type: ignore[attr-defined]
_BUDGET = SendBudget.__table__  # type: ignore[attr-defined]
ERROR_LIMIT = 500  # characters of Telegram's error kept on a row


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """What to record of one Bot API send."""

    chat_id: int
    method: str
    payload: dict[str, Any]
    priority: int
    thread_id: int | None = None
    customer_id: int | None = None
    handoff_id: int | None = None
    link: dict[str, Any] | None = None
    # A queued message: not before this, and why it was queued.
    not_before: datetime | None = None
    error: str | None = None

    def values(self) -> dict[str, Any]:
        return {
            "chat_id": self.chat_id,
            "thread_id": self.thread_id,
            "method": self.method,
            "payload": self.payload,
            "priority": self.priority,
            "customer_id": self.customer_id,
            "handoff_id": self.handoff_id,
            "link": self.link or {},
            "attempts": 0,
            "message_ids": [],
            "error": _short(self.error),
            "sent_at": None,
        }


# Statements built once (this runs for every message the bot sends).
_HAS_PENDING = (
    core_select(_TABLE.c.id)
    .where(_TABLE.c.status == OutboxStatus.pending.value)
    .where(_TABLE.c.chat_id == bindparam("chat_id"))
    .limit(1)
)
_INSERT = _TABLE.insert()


async def has_pending_no_commit(session: AsyncSession, chat_id: int) -> bool:
    """Whether ``chat_id`` has messages still waiting (an index lookup; no commit)."""
    result = await session.exec(_HAS_PENDING, params={"chat_id": chat_id})  # type: ignore[call-overload]
    return result.first() is not None


async def add_sent_no_commit(
    session: AsyncSession, messages: Sequence[OutgoingMessage], message_ids: Sequence[int]
) -> None:
    """Record messages Telegram took (``message_ids[i]`` for ``messages[i]``), no commit."""
    now = utcnow()
    rows = [
        {
            **message.values(),
            "status": OutboxStatus.sent.value,
            "attempts": 1,
            "not_before": now,
            "message_ids": [message_id],
            "created_at": now,
            "sent_at": now,
        }
        for message, message_id in zip(messages, message_ids, strict=True)
    ]
    if len(rows) == 1:  # the usual case: a plain execute, not the executemany machinery
        await session.exec(_INSERT, params=rows[0])
    elif rows:
        await session.exec(_INSERT, params=rows)


async def add_pending_no_commit(session: AsyncSession, messages: Sequence[OutgoingMessage]) -> None:
    """Queue messages for the sender, in order (no commit)."""
    now = utcnow()
    for message in messages:  # one by one: ids must follow the order (executemany may not)
        values = {
            **message.values(),
            "status": OutboxStatus.pending.value,
            "attempts": 1 if message.error else 0,
            "not_before": message.not_before or now,
            "created_at": now,
        }
        await session.exec(_INSERT, params=values)


async def add_finished(
    session: AsyncSession, message: OutgoingMessage, *, status: OutboxStatus, error: str
) -> None:
    """Record a message Telegram refused for good (failed, unreachable); commits."""
    now = utcnow()
    async with single_write(session):
        await session.exec(
            _INSERT,
            params={
                **message.values(),
                "status": status.value,
                "attempts": 1,
                "not_before": now,
                "error": _short(error),
                "created_at": now,
            },
        )


async def claim_due(
    session: AsyncSession, *, lease: timedelta, limit: int = 50, now: datetime | None = None
) -> list[OutboxMessage]:
    """The oldest pending message of each chat whose time has come, claimed for ``lease``
    (highest priority first). A chat's later messages wait until its head is done."""
    now = now or utcnow()
    older = aliased(OutboxMessage)
    head = ~exists().where(
        and_(
            col(older.status) == OutboxStatus.pending,
            col(older.chat_id) == OutboxMessage.chat_id,
            col(older.id) < OutboxMessage.id,
        )
    )
    stmt = (
        select(OutboxMessage)
        .where(col(OutboxMessage.status) == OutboxStatus.pending)
        .where(col(OutboxMessage.not_before) <= now)
        .where(head)
        .order_by(col(OutboxMessage.priority), col(OutboxMessage.id))
        .limit(limit)
    )
    async with single_write(session):
        candidates = list(await session.exec(stmt))
        claimed: list[OutboxMessage] = []
        until = now + lease
        for row in candidates:
            result = await session.exec(
                update(OutboxMessage)
                .where(col(OutboxMessage.id) == row.id)
                .where(col(OutboxMessage.status) == OutboxStatus.pending)
                .where(col(OutboxMessage.not_before) == row.not_before)
                .values(not_before=until)
                .execution_options(synchronize_session=False)
            )
            if result.rowcount == 1:
                claimed.append(row)
        session.expunge_all()
    return claimed


async def mark_sent(session: AsyncSession, *, outbox_id: int, message_ids: list[int]) -> None:
    await _set(
        session,
        outbox_id,
        status=OutboxStatus.sent,
        message_ids=message_ids,
        sent_at=utcnow(),
        attempts=OutboxMessage.attempts + 1,
        error=None,
    )


async def reschedule(
    session: AsyncSession, *, outbox_id: int, not_before: datetime, error: str
) -> None:
    """A passing failure: try again from ``not_before`` on (never given up)."""
    await _set(
        session,
        outbox_id,
        not_before=not_before,
        attempts=OutboxMessage.attempts + 1,
        error=_short(error),
    )


async def mark_failed(session: AsyncSession, *, outbox_id: int, error: str) -> None:
    await _set(
        session,
        outbox_id,
        status=OutboxStatus.failed,
        attempts=OutboxMessage.attempts + 1,
        error=_short(error),
    )


async def mark_chat_unreachable(session: AsyncSession, *, chat_id: int, error: str) -> int:
    """The recipient blocked the bot: every pending message of the chat is given up at once
    (no retry loop). Returns how many."""
    async with single_write(session):
        result = await session.exec(
            update(OutboxMessage)
            .where(col(OutboxMessage.chat_id) == chat_id)
            .where(col(OutboxMessage.status) == OutboxStatus.pending)
            .values(status=OutboxStatus.unreachable, error=_short(error))
            .execution_options(synchronize_session=False)
        )
    return int(result.rowcount or 0)


async def _set(session: AsyncSession, outbox_id: int, **values: Any) -> None:
    async with single_write(session):
        await session.exec(
            update(OutboxMessage)
            .where(col(OutboxMessage.id) == outbox_id)
            .values(**values)
            .execution_options(synchronize_session=False)
        )


@dataclass(frozen=True, slots=True)
class OutboxCounts:
    pending: int
    failed: int


async def counts(*, session: AsyncSession) -> OutboxCounts:
    """Pending (the outbox depth) and failed messages, desk-wide."""
    stmt = select(col(OutboxMessage.status), func.count()).where(
        col(OutboxMessage.status).in_([OutboxStatus.pending, OutboxStatus.failed])
    )
    async with single_write(session):
        rows = (await session.exec(stmt.group_by(OutboxMessage.status))).all()
    by_status = {status: int(number) for status, number in rows}
    return OutboxCounts(
        pending=by_status.get(OutboxStatus.pending, 0), failed=by_status.get(OutboxStatus.failed, 0)
    )


async def pending_messages(*, session: AsyncSession, chat_id: int) -> list[OutboxMessage]:
    """A chat's pending messages, oldest first."""
    stmt = (
        select(OutboxMessage)
        .where(col(OutboxMessage.chat_id) == chat_id)
        .where(col(OutboxMessage.status) == OutboxStatus.pending)
        .order_by(col(OutboxMessage.id))
    )
    async with single_write(session):
        return list(await session.exec(stmt))


async def purge(*, session: AsyncSession, older_than: datetime) -> int:
    """Delete delivered and given-up messages created before ``older_than`` (pending ones
    stay, however old)."""
    async with single_write(session):
        result = await session.exec(
            delete(OutboxMessage)
            .where(col(OutboxMessage.created_at) < older_than)
            .where(col(OutboxMessage.status) != OutboxStatus.pending)
            .execution_options(synchronize_session=False)
        )
    return int(result.rowcount or 0)


# --------------------------------------------------------------------------------------------
# The shared send budget
# --------------------------------------------------------------------------------------------

_TAKE: dict[str, Any] = {}


def _take_stmt(session: AsyncSession) -> Any:
    dialect = session.get_bind().dialect.name
    stmt = _TAKE.get(dialect)
    if stmt is None:
        insert = dialect_insert(session, _BUDGET).values(
            key=bindparam("key"), window_start=bindparam("window"), count=1
        )
        stmt = _TAKE[dialect] = insert.on_conflict_do_update(
            index_elements=["key", "window_start"],
            set_={"count": _BUDGET.c.count + 1},
            where=_BUDGET.c.count < bindparam("limit"),
        ).returning(_BUDGET.c.count)
    return stmt


async def take_budget(
    session: AsyncSession, takes: Iterable[tuple[str, int, int]]
) -> tuple[str, int] | None:
    """Take one send from each ``(key, window, limit)``, all or none, in one transaction.
    Returns None when taken, else the ``(key, window)`` that is full (nothing is taken then).

    One upsert per key (``INSERT ... ON CONFLICT DO UPDATE ... WHERE count < limit RETURNING``):
    the row lock makes concurrent instances count one after the other, with no read-modify-write
    race and no advisory lock to hold across the round trip to Telegram."""
    stmt = _take_stmt(session)
    async with single_write(session):
        for key, window, limit in takes:
            taken = (
                await session.exec(stmt, params={"key": key, "window": window, "limit": limit})
            ).first()
            if taken is None:
                await session.rollback()
                return key, window
    return None


async def purge_budget(*, session: AsyncSession, before_window: int) -> None:
    """Forget counters of windows that began before ``before_window`` (epoch seconds: a
    window is named by its start, whatever its length)."""
    async with single_write(session):
        await session.exec(
            delete(SendBudget)
            .where(col(SendBudget.window_start) < before_window)
            .execution_options(synchronize_session=False)
        )


def _short(error: str | None) -> str | None:
    return None if error is None else error[:ERROR_LIMIT]
