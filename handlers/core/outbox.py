"""Sending through the outbox (``crm_core.services.outbox``): every message is a row, and a
message Telegram could not take for a passing reason is delivered later instead of lost.

- :func:`send_or_queue` makes Bot API sends for one chat in order. Each is tried at once
  (through the rate limiter, with the :class:`Priority` it is given) unless the chat still has
  older pending messages, in which case it waits behind them. A passing failure (429 beyond
  the limiter's retries, network error, timeout, 5xx) queues it and the rest; a 400 is a
  permanent failure (recorded, raised); a 403 is recorded ``unreachable`` and raised (the
  caller's existing "customer unreachable" path), never retried. What was sent is recorded by
  the caller's ``record`` step, in the transaction that logs it, so the hot path gains no
  commit.
- :func:`flush` is the sender: it delivers due pending messages, oldest of each chat first.

"Does this chat have pending messages?" is asked of :class:`PendingChats`: on SQLite (one
instance by design) this process wrote every pending row, so an in-memory set read from the
database at start is exact and costs nothing; on PostgreSQL another instance may have queued
one, so it is an index lookup (``ix_outbox_pending_chat``, pending rows only).
"""

from __future__ import annotations

import asyncio
import base64
import enum
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession
from telegram import (
    Bot,
    ForceReply,
    InlineKeyboardMarkup,
    LinkPreviewOptions,
    Message,
    MessageId,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
    ReplyParameters,
    TelegramObject,
)
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError
from telegram.ext import ExtBot

from crm_core.clock import utcnow
from crm_core.models import OutboxMessage, OutboxStatus
from crm_core.services import outbox as store
from crm_core.services.handoffs import link_group_message
from crm_core.services.outbox import OutgoingMessage
from crm_core.services.transactions import single_write

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=2)  # a sender's hold on the messages it claimed
CLAIM_BATCH = 10
MAX_BACKOFF_SECONDS = 60.0


class Priority(enum.IntEnum):
    """Who waits when the send budget is tight (lower goes first)."""

    CUSTOMER = 0  # replies and everything else a customer reads
    AGENTS = 1  # the agents' group: cards, relays, notes; supervisors
    CAMPAIGN = 2  # bulk messages to many customers


def is_passing(error: TelegramError) -> bool:
    """Errors worth trying again later: flood control, the network, Telegram's own 5xx (PTB
    raises ``NetworkError`` for those; ``BadRequest`` is one too, but permanent)."""
    if isinstance(error, RetryAfter):
        return True
    return isinstance(error, NetworkError) and not isinstance(error, BadRequest)


@dataclass(frozen=True, slots=True)
class Send:
    """One Bot API send: PTB's method name and its keyword arguments (with ``chat_id``)."""

    method: str
    kwargs: dict[str, Any]

    @property
    def chat_id(self) -> int:
        return int(self.kwargs["chat_id"])


@dataclass(slots=True)
class PendingChats:
    """Which chats have pending outbox messages (see the module docstring)."""

    exact: bool = False  # True on SQLite once loaded from the database
    chats: set[int] = field(default_factory=set)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    # Chats queued while the sender re-reads the set (so that the re-read cannot lose them).
    _recent: set[int] = field(default_factory=set)

    async def has_pending(self, session: AsyncSession, chat_id: int) -> bool:
        if self.exact:
            return chat_id in self.chats
        return await store.has_pending_no_commit(session, chat_id)

    def queued(self, chat_id: int) -> None:
        self.chats.add(chat_id)
        self._recent.add(chat_id)
        self.wake.set()

    async def reload(self, session: AsyncSession) -> None:
        """Read the set from the database (SQLite only: there it is then exact)."""
        self._recent.clear()
        stmt = select(OutboxMessage.chat_id).where(OutboxMessage.status == OutboxStatus.pending)
        chats = set((await session.exec(stmt.distinct())).all())
        await session.commit()
        self.chats = chats | self._recent
        self.exact = True


# --------------------------------------------------------------------------------------------
# Sending at once, or queueing
# --------------------------------------------------------------------------------------------


