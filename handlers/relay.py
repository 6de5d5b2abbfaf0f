"""The two-way relay between a customer in a handoff and the agents' group.

Customer -> agents: a private-chat handler in group -1 (after the inbound recorder, group -2,
before everyone in group 0). It does nothing when the customer has no open handoff or another
flow owns the chat (an active FlowState); otherwise it relays the message — text, photo,
document alike, prefixed with the customer's name — into the handoff's topic (or as a reply to
its card in a plain group) and stops the update there (``ApplicationHandlerStop``), so the
knowledge base does not answer what was meant for a person. The CSAT comment after a closed
handoff is taken here too (see ``handlers.csat``).

Agents -> customer: what an agent writes in the handoff's topic (or as a reply to any bot
message of the handoff in a plain group) is sent to the customer, signed with the agent's first
name (or not at all: ``agent_signature``), and logged as an ``agent_reply`` Interaction. The
first reply claims a waiting handoff. ``/note text`` and messages starting with ``!`` stay in
the group (an internal ``note`` Interaction).
"""

from __future__ import annotations

import logging
from typing import Any

from sqlmodel import select
from telegram import Message, Update
from telegram.error import Forbidden, TelegramError
from telegram.ext import ApplicationHandlerStop, BaseHandler, MessageHandler, filters

from crm_core.models import (
    Agent,
    Channel,
    Customer,
    Direction,
    GroupMessageLink,
    Handoff,
    HandoffStatus,
    Interaction,
    InteractionKind,
)
from crm_core.services.flows import get_flow
from crm_core.services.handoffs import (
    find_by_group_message,
    find_handoff_by_topic,
    get_handoff,
    get_open_handoff,
    mark_unreachable,
    record_agent_reply,
)
from crm_core.services.interactions import log_interaction
from handlers import csat
from handlers.announce import HandoffSubject, Place, copy_to, post, post_html
from handlers.basic import menu_action_for_text
from handlers.context_card import customer_chat_id
from handlers.deps import DeskContext, current_scope
from handlers.membership import agent_chat_id
from handlers.messaging import deliver, plain_text, reply

log = logging.getLogger(__name__)

RELAY_GROUP = -1
NOTE_PREFIX = "!"


# --------------------------------------------------------------------------------------------
# Customer -> agents
# --------------------------------------------------------------------------------------------


async def relay_from_customer(update: Update, context: DeskContext) -> None:
    message = update.effective_message
    customer = context.customer
    if message is None or customer is None or customer.id is None or update.edited_message:
        return
    flow = await get_flow(
        session=context.session, channel=Channel.telegram, chat_key=str(message.chat_id)
    )
    if flow is not None:
        if flow.flow == csat.FLOW:
            await csat.take_comment(update, context, flow)  # raises ApplicationHandlerStop
        return  # another flow owns the chat
    if menu_action_for_text(context.deps.texts, message.text) is not None:
        return  # a menu button press is for the bot
    if await agent_chat_id(context) is None:
        return  # no agents' group: nobody to relay to, the bot answers
    handoff = await get_open_handoff(session=context.session, customer_id=customer.id)
    if handoff is None:
        return
    try:
        await forward_to_group(context, handoff, message, customer)
    except TelegramError:
        # The group is unreachable (bot removed, Telegram down...): say so, do not pretend.
        log.exception("could not relay to the agents' group (handoff %s)", handoff.id)
        await context.session.rollback()
        await reply(context, "agent_relay_failed")
    raise ApplicationHandlerStop


async def forward_to_group(
    context: DeskContext, handoff: Handoff, message: Message, customer: Customer
) -> None:
    assert handoff.id is not None
    texts, lang = context.deps.texts, context.deps.config.default_language
    name = customer.name or f"Customer #{customer.id}"
    subject = HandoffSubject(handoff.id)
    if message.text:
        html = texts.render("agent_customer_message", lang, name=name, text=message.text)
        await post_html(context, subject, html)
        return
    caption = None
    if takes_caption(message):
        caption = texts.render(
            "agent_customer_media", lang, name=name, caption=message.caption or ""
        )

    async def send(place: Place) -> list[int]:
        return await copy_to(
            context,
            place,
            from_chat_id=message.chat_id,
            message_id=message.message_id,
            caption_html=caption,
        )

    await post(context, subject, send)


def takes_caption(message: Message) -> bool:
    """Stickers, locations, contacts... cannot carry a caption: they are copied as they are."""
    return any(
        getattr(message, kind, None)
        for kind in ("photo", "video", "document", "audio", "animation", "voice")
    )


def customer_handlers() -> list[BaseHandler[Any, Any, Any]]:
    """Registered in :data:`RELAY_GROUP`."""
    private_messages = filters.ChatType.PRIVATE & filters.UpdateType.MESSAGE
    return [
        # A shared contact is for the bot (it links the phone), not a message to the agents.
        MessageHandler(private_messages & ~filters.COMMAND & ~filters.CONTACT, relay_from_customer),
        MessageHandler(private_messages & filters.COMMAND, csat.skip_comment_on_command),
    ]


