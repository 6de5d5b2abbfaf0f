"""Conversations that have gone quiet: closed automatically after ``DESKBOT_AUTO_RESOLVE_HOURS``
without a message (the customer is told and asked for a rating, as after /resolve), and reopened
when the customer writes within ``DESKBOT_REOPEN_HOURS`` of a close."""

from __future__ import annotations

import logging
from datetime import timedelta

from crm_core.errors import DomainError
from crm_core.models import Customer, Handoff
from crm_core.services.handoffs import (
    close_handoff,
    idle_handoffs,
    recently_closed_handoff,
    reopen_handoff,
)
from handlers.agents.announce import HandoffSubject, post_html, set_topic_open
from handlers.agents.claims import ask_rating
from handlers.agents.live_cards import HANDOFF, card_changed, relabel_card
from handlers.core.context import DeskContext
from handlers.core.format import display_name, format_hours
from handlers.core.membership import agent_chat_id

log = logging.getLogger(__name__)


async def sweep_idle_handoffs(context: DeskContext) -> None:
    """Sweeper: close the conversations nobody has written in for the configured time."""
    hours = context.deps.config.auto_resolve_hours
    if hours <= 0:
        return
    for handoff in await idle_handoffs(session=context.session, idle_for=timedelta(hours=hours)):
        assert handoff.id is not None
        try:
            await auto_resolve(context, handoff, hours)
        except Exception:
            log.exception("could not close idle handoff %s", handoff.id)
            await context.session.rollback()


async def auto_resolve(context: DeskContext, handoff: Handoff, hours: float) -> None:
    assert handoff.id is not None
    label = format_hours(hours)
    try:
        closed = await close_handoff(
            session=context.session,
            handoff_id=handoff.id,
            summary=f"closed after {label} without activity",
        )
    except DomainError:  # closed meanwhile (another instance, an agent)
        return
    lang = context.deps.config.default_language
    html = context.deps.texts.render("agent_auto_resolved", lang, hours=label)
    await post_html(context, HandoffSubject(handoff.id), html)
    await relabel_card(context, closed, "agent_auto_resolved_button", hours=label)
    await set_topic_open(context, closed.chat_id, closed.topic_id, False)
    await ask_rating(context, closed)


async def reopen_if_recent(context: DeskContext, customer: Customer) -> Handoff | None:
    """The customer writes soon after their conversation closed: reopen it (its topic, its
    agent) and return it, so the message goes there; None otherwise."""
    hours = context.deps.config.reopen_hours
    if hours <= 0 or customer.id is None or await agent_chat_id(context) is None:
        return None
    recent = await recently_closed_handoff(
        session=context.session, customer_id=customer.id, within=timedelta(hours=hours)
    )
    if recent is None or recent.id is None:
        return None
    try:
        handoff = await reopen_handoff(session=context.session, handoff_id=recent.id)
    except DomainError:
        return None
    await set_topic_open(context, handoff.chat_id, handoff.topic_id, True)
    await card_changed(context, HANDOFF, recent.id)  # "Resolved by Sam" no more: Sam is on it
    html = context.deps.texts.render(
        "agent_conversation_reopened",
        context.deps.config.default_language,
        name=display_name(customer.name, customer.id),
    )
    await post_html(context, HandoffSubject(recent.id), html)
    return handoff