Record = Callable[[list[OutgoingMessage], list[Any], list[OutgoingMessage]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Sent:
    """What became of a series of sends: the results Telegram returned (``Message`` or
    ``MessageId``) for those sent at once; ``queued`` for those left to the sender."""

    results: list[Any]
    queued: int

    @property
    def message_ids(self) -> list[int]:
        return [result.message_id for result in self.results]


async def send_or_queue(
    bot: Bot | ExtBot[Any],
    *,
    session: AsyncSession,
    pending: PendingChats,
    sends: Sequence[Send],
    priority: Priority,
    record: Record,
    defer: bool = True,
    customer_id: int | None = None,
    handoff_id: int | None = None,
    link: dict[str, Any] | None = None,
) -> Sent:
    """Make ``sends`` (one chat, in order), queueing what cannot go now (see the module
    docstring). ``record(sent, results, queued)`` runs once at the end, in one transaction
    that it commits, to write the rows (``store.add_sent_no_commit`` /
    ``store.add_pending_no_commit``) with whatever the caller logs. ``defer=False``: the
    caller needs the sent ids now (a card it saves): nothing waits, passing errors raise."""
    outgoing = [
        OutgoingMessage(
            chat_id=send.chat_id,
            method=send.method,
            payload=to_json(send.kwargs),
            priority=int(priority),
            thread_id=send.kwargs.get("message_thread_id"),
            customer_id=customer_id,
            handoff_id=handoff_id,
            link=link,
        )
        for send in sends
    ]
    results: list[Any] = []
    first_queued = len(sends)
    if defer and sends and await pending.has_pending(session, sends[0].chat_id):
        first_queued = 0
    await _end_read(session)
    for index in range(first_queued):
        try:
            results.append(await _call(bot, sends[index], priority))
        except TelegramError as error:
            if defer and is_passing(error):
                log.warning("send to %s queued for later: %s", sends[index].chat_id, error)
                first_queued = index
                delay = timedelta(seconds=retry_delay(0, 0, error))
                outgoing[index] = replace(
                    outgoing[index], not_before=utcnow() + delay, error=str(error)
                )
                break
            await _record_refusal(session, outgoing[index], error)
            raise
    queued = outgoing[first_queued:]
    await record(outgoing[:first_queued], results, queued)
    if queued:
        pending.queued(queued[0].chat_id)
    return Sent(results=results, queued=len(queued))


async def _end_read(session: AsyncSession) -> None:
    """No transaction (SQLite: no write lock) across a round trip to Telegram."""
    if session.in_transaction() and not (session.new or session.dirty or session.deleted):
        await session.commit()


async def _call(bot: Bot | ExtBot[Any], send: Send, priority: Priority) -> Any:
    method = getattr(bot, send.method)
    if isinstance(bot, ExtBot) and bot.rate_limiter is not None:
        return await method(**send.kwargs, rate_limit_args=int(priority))
    return await method(**send.kwargs)


async def _record_refusal(
    session: AsyncSession, message: OutgoingMessage, error: Exception
) -> None:
    """A 400 is kept as failed (logged, not retried), a 403 as unreachable."""
    status = OutboxStatus.unreachable if isinstance(error, Forbidden) else OutboxStatus.failed
    if status is OutboxStatus.failed:
        log.warning("Telegram refused a message to %s for good: %s", message.chat_id, error)
    try:
        await store.add_finished(session, message, status=status, error=str(error))
    except Exception:  # the refusal itself is what the caller must hear of
        log.exception("could not record a refused message to %s", message.chat_id)


def record_rows_only(session: AsyncSession) -> Record:
    """A ``record`` step that writes the outbox rows and nothing else (one commit)."""

    async def record(
        sent: list[OutgoingMessage], results: list[Any], queued: list[OutgoingMessage]
    ) -> None:
        async with single_write(session):
            await write_rows(session, sent, results, queued)

    return record


async def write_rows(
    session: AsyncSession,
    sent: list[OutgoingMessage],
    results: list[Any],
    queued: list[OutgoingMessage],
) -> None:
    """The outbox rows of one :func:`send_or_queue`, in the caller's transaction."""
    await store.add_sent_no_commit(session, sent, [result.message_id for result in results])
    if queued:
        await store.add_pending_no_commit(session, queued)


# --------------------------------------------------------------------------------------------
# Stored Bot API arguments
# --------------------------------------------------------------------------------------------

_TYPES: dict[str, type[TelegramObject]] = {
    cls.__name__: cls
    for cls in (
        InlineKeyboardMarkup,
        ReplyKeyboardMarkup,
        ReplyKeyboardRemove,
        ForceReply,
        ReplyParameters,
        LinkPreviewOptions,
    )
}
_TYPE_KEY = "_tg"
_BYTES_KEY = "_bytes"  # a file sent as its content (a document, a photo): base64


def to_json(kwargs: dict[str, Any]) -> dict[str, Any]:
    """PTB keyword arguments as JSON (Telegram objects as their dicts, tagged with their type;
    a file's bytes as base64, so a document waits in the outbox like a message)."""
    stored: dict[str, Any] = {}
    for name, value in kwargs.items():
        if value is None:
            continue
        if isinstance(value, TelegramObject):
            stored[name] = {_TYPE_KEY: type(value).__name__, **value.to_dict()}
        elif isinstance(value, bytes | bytearray):
            stored[name] = {_BYTES_KEY: base64.b64encode(value).decode("ascii")}
        else:
            stored[name] = value
    return stored


def from_json(payload: dict[str, Any], bot: Bot | ExtBot[Any]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for name, value in payload.items():
        if isinstance(value, dict) and _TYPE_KEY in value:
            data = dict(value)
            cls = _TYPES[data.pop(_TYPE_KEY)]
            kwargs[name] = cls.de_json(data, bot)
        elif isinstance(value, dict) and set(value) == {_BYTES_KEY}:
            kwargs[name] = base64.b64decode(value[_BYTES_KEY])
        else:
            kwargs[name] = value
    return kwargs


# --------------------------------------------------------------------------------------------
# The sender
# --------------------------------------------------------------------------------------------

Unreachable = Callable[[OutboxMessage], Awaitable[None]]


async def flush(
    bot: Bot | ExtBot[Any],
    *,
    session: AsyncSession,
    pending: PendingChats,
    retry_seconds: float,
    on_unreachable: Unreachable | None = None,
) -> int:
    """Deliver the due pending messages (the head of each chat), once. Returns how many were
    tried; the caller calls again while it is not 0."""
    sqlite = session.get_bind().dialect.name == "sqlite"
    if sqlite and not pending.exact:
        await pending.reload(session)
    rows = await store.claim_due(session, lease=LEASE, limit=CLAIM_BATCH)
    for row in rows:
        await _deliver_row(bot, session, row, retry_seconds, on_unreachable)
    if sqlite and rows:
        await pending.reload(session)  # chats whose queue emptied can send at once again
    return len(rows)


async def _deliver_row(
    bot: Bot | ExtBot[Any],
    session: AsyncSession,
    row: OutboxMessage,
    retry_seconds: float,
    on_unreachable: Unreachable | None,
) -> None:
    assert row.id is not None
    try:
        send = Send(row.method, from_json(row.payload, bot))
    except Exception as error:  # a row this code cannot read would be claimed forever
        log.exception("queued message %s cannot be read; kept as failed", row.id)
        await store.mark_failed(session=session, outbox_id=row.id, error=repr(error))
        return
    try:
        result = await _call(bot, send, Priority(row.priority))
    except Forbidden as error:
        given_up = await store.mark_chat_unreachable(
            session=session, chat_id=row.chat_id, error=str(error)
        )
        log.info("chat %s blocked the bot: %d queued message(s) given up", row.chat_id, given_up)
        if on_unreachable is not None:
            await on_unreachable(row)
    except TelegramError as error:
        if not is_passing(error):  # 400 and the like: Telegram will not take it, ever
            log.warning("queued message %s to %s refused for good: %s", row.id, row.chat_id, error)
            await store.mark_failed(session=session, outbox_id=row.id, error=str(error))
            return
        delay = retry_delay(row.attempts, retry_seconds, error)
        log.info("queued message %s to %s: %s; again in %.0f s", row.id, row.chat_id, error, delay)
        await store.reschedule(
            session=session,
            outbox_id=row.id,
            not_before=utcnow() + timedelta(seconds=delay),
            error=str(error),
        )
    else:
        ids = [result.message_id] if isinstance(result, Message | MessageId) else []
        await store.mark_sent(session=session, outbox_id=row.id, message_ids=ids)
        await _link(session, row, ids)


def retry_delay(attempts: int, base_seconds: float, error: TelegramError) -> float:
    """Backoff doubling from ``base_seconds`` up to a minute; never sooner than Telegram's
    ``retry_after``."""
    delay = min(base_seconds * 2**attempts, MAX_BACKOFF_SECONDS)
    if isinstance(error, RetryAfter):
        delay = max(delay, retry_after_seconds(error))
    return delay


def retry_after_seconds(error: RetryAfter) -> float:
    """Telegram's ``retry_after`` in seconds (PTB's public attribute is changing type: read
    the timedelta it keeps)."""
    value = getattr(error, "_retry_after", None)
    if isinstance(value, timedelta):
        return value.total_seconds()
    public = error.retry_after
    return public.total_seconds() if isinstance(public, timedelta) else float(public)


async def _link(session: AsyncSession, row: OutboxMessage, ids: list[int]) -> None:
    """A late group post still belongs to its conversation (agents reply to it)."""
    handoff_id, complaint_id = row.link.get("handoff_id"), row.link.get("complaint_id")
    if handoff_id is None and complaint_id is None:
        return
    for message_id in ids:
        await link_group_message(
            session=session,
            chat_id=row.chat_id,
            message_id=message_id,
            handoff_id=handoff_id,
            complaint_id=complaint_id,
        )
