"""Sending texts to Telegram: render a template, split at 4096 on clean boundaries, send as HTML,
and record what the customer received as an outbound Interaction.

Inside a handler (the usual case)::

    await reply(context, "greeting", first_name=user.first_name, reply_markup=keyboard)

sends to the chat of the current update, in the customer's language, and logs one outbound
Interaction (key ``tg:<update_id>:out:<n>``). Outside an update (jobs, agent relays) use
:func:`deliver` with explicit ids and an ``idempotency_key`` of your choosing (or ``None``).
"""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Sequence
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession
from telegram import Bot, Message
from telegram.constants import ParseMode
from telegram.ext import ExtBot

from crm_core.models import Channel, Direction, InteractionKind
from crm_core.services.interactions import log_interaction
from handlers.deps import DeskContext, current_scope
from handlers.texts import split_telegram_html

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
    await _release_read_transaction(session)
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


async def _release_read_transaction(session: AsyncSession) -> None:
    # On SQLite every transaction begins IMMEDIATE (holds the write lock). A handler that only
    # read something must not keep that lock across a network round trip to Telegram, or
    # every other chat's update queues behind it. Pending writes are left to their owner.
    if session.in_transaction() and not (session.new or session.dirty or session.deleted):
        await session.commit()


def chunked(items: Sequence[Any], size: int) -> list[list[Any]]:
    """Rows of ``size`` (for keyboards)."""
    return [list(items[i : i + size]) for i in range(0, len(items), size)]
