"""Which conversation a message in the agents' group belongs to.

In a forum, a handoff or complaint has its own topic; in a plain group, agents reply to one of
the bot's messages about it (each is linked, ``GroupMessageLink``). Either way these lookups
find the handoff or complaint, so replies route correctly after restarts.
"""

from __future__ import annotations

from telegram import Message, Update

from crm_core.models import Complaint, GroupMessageLink, Handoff
from crm_core.services.handoffs import find_by_group_message, find_handoff_by_topic, get_handoff
from handlers.agents.announce import Place
from handlers.core.context import DeskContext


async def linked(context: DeskContext, message: Message) -> GroupMessageLink | None:
    """The link of the bot message this message answers (plain groups)."""
    replied = message.reply_to_message
    if replied is None:
        return None
    return await find_by_group_message(
        session=context.session, chat_id=message.chat_id, message_id=replied.message_id
    )


async def handoff_for_message(context: DeskContext, message: Message) -> Handoff | None:
    """The handoff an agent's group message belongs to: its forum topic, else the bot message
    it replies to. Closed handoffs are returned too (the caller says so)."""
    if message.is_topic_message and message.message_thread_id is not None:
        live = await find_handoff_by_topic(
            session=context.session, chat_id=message.chat_id, topic_id=message.message_thread_id
        )
        if live is not None:
            return live
        link = await find_by_group_message(
            session=context.session, chat_id=message.chat_id, message_id=message.message_thread_id
        )
        if link is not None and link.handoff_id is not None:
            return await get_handoff(session=context.session, handoff_id=link.handoff_id)
    link = await linked(context, message)
    if link is not None and link.handoff_id is not None:
        return await get_handoff(session=context.session, handoff_id=link.handoff_id)
    return None


async def complaint_here(context: DeskContext, update: Update) -> Complaint | None:
    """The complaint whose topic (or bot message) this message is in, if any."""
    message = update.effective_message
    if message is None:
        return None
    candidates = []
    if message.is_topic_message and message.message_thread_id is not None:
        candidates.append(message.message_thread_id)
    if message.reply_to_message is not None:
        candidates.append(message.reply_to_message.message_id)
    for message_id in candidates:
        link = await find_by_group_message(
            session=context.session, chat_id=message.chat_id, message_id=message_id
        )
        complaint_id = link.complaint_id if link else None
        if link is not None and complaint_id is None and link.handoff_id is not None:
            handoff = await get_handoff(session=context.session, handoff_id=link.handoff_id)
            complaint_id = handoff.complaint_id
        if complaint_id is not None:
            complaint = await context.session.get(Complaint, complaint_id)
            await context.session.commit()
            return complaint
    return None


def here(update: Update) -> Place:
    """Where this group message was written (its forum topic, if any): for answers."""
    message = update.effective_message
    assert message is not None
    thread = message.message_thread_id if message.is_topic_message else None
    return Place(message.chat_id, thread_id=thread)


def command_rest(message: Message) -> str:
    """What follows the command, as typed (line breaks kept, unlike ``context.args``)."""
    return command_rest_of(message.text or "")


def command_rest_of(text: str) -> str:
    parts = text.split(maxsplit=1)
    return parts[1].strip() if len(parts) > 1 else ""
