"""/human: ask for a person. Opens a Handoff (one per customer at a time) and announces it to
the agents' group; while it is open, the agents' side relays the customer's messages. The
customer is told their place in line and the typical wait, and told again when nobody has
answered by the reminder (``handlers.agents.reminders``): nobody waits in silence."""

from __future__ import annotations

import logging
from typing import Any

from telegram import Update
from telegram.error import TelegramError
from telegram.ext import BaseHandler, CommandHandler, MessageHandler, filters

from crm_core.clock import utcnow
from crm_core.models import HandoffStatus
from crm_core.services.handoffs import (
    close_handoff,
    estimate_wait,
    get_open_handoff,
    open_handoff,
)
from handlers.agents.announce import HandoffSubject, announce_handoff, post_html, set_topic_open
from handlers.agents.assignment import assign_waiting
from handlers.agents.live_cards import relabel_card
from handlers.core.callbacks import MenuAction
from handlers.core.config import DeskConfig
from handlers.core.context import DeskContext
from handlers.core.format import format_wait, format_when
from handlers.core.membership import agent_chat_id
from handlers.core.send import reply
from handlers.core.texts import Texts
from handlers.customer.menu import complaint_offer_keyboard, menu_button_filter

log = logging.getLogger(__name__)


async def request_human(update: Update, context: DeskContext) -> None:
    customer_id = context.customer_id
    assert customer_id is not None
    opened = await open_handoff(
        session=context.session,
        customer_id=customer_id,
        reminder_after=context.deps.config.handoff_reminder_delay,
    )
    handoff_id = opened.handoff.id
    assert handoff_id is not None
    if not opened.created:
        await reply(context, "handoff_already_open", handoff_id=handoff_id)
        return
    if await agent_chat_id(context) is None:
        # No agents' group is configured: promising a reply would be a lie. The request stays
        # recorded (and is announced in full once a group is set up and the customer writes).
        await reply(context, "handoff_no_agents", reply_markup=complaint_offer_keyboard(context))
        return
    wait = await estimate_wait(session=context.session, handoff_id=handoff_id)
    typical = format_wait(wait.typical_wait) if wait.typical_wait else None
    config, now = context.deps.config, utcnow()
    opens = None if config.hours.is_open(now) else config.hours.next_open(now)
    await reply(
        context,
        "handoff_opened",
        handoff_id=handoff_id,
        position=wait.position,
        typical=typical,
        opens=format_when(opens, config.zone) if opens else None,
    )
    await announce_handoff(context, handoff_id=handoff_id)
    await assign_waiting(context)


async def withdraw_request(context: DeskContext) -> bool:
    """/cancel with no flow in progress (``handlers.customer.cancel``): withdraw a request for
    a person that nobody has taken yet (and tell the agents). False when there is no request
    to withdraw."""
    customer_id = context.customer_id
    if customer_id is None:
        return False
    handoff = await get_open_handoff(session=context.session, customer_id=customer_id)
    if handoff is None or handoff.id is None:
        return False
    if handoff.status != HandoffStatus.waiting:
        await reply(context, "handoff_cancel_claimed")  # a person is already on it
        return True
    closed = await close_handoff(
        session=context.session, handoff_id=handoff.id, summary="withdrawn by the customer"
    )
    await reply(context, "handoff_withdrawn")
    if closed.chat_id is not None:  # it was announced: let the agents know
        html = context.deps.texts.render("agent_handoff_withdrawn", None)
        try:
            await post_html(context, HandoffSubject(handoff.id), html)
        except TelegramError as error:
            log.warning("could not tell the agents of withdrawn handoff %s: %s", handoff.id, error)
        # Nothing left to claim: the card says so and the topic closes.
        await relabel_card(context, closed, "agent_withdrawn_button")
        await set_topic_open(context, closed.chat_id, closed.topic_id, False)
    return True


def build_handlers(config: DeskConfig, texts: Texts) -> list[BaseHandler[Any, Any, Any]]:
    # New messages only: editing an old "/human" must not ask again.
    private = filters.ChatType.PRIVATE & filters.UpdateType.MESSAGE
    return [
        CommandHandler("human", request_human, filters=private),
        MessageHandler(private & menu_button_filter(texts, MenuAction.HUMAN), request_human),
    ]