# --------------------------------------------------------------------------------------------
# Agents -> customer
# --------------------------------------------------------------------------------------------


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


def signature(context: DeskContext, agent: Agent, first_name: str | None) -> str | None:
    if context.deps.config.agent_signature == "none":
        return None
    return first_name or agent.display_name.split()[0]


async def relay_agent_message(
    update: Update, context: DeskContext, agent: Agent, handoff: Handoff
) -> None:
    """Send an agent's group message to the customer, log it, and claim if still waiting."""
    message = update.effective_message
    assert message is not None and handoff.id is not None and agent.id is not None
    if handoff.status == HandoffStatus.closed:
        await reply(context, "agent_closed_handoff")
        return
    chat_id = await customer_chat_id(context.session, handoff.customer_id)
    customer = await context.session.get(Customer, handoff.customer_id)
    await context.session.commit()
    if chat_id is None or customer is None:
        await reply(context, "agent_no_handoff")
        return
    user = update.effective_user
    name = signature(context, agent, user.first_name if user else None)
    lang = customer.language or context.deps.config.default_language
    details = {"agent_id": agent.id, "agent_name": name, "group_message_id": message.message_id}
    key = current_scope().next_outbound_key()
    if key is not None and await already_relayed(context, key):
        # Telegram delivered this update again (offset not confirmed before a restart): the
        # customer has it already.
        log.info("agent message %s already relayed; not sending again", key)
        return
    try:
        if message.text:
            text = message.text
            html = context.deps.texts.render("agent_to_customer", lang, name=name, text=text)
            await deliver(
                context.bot,
                session=context.session,
                chat_id=chat_id,
                html=html,
                customer_id=customer.id,
                idempotency_key=key,
                kind=InteractionKind.agent_reply,
                details=details,
                handoff_id=handoff.id,
                complaint_id=handoff.complaint_id,
            )
        else:
            caption = context.deps.texts.render(
                "agent_media_caption", lang, name=name, caption=message.caption or ""
            )
            shown = caption if takes_caption(message) else None
            ids = await copy_to(
                context,
                Place(chat_id),
                from_chat_id=message.chat_id,
                message_id=message.message_id,
                caption_html=shown,
            )
            await log_interaction(
                session=context.session,
                customer_id=customer.id,
                channel=Channel.telegram,
                direction=Direction.outbound,
                kind=InteractionKind.agent_reply,
                text=plain_text(caption),
                details={**details, "chat_id": chat_id, "message_ids": ids, "content": "media"},
                idempotency_key=key,
                handoff_id=handoff.id,
                complaint_id=handoff.complaint_id,
            )
    except Forbidden:
        await customer_unreachable(context, handoff, customer)
        return
    was_waiting = handoff.status == HandoffStatus.waiting
    updated = await record_agent_reply(
        session=context.session, handoff_id=handoff.id, agent_id=agent.id
    )
    if was_waiting and updated.agent_id == agent.id:
        from handlers.agent_group import show_claimed  # the card shows who took it

        await show_claimed(context, updated, agent, tell_customer=False)


async def already_relayed(context: DeskContext, key: str) -> bool:
    stmt = select(Interaction.id).where(Interaction.idempotency_key == key).limit(1)
    found = (await context.session.exec(stmt)).first() is not None
    await context.session.commit()  # read only: do not hold SQLite's write lock
    return found


async def customer_unreachable(context: DeskContext, handoff: Handoff, customer: Customer) -> None:
    """The customer blocked the bot: mark the handoff and tell the agents; no retries."""
    assert handoff.id is not None
    await mark_unreachable(session=context.session, handoff_id=handoff.id)
    html = context.deps.texts.render(
        "agent_unreachable",
        context.deps.config.default_language,
        name=customer.name or f"Customer #{customer.id}",
    )
    await post_html(context, HandoffSubject(handoff.id), html)


async def log_note(
    update: Update, context: DeskContext, agent: Agent, handoff: Handoff, text: str
) -> None:
    """An internal note: stays in the group, goes on the customer's timeline as internal."""
    message = update.effective_message
    assert message is not None
    details: dict[str, Any] = {
        "agent_id": agent.id,
        "agent_name": agent.display_name,
        "chat_id": message.chat_id,
        "message_id": message.message_id,
    }
    if message.photo:
        details["file_ids"] = [message.photo[-1].file_id]
    elif message.document is not None:
        details["file_ids"] = [message.document.file_id]
    await log_interaction(
        session=context.session,
        customer_id=handoff.customer_id,
        channel=Channel.telegram,
        direction=Direction.internal,
        kind=InteractionKind.note,
        text=text,
        details=details,
        idempotency_key=f"tg:{update.update_id}:note",
        handoff_id=handoff.id,
        complaint_id=handoff.complaint_id,
    )


__all__ = [
    "RELAY_GROUP",
    "customer_handlers",
    "handoff_for_message",
    "log_note",
    "relay_agent_message",
]
