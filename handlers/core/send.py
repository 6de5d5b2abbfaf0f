"""Sending to Telegram: render a template, split at 4096 on clean boundaries, send as HTML,
and record what a customer received as an outbound Interaction.

- :func:`reply` answers the chat of the current update (a customer's private chat, or the
  agents' group), in that chat's language; to a customer it logs one outbound Interaction
  (key ``tg:<update_id>:out:<n>``).
- :func:`tell_customer` is how everything else reaches a customer (an agent's reply, a status
  change, a rating request): it finds the customer's private chat and language, sends, logs,
  and reports a customer who blocked the bot instead of raising.
- :func:`deliver` is the primitive both use.
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
from crm_core.services.interactions import log_interaction
from handlers.core.context import DeskContext, current_scope
from handlers.core.texts import split_telegram_html

log = logging.getLogger(__name__)

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
) -> list[Message]:
    """Send ``html`` in as many messages as needed, then log it (when ``customer_id`` is set).

    The reply markup goes on the last message, next to the text it belongs to. Telegram errors
    (Forbidden when blocked, BadRequest, RetryAfter after the rate limiter's retries) propagate:
    callers that can do better than the central error handler catch them.
    """
    await release_read_transaction(session)
    chunks = split_telegram_html(html)
    messages: list[Message] = []
    for index, chunk in enumerate(chunks):
        last = index == len(chunks) - 1
        messages.append(
            await bot.send_message(
                chat_id=chat_id,
                text=chunk,
                parse_mode=ParseMode.HTML,
                reply_markup=reply_markup if last else None,
                message_thread_id=message_thread_id,
                link_preview_options=None,
            )
        )
    if customer_id is not None and messages:
        await log_interaction(
            session=session,
            customer_id=customer_id,
            channel=Channel.telegram,
            direction=Direction.outbound,
            kind=kind,
            text=plain_text(html),
            details={
                "chat_id": chat_id,
                "message_ids": [m.message_id for m in messages],
                **(details or {}),
            },
            idempotency_key=idempotency_key,
            handoff_id=handoff_id,
            complaint_id=complaint_id,
        )
    return messages


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
    **template_ctx: Any,
) -> Delivery:
    """Send ``template`` to a customer (a :class:`Recipient`, or a customer id to look up) in
    their language, and log it on their timeline. A customer who blocked the bot is reported
    as :attr:`Delivery.BLOCKED` (no retries: the caller decides whom to tell)."""
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
        )
    except Forbidden:
        log.info("customer %s blocked the bot; %s not delivered", recipient.customer_id, template)
        return Delivery.BLOCKED
    return Delivery.SENT
