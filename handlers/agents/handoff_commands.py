"""What agents do with a conversation (a handoff): claim it (the ``✋ Claim`` button on its
card) and ``/resolve [summary]`` it. Talking to the customer is ``handlers.agents.relay``.

- Claim: the first agent owns the handoff; later presses are told who has it (an alert). The
  card then names the owner, the topic hears it, and the customer learns a person has joined.
- /resolve: close the handoff (and its topic) and ask the customer for a rating.
"""

from __future__ import annotations

import logging

from telegram import Update
from telegram.error import TelegramError

from crm_core.errors import DomainError
from crm_core.models import Agent, HandoffStatus
from crm_core.services.handoffs import claim_handoff, close_handoff, get_handoff
from handlers.agents.announce import (
    HandoffSubject,
    post_html,
    set_topic_open,
)
from handlers.agents.assignment import assign_waiting
from handlers.agents.cards import claimed_markup
from handlers.agents.claims import ask_rating, show_claimed
from handlers.agents.live_cards import relabel_card
from handlers.agents.threads import command_rest, handoff_for_message
from handlers.core.callbacks import CallbackDataError, parse
from handlers.core.context import DeskContext
from handlers.core.guards import agent_only
from handlers.core.send import answer_query, reply

log = logging.getLogger(__name__)


@agent_only
async def on_claim(update: Update, context: DeskContext, agent: Agent) -> None:
    query = update.callback_query
    assert query is not None and agent.id is not None
    try:
        handoff_id = parse(query.data).int_arg(0)
        before = await get_handoff(session=context.session, handoff_id=handoff_id)
        # Read now: the claim below refreshes this very object.
        was_claimed = before.status == HandoffStatus.claimed
        handoff = await claim_handoff(
            session=context.session, handoff_id=handoff_id, agent_id=agent.id
        )
    except (DomainError, CallbackDataError) as error:
        text = str(error) if isinstance(error, DomainError) else "This button is out of date."
        await answer_query(update, text, alert=True)
        return
    if was_claimed:  # pressed again by its owner: nothing new
        text = context.deps.texts.render_plain("agent_claimed_already", context.lang)
        await answer_query(update, text)
        return
    await answer_query(update)
    await show_claimed(context, handoff, agent, tell_customer=True)
    # A reminder's button was pressed: it shows the owner too.
    pressed = query.message
    if pressed is not None and pressed.message_id != handoff.card_message_id:
        try:
            await query.edit_message_reply_markup(reply_markup=claimed_markup(context, agent))
        except TelegramError as error:  # a stale reminder is not worth failing the claim for
            log.info("could not relabel the reminder of handoff %s: %s", handoff.id, error)


@agent_only
async def on_resolve(update: Update, context: DeskContext, agent: Agent) -> None:
    message = update.effective_message
    assert message is not None and agent.id is not None
    handoff = await handoff_for_message(context, message)
    if handoff is None or handoff.id is None:
        await reply(context, "agent_no_handoff")
        return
    summary = command_rest(message) or None
    closed = await close_handoff(
        session=context.session, handoff_id=handoff.id, agent_id=agent.id, summary=summary
    )
    html = context.deps.texts.render(
        "agent_resolved",
        context.deps.config.default_language,
        agent=agent.display_name,
        summary=closed.summary,
    )
    await post_html(context, HandoffSubject(handoff.id), html)
    await relabel_card(context, closed, "agent_resolved_button", name=agent.display_name)
    await set_topic_open(context, closed.chat_id, closed.topic_id, False)
    await ask_rating(context, closed)
    await assign_waiting(context)  # a place is free: the next waiting customer may get it
