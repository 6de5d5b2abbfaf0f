"""Sending to Telegram: render a template, split at 4096 on clean boundaries, send as HTML,
and record what a customer received as an outbound Interaction.

- :func:`reply` answers the chat of the current update (a customer's private chat, or the
  agents' group), in that chat's language; to a customer it logs one outbound Interaction
  (key ``tg:<update_id>:out:<n>``).
- :func:`tell_customer` is how everything else reaches a customer (an agent's reply, a status
  change, a rating request): it finds the customer's private chat and language, sends, logs,
  and reports a customer who blocked the bot instead of raising.
- :func:`deliver` is the primitive both use; it sends through the outbox
  (``handlers.core.outbox``): what Telegram cannot take now is queued and delivered later,
  after the chat's older waiting messages. :class:`Priority` (customer replies first, the
  agents' group next, campaigns last) decides who waits when the send budget is tight.
- :func:`answer_query` stops a button's spinner; :func:`drop_buttons` removes a keyboard.
"""

from __future__ import annotations

import contextlib
import enum
import html as html_lib
import logging
import re
from dataclasses import dataclass
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from telegram import Bot, Message, Update
from telegram.constants import ParseMode
from telegram.error import Forbidden, TelegramError
from telegram.ext import ExtBot

from crm_core.models import Channel, ChannelIdentity, Customer, Direction, InteractionKind
from crm_core.services.interactions import add_interaction_no_commit
from crm_core.services.outbox import OutgoingMessage
from crm_core.services.transactions import single_write
from handlers.core.context import DeskContext, current_scope
from handlers.core.outbox import (
    PendingChats,
    Priority,
    Send,
    record_rows_only,
    send_or_queue,
    write_rows,
)
from handlers.core.texts import split_telegram_html

log = logging.getLogger(__name__)

__all__ = [
    "Delivery",
    "Priority",
    "Recipient",
    "answer_query",
    "deliver",
    "drop_buttons",
    "find_recipient",
    "plain_text",
    "release",
    "release_read_transaction",
    "reply",
    "send_html",
    "tell_customer",
]

ReplyMarkup = Any  # InlineKeyboardMarkup | ReplyKeyboardMarkup | ReplyKeyboardRemove | ForceReply


def plain_text(html: str) -> str:
    """What the customer sees of ``html``: tags removed, entities decoded (for the CRM log)."""
    return html_lib.unescape(re.sub(r"<[^>]+>", "", html))


async def reply(
    context: DeskContext,
    template: str,
    /,
    *,
    chat_id: int | None = None,
    customer_id: int | None = None,
    lang: str | None = None,
    reply_markup: ReplyMarkup | None = None,
    message_thread_id: int | None = None,
    kind: InteractionKind = InteractionKind.message,
    details: dict[str, Any] | None = None,
    handoff_id: int | None = None,
    complaint_id: int | None = None,
    **template_ctx: Any,
) -> list[Message]:
    """Render ``template`` and send it; defaults come from the current update.

    ``chat_id`` defaults to the update's chat (and its forum topic), ``customer_id`` and
    ``lang`` to the identified customer's (private chats). Messages to a chat without a
    customer (the agents' group) are not logged as Interactions. Remaining keyword arguments
    are the template's variables (so templates cannot use this function's parameter names).
    """
    lang = lang or context.lang
    html = context.deps.texts.render(template, lang, **template_ctx)
    return await send_html(
        context,
        html,
        chat_id=chat_id,
        customer_id=customer_id,
        reply_markup=reply_markup,
        message_thread_id=message_thread_id,
        kind=kind,
        details={"template": template, **(details or {})},
        handoff_id=handoff_id,
        complaint_id=complaint_id,
    )


async def send_html(
    context: DeskContext,
    html: str,
    *,
    chat_id: int | None = None,
    customer_id: int | None = None,
    reply_markup: ReplyMarkup | None = None,
    message_thread_id: int | None = None,
    kind: InteractionKind = InteractionKind.message,
    details: dict[str, Any] | None = None,
    handoff_id: int | None = None,
    complaint_id: int | None = None,
    priority: Priority = Priority.CUSTOMER,
) -> list[Message]:
    """Like :func:`reply` for already-rendered HTML (e.g. a knowledge-base article)."""
    scope = current_scope()
    if chat_id is None:
        chat = scope.update.effective_chat if scope.update else None
        if chat is None:
            raise ValueError("send_html needs chat_id outside a chat update")
        chat_id = chat.id
        customer_id = customer_id if customer_id is not None else scope.customer_id
        message = scope.update.effective_message if scope.update else None
        if message_thread_id is None and message is not None and message.is_topic_message:
            message_thread_id = message.message_thread_id  # answer in the same forum topic
    return await deliver(
        context.bot,
        session=scope.session,
        chat_id=chat_id,
        html=html,
        customer_id=customer_id,
        idempotency_key=scope.next_outbound_key() if customer_id is not None else None,
        reply_markup=reply_markup,
        message_thread_id=message_thread_id,
        kind=kind,
        details=details,
        handoff_id=handoff_id,
        complaint_id=complaint_id,
        priority=priority,
        pending=context.deps.outbox,
    )


