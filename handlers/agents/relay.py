"""The two-way relay between a customer in a handoff and the agents' group.

Customer -> agents (``Group.RELAY``, after the flow dispatcher, before the conversation
handlers): nothing happens when the customer has no open handoff or a flow owns the chat;
otherwise the message — text, photo, document alike, prefixed with the customer's name — goes
into the handoff's topic (or as a reply to its card in a plain group) and the update stops
there (``ApplicationHandlerStop``), so the knowledge base does not answer what was meant for a
person.

Agents -> customer: what an agent writes in the handoff's topic (or as a reply to any bot
message of the handoff in a plain group) is sent to the customer, signed with the agent's first
name (or not at all: ``agent_signature``), and logged as an ``agent_reply`` Interaction. The
first reply claims a waiting handoff. Notes (``!text``, a photo captioned ``/note ...``) and
what is written in a complaint's topic stay in the group (``handlers.agents.notes``).
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
    Handoff,
    HandoffStatus,
    Interaction,
    InteractionKind,
)
from crm_core.services.handoffs import get_open_handoff, record_agent_reply
from crm_core.services.interactions import log_interaction
from handlers.agents.announce import (
    HandoffSubject,
    Place,
    copy_to,
    customer_unreachable,
    post,
    post_html,
)
from handlers.agents.claims import show_claimed
from handlers.agents.idle import reopen_if_recent
from handlers.agents.notes import NOTE_PREFIX, comment_on_complaint_here, log_note
from handlers.agents.threads import command_rest_of, handoff_for_message
from handlers.core.context import DeskContext, current_scope
from handlers.core.flows import load_flow
from handlers.core.format import display_name
from handlers.core.membership import acting_agent, agent_chat_id, in_agent_chat
from handlers.core.send import (
    Delivery,
    find_recipient,
    plain_text,
    reply,
    tell_customer,
)
from handlers.customer.menu import menu_action_for_text

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# Customer -> agents
# --------------------------------------------------------------------------------------------


async def relay_from_customer(update: Update, context: DeskContext) -> None:
    message = update.effective_message
    customer = context.customer
    if message is None or customer is None or customer.id is None or update.edited_message:
        return
    if await load_flow(update, context) is not None:
        return  # a flow owns the chat (it took its steps already)
    if menu_action_for_text(context.deps.texts, message.text) is not None:
        return  # a menu button press is for the bot
    if await agent_chat_id(context) is None:
        return  # no agents' group: nobody to relay to, the bot answers
    handoff = await open_handoff(context, customer.id)
    if handoff is None:
        handoff = await reopen_if_recent(context, customer)
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


async def open_handoff(context: DeskContext, customer_id: int) -> Handoff | None:
    """The customer's open handoff, as the inbound recorder read it (or read now)."""
    scope = context.scope
    if scope.open_handoff_known:
        return scope.open_handoff
    return await get_open_handoff(session=context.session, customer_id=customer_id)


async def forward_to_group(
    context: DeskContext, handoff: Handoff, message: Message, customer: Customer
) -> None:
    assert handoff.id is not None
    texts, lang = context.deps.texts, context.deps.config.default_language
    name = display_name(customer.name, customer.id)
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
            link=subject.link_key(),
        )

    await post(context, subject, send)


def takes_caption(message: Message) -> bool:
    """Stickers, locations, contacts... cannot carry a caption: they are copied as they are."""
    return any(
        getattr(message, kind, None)
        for kind in ("photo", "video", "document", "audio", "animation", "voice")
    )


async def relay_edit_from_customer(update: Update, context: DeskContext) -> None:
    """A customer in a handoff edited a message: the agents see the new wording (the CRM keeps
    both versions: each arrived as its own inbound Interaction)."""
    message = update.edited_message
    customer = context.customer
    if message is None or message.text is None or customer is None or customer.id is None:
        return
    if await agent_chat_id(context) is None:
        return
    handoff = await open_handoff(context, customer.id)
    if handoff is None or handoff.id is None:
        return
    html = context.deps.texts.render(
        "agent_customer_edited",
        context.deps.config.default_language,
        name=display_name(customer.name, customer.id),
        text=message.text,
    )
    try:
        await post_html(context, HandoffSubject(handoff.id), html)
    except TelegramError:
        log.exception("could not pass an edit on to the agents' group (handoff %s)", handoff.id)
        await context.session.rollback()
    raise ApplicationHandlerStop


def build_customer_handlers() -> list[BaseHandler[Any, Any, Any]]:
    """For ``Group.RELAY``. A shared contact is for the bot (it links the phone), not a message
    to the agents; commands are for the bot too."""
    private = filters.ChatType.PRIVATE
    private_messages = private & filters.UpdateType.MESSAGE
    return [
        MessageHandler(private_messages & ~filters.COMMAND & ~filters.CONTACT, relay_from_customer),
        MessageHandler(private & filters.UpdateType.EDITED_MESSAGE, relay_edit_from_customer),
    ]


