"""What agents write for each other, never for the customer: notes on a handoff (``/note text``
or a message starting with ``!``) and comments in a complaint's topic. Both go on the
customer's timeline as internal."""

from __future__ import annotations

import logging
from typing import Any

from telegram import Message, ReactionTypeEmoji, Update
from telegram.error import TelegramError

from crm_core.models import ActorType, Agent, Channel, Direction, Handoff, InteractionKind
from crm_core.services.complaints import comment_complaint
from crm_core.services.interactions import log_interaction
from handlers.agents.threads import command_rest, complaint_here, handoff_for_message
from handlers.core.context import DeskContext
from handlers.core.guards import agent_only
from handlers.core.inbound import attachment_of, message_content_type
from handlers.core.membership import acting_agent
from handlers.core.send import reply

log = logging.getLogger(__name__)

NOTE_PREFIX = "!"
# The reaction that tells an agent their message was kept as internal, not sent anywhere.
KEPT_REACTION = "✍"


async def acknowledge(context: DeskContext, message: Message) -> None:
    """Mark the agent's message as kept internally: a reaction (costs no message of the group's
    budget), or a short reply where reactions are not allowed."""
    try:
        await context.bot.set_message_reaction(
            message.chat_id, message.message_id, reaction=ReactionTypeEmoji(KEPT_REACTION)
        )
    except TelegramError as error:
        log.info("could not react to note %s: %s", message.message_id, error)
        await reply(context, "agent_note_kept")


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
    file_id = attachment_of(message)
    if file_id is not None:
        details["file_ids"] = [file_id]
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
    await acknowledge(context, message)


@agent_only
async def on_note(update: Update, context: DeskContext, agent: Agent) -> None:
    """``/note text`` in a handoff's topic (or as a reply to its card)."""
    message = update.effective_message
    assert message is not None
    handoff = await handoff_for_message(context, message)
    if handoff is None:
        await reply(context, "agent_no_handoff")
        return
    note = command_rest(message)
    if not note:
        await reply(context, "agent_note_usage")
        return
    await log_note(update, context, agent, handoff, note)


async def comment_on_complaint_here(update: Update, context: DeskContext, message: Message) -> None:
    """In a complaint's topic (or a reply to its card) agents discuss the case: keep what they
    write as internal comments on the complaint, so the CRM has the whole story. Nothing reaches
    the customer from here; they hear of status changes and the notes given with them."""
    complaint = await complaint_here(context, update)
    if complaint is None:
        return  # chatter among agents elsewhere in the group
    agent = await acting_agent(update, context)
    if agent is None:
        return
    text = message.text or message.caption or f"[{message_content_type(message)}]"
    await comment_complaint(
        session=context.session,
        reference=complaint.reference,
        actor_type=ActorType.agent,
        actor_id=agent.id,
        text=text,
    )
    await acknowledge(context, message)
