"""Posting to the agents' group: announcing handoffs and complaints, and posting into their
place afterwards, recovering when Telegram says no.

A handoff (or complaint) lives in a *place*: its own forum topic when the group is a forum
(``createForumTopic``), otherwise the card message that agents reply to. Every bot message
posted there is linked (``GroupMessageLink``) to its handoff/complaint, and so is the topic's
id (a topic's id is the id of its first, service message), so agents' replies route correctly
after restarts.

When Telegram says no:
- topic deleted/closed by hand ("message thread not found", TOPIC_CLOSED/TOPIC_DELETED) or
  the card gone ("message to be replied not found"): a closed topic is reopened, otherwise a new
  place is made (new topic or card) with a short card, the location is saved, and the message is
  sent again — the customer is never locked out;
- the group migrated (``ChatMigrated``): the new id is persisted, every row follows
  (``handlers.membership.follow_migration``), and the message is sent again there.

``announce_handoff`` / ``announce_complaint`` never raise: a failure to reach the agents must not
break the customer's conversation; it is logged.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from telegram import ReplyParameters
from telegram.constants import ParseMode
from telegram.error import BadRequest, ChatMigrated, TelegramError

from crm_core.models import Complaint, Customer, Handoff, HandoffStatus
from crm_core.services.agents import get_agent
from crm_core.services.complaints import set_complaint_group_location
from crm_core.services.handoffs import (
    get_handoff,
    link_group_message,
    mark_unreachable,
    set_handoff_location,
    set_shown_digest,
)
from handlers.agents.cards import (
    claim_keyboard,
    complaint_card_html,
    complaint_keyboard,
    complaint_topic_name,
    customer_name,
    digest,
    handoff_card_html,
    handoff_reference,
    handoff_topic_name,
    is_erased,
)
from handlers.core.context import DeskContext
from handlers.core.format import display_name, utf16_len
from handlers.core.membership import agent_chat_id, follow_migration
from handlers.core.outbox import Send
from handlers.core.send import Priority, plain_text, release, send_unlogged
from handlers.core.texts import split_telegram_html

log = logging.getLogger(__name__)

CAPTION_LIMIT = 1024  # Telegram's, in UTF-16 code units after entity parsing
MAX_ATTEMPTS = 4
_LOST_PLACE = (
    "message thread not found",
    "topic_closed",
    "topic_deleted",
    "topic_id_invalid",
    "message to be replied not found",
    "replied message not found",
)


@dataclass(frozen=True)
class Place:
    """Where a conversation lives in the group: a forum topic, or a card to reply to."""

    chat_id: int
    thread_id: int | None = None
    reply_to: int | None = None


Sender = Callable[[Place], Awaitable[list[int]]]


# --------------------------------------------------------------------------------------------
# Sending primitives
# --------------------------------------------------------------------------------------------


async def send_html_to(
    context: DeskContext,
    place: Place,
    html: str,
    reply_markup: Any = None,
    *,
    link: dict[str, Any] | None = None,
    defer: bool = True,
) -> list[int]:
    """Send HTML (split at 4096) into ``place``; the markup goes on the last message. Through
    the outbox: what Telegram cannot take now is queued (delivered later, linked by ``link``)
    and missing from the ids returned; ``defer=False`` when the ids are needed (a card)."""
    await release(context)
    chunks = split_telegram_html(html)
    sends = [
        Send(
            "send_message",
            {
                "chat_id": place.chat_id,
                "text": chunk,
                "parse_mode": ParseMode.HTML.value,
                "message_thread_id": place.thread_id,
                "reply_parameters": _reply(place),
                "reply_markup": reply_markup if index == len(chunks) - 1 else None,
            },
        )
        for index, chunk in enumerate(chunks)
    ]
    return await _send(context, sends, link=link, defer=defer)


async def _send(
    context: DeskContext, sends: list[Send], *, link: dict[str, Any] | None, defer: bool = True
) -> list[int]:
    return await send_unlogged(context, sends, priority=Priority.AGENTS, link=link, defer=defer)


async def copy_to(
    context: DeskContext,
    place: Place,
    *,
    from_chat_id: int,
    message_id: int,
    caption_html: str | None,
    link: dict[str, Any] | None = None,
) -> list[int]:
    """Copy a message (photo, document...) into ``place`` with an HTML caption (through the
    outbox, as :func:`send_html_to`).

    A caption over Telegram's limit (a customer's full-length caption with their name in
    front) would make Telegram refuse the copy: the media then goes without a caption and the
    whole caption follows as a message, so nothing is lost.
    """
    await release(context)
    too_long = caption_html is not None and utf16_len(plain_text(caption_html)) > CAPTION_LIMIT
    copy = Send(
        "copy_message",
        {
            "chat_id": place.chat_id,
            "from_chat_id": from_chat_id,
            "message_id": message_id,
            "caption": "" if too_long else caption_html,  # "" drops the original caption
            "parse_mode": ParseMode.HTML.value if caption_html and not too_long else None,
            "message_thread_id": place.thread_id,
            "reply_parameters": _reply(place),
        },
    )
    ids = await _send(context, [copy], link=link)
    if too_long and caption_html is not None:
        ids += await send_html_to(context, place, caption_html, link=link)
    return ids


async def send_file_to(
    context: DeskContext, place: Place, file_id: str, caption_html: str
) -> list[int]:
    """Send a stored file (a photo or a document: its id does not say which) into ``place``."""
    await release(context)
    where: dict[str, Any] = {
        "chat_id": place.chat_id,
        "caption": caption_html,
        "parse_mode": ParseMode.HTML,
        "message_thread_id": place.thread_id,
        "reply_parameters": _reply(place),
    }
    try:
        message = await context.bot.send_photo(photo=file_id, **where)
    except BadRequest as error:
        if "type" not in error.message.lower():  # "can't use file of type Document as Photo"
            raise
        message = await context.bot.send_document(document=file_id, **where)
    return [message.message_id]


def _reply(place: Place) -> ReplyParameters | None:
    if place.reply_to is None:
        return None
    return ReplyParameters(message_id=place.reply_to, allow_sending_without_reply=True)


async def is_forum(context: DeskContext, chat_id: int) -> bool:
    await release(context)
    chat = await context.bot.get_chat(chat_id)
    return bool(chat.is_forum)


def _is_lost_place(error: BadRequest) -> bool:
    message = error.message.lower()
    return any(marker in message for marker in _LOST_PLACE)


# --------------------------------------------------------------------------------------------
# Subjects: what a place belongs to
# --------------------------------------------------------------------------------------------


class Subject:
    """A handoff or a complaint, seen as something that has a place in the group."""

    handoff_id: int | None = None
    complaint_id: int | None = None

    async def place(self, context: DeskContext) -> Place | None:
        raise NotImplementedError

    async def topic_name(self, context: DeskContext) -> str:
        raise NotImplementedError

    async def short_card(self, context: DeskContext) -> tuple[str, Any]:
        raise NotImplementedError

    async def save_place(self, context: DeskContext, place: Place, card_id: int) -> None:
        raise NotImplementedError

    def link_key(self) -> dict[str, Any]:
        """What a queued post of this subject is linked to once it is sent."""
        if self.handoff_id is not None:
            return {"handoff_id": self.handoff_id}
        return {"complaint_id": self.complaint_id}

    async def link(self, context: DeskContext, chat_id: int, message_ids: list[int]) -> None:
        for message_id in message_ids:
            await link_group_message(
                session=context.session,
                chat_id=chat_id,
                message_id=message_id,
                handoff_id=self.handoff_id,
                complaint_id=self.complaint_id,
            )


class HandoffSubject(Subject):
    def __init__(self, handoff_id: int) -> None:
        self.handoff_id = handoff_id

    async def handoff(self, context: DeskContext) -> Handoff:
        assert self.handoff_id is not None
        return await get_handoff(session=context.session, handoff_id=self.handoff_id)

    async def place(self, context: DeskContext) -> Place | None:
        handoff = await self.handoff(context)
        if handoff.chat_id is None:
            return None
        if handoff.topic_id is not None:
            return Place(handoff.chat_id, thread_id=handoff.topic_id)
        return Place(handoff.chat_id, reply_to=handoff.card_message_id)

    async def reference(self, context: DeskContext, handoff: Handoff) -> str:
        complaint = (
            await context.session.get(Complaint, handoff.complaint_id)
            if handoff.complaint_id
            else None
        )
        await context.session.commit()
        return handoff_reference(handoff, complaint)

    async def topic_name(self, context: DeskContext) -> str:
        handoff = await self.handoff(context)
        agent = None
        if handoff.status == HandoffStatus.claimed and handoff.agent_id is not None:
            agent = await get_agent(session=context.session, agent_id=handoff.agent_id)
        return handoff_topic_name(
            handoff.status,
            await self.reference(context, handoff),
            await customer_name(context, handoff.customer_id),
            agent.display_name if agent else None,
        )

    async def short_card(self, context: DeskContext) -> tuple[str, Any]:
        handoff = await self.handoff(context)
        if handoff.chat_id is None:  # never announced (the group was unreachable): full card
            return await handoff_card_html(context, handoff), claim_keyboard(context, handoff)
        agent = None
        if handoff.agent_id is not None:
            agent = await get_agent(session=context.session, agent_id=handoff.agent_id)
        html = context.deps.texts.render(
            "card_handoff_short",
            context.deps.config.default_language,
            reference=await self.reference(context, handoff),
            name=await customer_name(context, handoff.customer_id),
            status=handoff.status.value,
            agent=agent.display_name if agent else None,
        )
        waiting = handoff.status == HandoffStatus.waiting
        markup = claim_keyboard(context, handoff) if waiting else None
        return html, markup

    async def save_place(self, context: DeskContext, place: Place, card_id: int) -> None:
        assert self.handoff_id is not None
        await set_handoff_location(
            session=context.session,
            handoff_id=self.handoff_id,
            chat_id=place.chat_id,
            topic_id=place.thread_id,
            card_message_id=card_id,
        )


class ComplaintSubject(Subject):
    def __init__(self, complaint_id: int) -> None:
        self.complaint_id = complaint_id

    async def complaint(self, context: DeskContext) -> Complaint:
        complaint = await context.session.get(Complaint, self.complaint_id, populate_existing=True)
        await context.session.commit()
        if complaint is None:
            raise LookupError(f"no complaint #{self.complaint_id}")
        return complaint

    async def place(self, context: DeskContext) -> Place | None:
        complaint = await self.complaint(context)
        if complaint.group_chat_id is None:
            return None
        if complaint.group_topic_id is not None:
            return Place(complaint.group_chat_id, thread_id=complaint.group_topic_id)
        return Place(complaint.group_chat_id, reply_to=complaint.group_message_id)

    async def topic_name(self, context: DeskContext) -> str:
        complaint = await self.complaint(context)
        if await is_erased(context, complaint.customer_id):
            return complaint_topic_name(complaint, None)
        return complaint_topic_name(complaint, await customer_name(context, complaint.customer_id))

    async def short_card(self, context: DeskContext) -> tuple[str, Any]:
        complaint = await self.complaint(context)
        return await complaint_card_html(context, complaint), complaint_keyboard(context, complaint)

    async def save_place(self, context: DeskContext, place: Place, card_id: int) -> None:
        assert self.complaint_id is not None
        await set_complaint_group_location(
            session=context.session,
            complaint_id=self.complaint_id,
            chat_id=place.chat_id,
            topic_id=place.thread_id,
            message_id=card_id,
        )


# --------------------------------------------------------------------------------------------
# Posting with recovery
# --------------------------------------------------------------------------------------------


async def _open_place(
    context: DeskContext, subject: Subject, card: tuple[str, Any] | None = None
) -> Place | None:
    """Make a new place for ``subject`` (topic or card), post its card there and save it."""
    chat_id = await agent_chat_id(context)
    if chat_id is None:
        return None
    html, markup = card or await subject.short_card(context)
    thread_id, name = None, None
    if await is_forum(context, chat_id):
        name = await subject.topic_name(context)
        await release(context)
        topic = await context.bot.create_forum_topic(chat_id=chat_id, name=name)
        thread_id = topic.message_thread_id
    ids = await send_html_to(
        context, Place(chat_id, thread_id=thread_id), html, markup, defer=False
    )
    place = Place(chat_id, thread_id=thread_id, reply_to=None if thread_id else ids[0])
    await subject.save_place(context, place, ids[0])
    await subject.link(context, chat_id, ([thread_id] if thread_id else []) + ids)
    if len(ids) == 1:  # a card in one message can be refreshed in place later
        await set_shown_digest(
            session=context.session, chat_id=chat_id, message_id=ids[0], digest=digest(html, markup)
        )
    if thread_id is not None:
        await set_shown_digest(
            session=context.session, chat_id=chat_id, message_id=thread_id, digest=digest(name)
        )
    return place


async def post(
    context: DeskContext,
    subject: Subject,
    sender: Sender | None,
    *,
    opening_card: tuple[str, Any] | None = None,
) -> list[int] | None:
    """Send into ``subject``'s place (making one, with ``opening_card``, if it has none) and
    link what was sent. Returns the message ids, or None when there is no agents' group.
    Telegram errors other than a lost place / migration propagate."""
    place = await subject.place(context)
    for attempt in range(MAX_ATTEMPTS):
        last = attempt == MAX_ATTEMPTS - 1
        try:
            if place is None:
                place = await _open_place(context, subject, opening_card)
                if place is None:
                    return None
                if sender is None:
                    return []
            if sender is None:
                return []
            ids = await sender(place)
            await subject.link(context, place.chat_id, ids)
            return ids
        except ChatMigrated as error:
            if last:
                raise
            old = place.chat_id if place is not None else await agent_chat_id(context)
            if old is not None:
                await follow_migration(context, old, error.new_chat_id)
            place = await subject.place(context)
        except BadRequest as error:
            if last or place is None or not _is_lost_place(error):
                raise
            log.info("place %s of %s is gone (%s); making a new one", place, subject, error)
            closed = "topic_closed" in error.message.lower()
            if closed and await set_topic_open(context, place.chat_id, place.thread_id, True):
                continue
            place = None
    raise AssertionError("unreachable")


async def set_topic_open(
    context: DeskContext, chat_id: int | None, topic_id: int | None, is_open: bool
) -> bool:
    """Reopen or close a conversation's forum topic (best effort: a plain group has none, an
    admin may have deleted it). True when Telegram did it."""
    if chat_id is None or topic_id is None:
        return False
    await release(context)
    try:
        if is_open:
            await context.bot.reopen_forum_topic(chat_id, topic_id)
        else:
            await context.bot.close_forum_topic(chat_id, topic_id)
    except TelegramError as error:
        verb = "reopen" if is_open else "close"
        log.info("could not %s topic %s in %s: %s", verb, topic_id, chat_id, error)
        return False
    return True


async def post_html(
    context: DeskContext, subject: Subject, html: str, reply_markup: Any = None
) -> list[int] | None:
    async def send(place: Place) -> list[int]:
        return await send_html_to(context, place, html, reply_markup, link=subject.link_key())

    return await post(context, subject, send)


# --------------------------------------------------------------------------------------------
# Announcements (called by the customer chat)
# --------------------------------------------------------------------------------------------


async def announce_handoff(context: DeskContext, *, handoff_id: int) -> None:
    """Post the context card of handoff ``handoff_id`` to the agents' group (its own topic in a
    forum). A handoff announced before gets a short "asked again" note instead. Never raises."""
    try:
        if await agent_chat_id(context) is None:
            log.info("handoff %s not announced: no agents' group configured", handoff_id)
            return
        subject = HandoffSubject(handoff_id)
        handoff = await subject.handoff(context)
        if handoff.status == HandoffStatus.closed:
            return
        if handoff.chat_id is not None:
            name = await customer_name(context, handoff.customer_id)
            html = context.deps.texts.render(
                "agent_asked_again", context.deps.config.default_language, name=name
            )
            await post_html(context, subject, html)
            return
        card = (await handoff_card_html(context, handoff), claim_keyboard(context, handoff))
        await post(context, subject, None, opening_card=card)
    except Exception:
        log.exception("could not announce handoff %s to the agents' group", handoff_id)
        with contextlib.suppress(Exception):
            await context.session.rollback()


async def announce_complaint(context: DeskContext, *, complaint_id: int) -> None:
    """Post complaint ``complaint_id`` with its customer's context to the agents' group (its
    own topic in a forum), with status and assign buttons. Never raises."""
    try:
        if await agent_chat_id(context) is None:
            log.info("complaint %s not announced: no agents' group configured", complaint_id)
            return
        subject = ComplaintSubject(complaint_id)
        complaint = await subject.complaint(context)
        if complaint.group_chat_id is not None:
            return  # announced already
        card = (
            await complaint_card_html(context, complaint),
            complaint_keyboard(context, complaint),
        )
        await post(context, subject, None, opening_card=card)
        await post_attachments(context, subject, complaint)
    except Exception:
        log.exception("could not announce complaint %s to the agents' group", complaint_id)
        with contextlib.suppress(Exception):
            await context.session.rollback()


async def customer_unreachable(context: DeskContext, handoff: Handoff, customer: Customer) -> None:
    """The customer blocked the bot: mark the handoff and tell the agents; no retries."""
    assert handoff.id is not None
    await mark_unreachable(session=context.session, handoff_id=handoff.id)
    html = context.deps.texts.render(
        "agent_unreachable",
        context.deps.config.default_language,
        name=display_name(customer.name, customer.id),
    )
    await post_html(context, HandoffSubject(handoff.id), html)


async def post_attachments(context: DeskContext, subject: Subject, complaint: Complaint) -> None:
    """The complaint's photos and documents follow its card into its place."""
    files = list(complaint.attachments or [])
    for number, file_id in enumerate(files, start=1):
        caption = context.deps.texts.render(
            "agent_complaint_attachment",
            context.deps.config.default_language,
            reference=complaint.reference,
            number=number,
            total=len(files),
        )

        async def send(place: Place, file_id: str = file_id, caption: str = caption) -> list[int]:
            return await send_file_to(context, place, file_id, caption)

        await post(context, subject, send)