async def deliver(
    bot: Bot | ExtBot[Any],
    *,
    session: AsyncSession,
    chat_id: int,
    html: str,
    customer_id: int | None,
    idempotency_key: str | None,
    reply_markup: ReplyMarkup | None = None,
    message_thread_id: int | None = None,
    kind: InteractionKind = InteractionKind.message,
    details: dict[str, Any] | None = None,
    handoff_id: int | None = None,
    complaint_id: int | None = None,
    priority: Priority = Priority.CUSTOMER,
    pending: PendingChats | None = None,
) -> list[Message]:
    """Send ``html`` in as many messages as needed, through the outbox, then log it (when
    ``customer_id`` is set) in the same transaction as the outbox rows.

    The reply markup goes on the last message, next to the text it belongs to. A message
    that cannot go now (429 beyond the rate limiter's retries, network error, timeout, 5xx, or
    older messages of the chat still waiting) is queued and delivered later by the outbox
    sender: it is logged now, and missing from the returned messages. Forbidden (the customer
    blocked the bot) and BadRequest propagate: callers that can do better than the central
    error handler catch them. ``pending`` is the desk's :class:`PendingChats` (``deps.outbox``);
    without it the database is asked.
    """
    chunks = split_telegram_html(html)
    sends = [
        Send(
            "send_message",
            {
                "chat_id": chat_id,
                "text": chunk,
                "parse_mode": ParseMode.HTML.value,
                "reply_markup": reply_markup if index == len(chunks) - 1 else None,
                "message_thread_id": message_thread_id,
            },
        )
        for index, chunk in enumerate(chunks)
    ]

    async def record(
        sent: list[OutgoingMessage], results: list[Any], queued: list[OutgoingMessage]
    ) -> None:
        # One commit for the rows and the Interaction; idempotent inserts (fail only when the
        # database does), so no savepoint.
        async with single_write(session):
            await write_rows(session, sent, results, queued)
            if customer_id is None or not (results or queued):
                return
            queued_details = {"queued": len(queued)} if queued else {}
            await add_interaction_no_commit(
                session,
                customer_id=customer_id,
                channel=Channel.telegram,
                direction=Direction.outbound,
                kind=kind,
                text=plain_text(html),
                details={
                    "chat_id": chat_id,
                    "message_ids": [m.message_id for m in results],
                    **queued_details,
                    **(details or {}),
                },
                idempotency_key=idempotency_key,
                handoff_id=handoff_id,
                complaint_id=complaint_id,
            )

    await release_read_transaction(session)
    outcome = await send_or_queue(
        bot,
        session=session,
        pending=pending if pending is not None else PendingChats(),
        sends=sends,
        priority=priority,
        record=record,
        customer_id=customer_id,
        handoff_id=handoff_id,
    )
    return list(outcome.results)


async def release_read_transaction(session: AsyncSession) -> None:
    """End a read-only transaction before a network call.

    On SQLite every transaction begins IMMEDIATE (holds the write lock). A handler that only
    read something must not keep that lock across a round trip to Telegram, or every other
    chat's update queues behind it. Pending writes are left to their owner.
    """
    if session.in_transaction() and not (session.new or session.dirty or session.deleted):
        await session.commit()


async def release(context: DeskContext) -> None:
    """:func:`release_read_transaction` for this update's session."""
    await release_read_transaction(context.session)


async def send_file(
    context: DeskContext,
    method: str,
    *,
    priority: Priority,
    customer_id: int | None = None,
    **kwargs: Any,
) -> list[int]:
    """A document or photo (``method``: ``send_document``, ``send_photo``; its content as
    bytes in ``kwargs``) through the outbox, like every message: sent now, or queued with its
    content when Telegram cannot take it and delivered later. Returns the ids of what was
    sent now (none when it was queued)."""
    await release(context)
    return await send_unlogged(
        context, [Send(method, kwargs)], priority=priority, customer_id=customer_id
    )