# --------------------------------------------------------------------------------------------
# Agents -> customer
# --------------------------------------------------------------------------------------------


async def on_group_message(update: Update, context: DeskContext) -> None:
    """A message in the group: a note (``!``), or a reply to a customer (in a handoff's place),
    or a comment on a complaint (in its place)."""
    message = update.effective_message
    if message is None or await in_agent_chat(update, context) is None:
        return
    if message.from_user is None or message.from_user.is_bot:
        return
    handoff = await handoff_for_message(context, message)
    if handoff is None:
        await comment_on_complaint_here(update, context, message)
        return
    agent = await acting_agent(update, context)
    if agent is None:
        return
    # A photo captioned "!..." or "/note ..." is a note too: it must not reach the customer
    # (a caption is never a command, so /note does not catch it).
    text = message.text or message.caption or ""
    first_word = text.split(maxsplit=1)[0].split("@")[0] if text.strip() else ""
    if message.text is None and first_word == "/note":
        await log_note(update, context, agent, handoff, command_rest_of(text))
        return
    if text.startswith(NOTE_PREFIX):
        note = text[len(NOTE_PREFIX) :].strip()
        if note or message.text is None:
            await log_note(update, context, agent, handoff, note)
        return
    await relay_agent_message(update, context, agent, handoff)


def signature(context: DeskContext, agent: Agent, first_name: str | None) -> str | None:
    if context.deps.config.agent_signature == "none":
        return None
    return first_name or agent.display_name.split()[0]


async def relay_agent_message(
    update: Update,
    context: DeskContext,
    agent: Agent,
    handoff: Handoff,
    *,
    text: str | None = None,
) -> None:
    """Send an agent's group message to the customer (or ``text`` in its place, e.g. a canned
    reply), log it, and claim the handoff if it is still waiting."""
    message = update.effective_message
    assert message is not None and handoff.id is not None and agent.id is not None
    if handoff.status == HandoffStatus.closed:
        await reply(context, "agent_closed_handoff")
        return
    recipient = await find_recipient(context, handoff.customer_id)
    if recipient is None:
        await reply(context, "agent_no_handoff")
        return
    user = update.effective_user
    name = signature(context, agent, user.first_name if user else None)
    details = {
        "agent_id": agent.id,
        "agent_name": name,
        "agent_text": text or message.text or message.caption,
        "group_message_id": message.message_id,
    }
    key = current_scope().next_outbound_key()
    if key is not None and await already_relayed(context, key):
        # Telegram delivered this update again (offset not confirmed before a restart): the
        # customer has it already.
        log.info("agent message %s already relayed; not sending again", key)
        return
    if text or message.text:
        delivery = await tell_customer(
            context,
            recipient,
            "agent_to_customer",
            name=name,
            text=text or message.text,
            idempotency_key=key,
            kind=InteractionKind.agent_reply,
            details=details,
            handoff_id=handoff.id,
            complaint_id=handoff.complaint_id,
        )
    else:
        caption = context.deps.texts.render(
            "agent_media_caption", recipient.lang, name=name, caption=message.caption or ""
        )
        try:
            ids = await copy_to(
                context,
                Place(recipient.chat_id),
                from_chat_id=message.chat_id,
                message_id=message.message_id,
                caption_html=caption if takes_caption(message) else None,
            )
        except Forbidden:
            delivery = Delivery.BLOCKED
        else:
            delivery = Delivery.SENT
            await log_interaction(
                session=context.session,
                customer_id=recipient.customer_id,
                channel=Channel.telegram,
                direction=Direction.outbound,
                kind=InteractionKind.agent_reply,
                text=plain_text(caption),
                details={
                    **details,
                    "chat_id": recipient.chat_id,
                    "message_ids": ids,
                    "content": "media",
                },
                idempotency_key=key,
                handoff_id=handoff.id,
                complaint_id=handoff.complaint_id,
            )
    if delivery is Delivery.BLOCKED:
        await customer_unreachable(context, handoff, recipient.customer)
        return
    was_waiting = handoff.status == HandoffStatus.waiting
    updated = await record_agent_reply(
        session=context.session, handoff_id=handoff.id, agent_id=agent.id
    )
    if was_waiting and updated.agent_id == agent.id:
        await show_claimed(context, updated, agent, tell_customer=False)  # the card shows who


async def already_relayed(context: DeskContext, key: str) -> bool:
    stmt = select(Interaction.id).where(Interaction.idempotency_key == key).limit(1)
    found = (await context.session.exec(stmt)).first() is not None
    await context.session.commit()  # read only: do not hold SQLite's write lock
    return found
