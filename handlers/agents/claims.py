"""A conversation getting its person, and ending: the card names the owner (its button becomes
a label), the topic hears it, and the customer learns someone has joined (the Claim button, an
agent's first reply, auto-assignment); a closed conversation asks the customer for a rating
(/resolve, auto-resolve)."""

from __future__ import annotations

from crm_core.models import Agent, Handoff
from handlers.agents.announce import HandoffSubject, customer_unreachable, post_html
from handlers.agents.live_cards import relabel_card
from handlers.core.context import DeskContext
from handlers.core.send import Delivery, find_recipient, tell_customer
from handlers.customer.csat import ask_for_rating


async def show_claimed(
    context: DeskContext, handoff: Handoff, agent: Agent, *, tell_customer: bool
) -> None:
    """The card now names the owner (its button becomes a label); the topic hears it, and the
    customer learns a person has joined."""
    assert handoff.id is not None
    texts, lang = context.deps.texts, context.deps.config.default_language
    await relabel_card(context, handoff, "agent_claimed_button", name=agent.display_name)
    html = texts.render("agent_claimed", lang, name=agent.display_name)
    await post_html(context, HandoffSubject(handoff.id), html)
    if tell_customer:
        await tell_customer_joined(context, handoff, agent)


async def tell_customer_joined(context: DeskContext, handoff: Handoff, agent: Agent) -> None:
    recipient = await find_recipient(context, handoff.customer_id)
    if recipient is None:
        return
    name = None
    if context.deps.config.agent_signature != "none":
        name = agent.display_name.split()[0]
    delivery = await tell_customer(
        context,
        recipient,
        "agent_joined",
        name=name,
        idempotency_key=f"handoff:{handoff.id}:joined",
        handoff_id=handoff.id,
    )
    if delivery is Delivery.BLOCKED:
        await customer_unreachable(context, handoff, recipient.customer)


async def ask_rating(context: DeskContext, closed: Handoff) -> None:
    """Tell the customer the conversation is closed and offer the rating; a customer who
    blocked the bot marks the handoff unreachable instead."""
    recipient = await find_recipient(context, closed.customer_id)
    if recipient is None:
        return
    if await ask_for_rating(context, closed, recipient) is Delivery.BLOCKED:
        await customer_unreachable(context, closed, recipient.customer)