async def send_unlogged(
    context: DeskContext,
    sends: list[Send],
    *,
    priority: Priority,
    customer_id: int | None = None,
    link: dict[str, Any] | None = None,
    defer: bool = True,
) -> list[int]:
    """``sends`` (one chat, in order) through the outbox, writing its rows and no timeline
    entry (the caller logs what it needs); the ids of what was sent now."""
    outcome = await send_or_queue(
        context.bot,
        session=context.session,
        pending=context.deps.outbox,
        sends=sends,
        priority=priority,
        record=record_rows_only(context.session),
        defer=defer,
        customer_id=customer_id,
        link=link,
    )
    return outcome.message_ids


# --------------------------------------------------------------------------------------------
# Buttons
# --------------------------------------------------------------------------------------------


async def answer_query(update: Update, text: str | None = None, *, alert: bool = False) -> None:
    """Stop the button's spinner (optionally with a toast, or an alert to dismiss). Never
    raises: a query answered too late is not worth failing the handler for."""
    query = update.callback_query
    if query is None:
        return
    with contextlib.suppress(TelegramError):
        await query.answer(text, show_alert=alert)


async def drop_buttons(update: Update) -> None:
    """Remove the inline keyboard of the message whose button was pressed, so it cannot be
    pressed again (best effort: the message may be too old to edit)."""
    query = update.callback_query
    if query is None or query.message is None:
        return
    try:
        await query.edit_message_reply_markup(reply_markup=None)
    except TelegramError as error:
        log.debug("could not remove buttons: %s", error)


# --------------------------------------------------------------------------------------------
# Telling a customer (outside their own update)
# --------------------------------------------------------------------------------------------


async def customer_chat_id(session: AsyncSession, customer_id: int | None) -> int | None:
    """The customer's private Telegram chat (their user id), if they have one."""
    stmt = (
        select(ChannelIdentity.external_id)
        .where(ChannelIdentity.customer_id == customer_id)
        .where(ChannelIdentity.channel == Channel.telegram)
        .order_by(col(ChannelIdentity.id).desc())
    )
    external = (await session.exec(stmt)).first()
    await session.commit()
    try:
        return int(external) if external is not None else None
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Recipient:
    """A customer we can write to: their record, private chat and language."""

    customer: Customer
    chat_id: int
    lang: str

    @property
    def customer_id(self) -> int:
        assert self.customer.id is not None
        return self.customer.id


async def find_recipient(context: DeskContext, customer_id: int | None) -> Recipient | None:
    """The customer as a recipient, or None when they have no Telegram chat (or no record)."""
    chat_id = await customer_chat_id(context.session, customer_id)
    customer = await context.session.get(Customer, customer_id) if customer_id else None
    await context.session.commit()  # read only: do not hold SQLite's write lock
    if chat_id is None or customer is None:
        return None
    lang = customer.language or context.deps.config.default_language
    return Recipient(customer=customer, chat_id=chat_id, lang=lang)


class Delivery(enum.Enum):
    SENT = "sent"
    NO_CHAT = "no_chat"  # the customer has no Telegram chat with us (e.g. imported)
    BLOCKED = "blocked"  # Telegram refused: the customer blocked the bot


async def tell_customer(
    context: DeskContext,
    to: Recipient | int | None,
    template: str,
    /,
    *,
    idempotency_key: str | None,
    reply_markup: ReplyMarkup | None = None,
    kind: InteractionKind = InteractionKind.message,
    details: dict[str, Any] | None = None,
    handoff_id: int | None = None,
    complaint_id: int | None = None,
    priority: Priority = Priority.CUSTOMER,
    **template_ctx: Any,
) -> Delivery:
    """Send ``template`` to a customer (a :class:`Recipient`, or a customer id to look up) in
    their language, and log it on their timeline. A customer who blocked the bot is reported
    as :attr:`Delivery.BLOCKED` (no retries: the caller decides whom to tell). A message the
    outbox queued (Telegram busy or unreachable for now) counts as sent: it will arrive.
    ``priority``: :attr:`Priority.CAMPAIGN` for bulk messages, which wait when the budget is
    tight."""
    recipient = to if isinstance(to, Recipient) else await find_recipient(context, to)
    if recipient is None:
        return Delivery.NO_CHAT
    html = context.deps.texts.render(template, recipient.lang, **template_ctx)
    try:
        await deliver(
            context.bot,
            session=context.session,
            chat_id=recipient.chat_id,
            html=html,
            customer_id=recipient.customer_id,
            idempotency_key=idempotency_key,
            reply_markup=reply_markup,
            kind=kind,
            details={"template": template, **(details or {})},
            handoff_id=handoff_id,
            complaint_id=complaint_id,
            priority=priority,
            pending=context.deps.outbox,
        )
    except Forbidden:
        log.info("customer %s blocked the bot; %s not delivered", recipient.customer_id, template)
        return Delivery.BLOCKED
    return Delivery.SENT
