"""Auto-assignment (``DESKBOT_AUTO_ASSIGN``): waiting customers are given to agents round robin,
oldest request first, to the available agent with the fewest open conversations and below the
cap (``DESKBOT_AGENT_CAP``). ``/away`` and ``/back`` say whether an agent takes new ones.

It runs when a customer asks for a person, when a conversation is resolved (a place frees up)
and when an agent comes back. Without it agents claim with the button, as always."""

from __future__ import annotations

import logging

from telegram import Update

from crm_core.clock import utcnow
from crm_core.errors import DomainError
from crm_core.models import Agent
from crm_core.services.agents import pick_agent, set_agent_available
from crm_core.services.handoffs import claim_handoff, list_waiting_handoffs
from handlers.agents.claims import show_claimed
from handlers.core.context import DeskContext
from handlers.core.guards import agent_only
from handlers.core.membership import agent_chat_id
from handlers.core.send import reply

log = logging.getLogger(__name__)


async def assign_waiting(context: DeskContext) -> int:
    """Give waiting customers to free agents, oldest first; returns how many were assigned."""
    config = context.deps.config
    if not config.auto_assign or await agent_chat_id(context) is None:
        return 0
    assigned = 0
    for waiting in await list_waiting_handoffs(session=context.session):
        assert waiting.id is not None
        agent = await pick_agent(session=context.session, cap=config.agent_cap, now=utcnow())
        if agent is None or agent.id is None:
            break  # everyone is busy or away: the rest keep waiting (and are reminded)
        try:
            handoff = await claim_handoff(
                session=context.session, handoff_id=waiting.id, agent_id=agent.id
            )
        except DomainError as error:  # claimed or closed meanwhile (another instance, a press)
            log.info("auto-assignment of handoff %s skipped: %s", waiting.id, error)
            continue
        log.info("handoff %s assigned to agent %s", handoff.id, agent.id)
        await show_claimed(context, handoff, agent, tell_customer=True)
        assigned += 1
    return assigned


@agent_only
async def on_away(update: Update, context: DeskContext, agent: Agent) -> None:
    assert agent.id is not None
    await set_agent_available(session=context.session, agent_id=agent.id, available=False)
    await reply(context, "agent_away", name=agent.display_name)


@agent_only
async def on_back(update: Update, context: DeskContext, agent: Agent) -> None:
    assert agent.id is not None
    await set_agent_available(session=context.session, agent_id=agent.id, available=True)
    await reply(context, "agent_back", name=agent.display_name)
    await assign_waiting(context)
