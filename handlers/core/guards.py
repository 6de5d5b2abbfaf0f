"""Who may run a handler, declared once on the handler (like FastAPI's ``CurrentUser``)::

    @agent_only
    async def on_queue(update: Update, context: DeskContext, agent: Agent) -> None: ...

    @supervisor_only
    async def on_stats(update: Update, context: DeskContext) -> None: ...

A refused person is told so (an alert on a button, a short reply to a message) and nothing
else happens; an update from a chat the rule does not cover (another group the bot sits in)
is ignored silently.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from telegram import Update
from telegram.constants import ChatType

from crm_core.models import Agent
from handlers.core.context import DeskContext
from handlers.core.membership import acting_agent, in_agent_chat, refuse

log = logging.getLogger(__name__)

Handler = Callable[[Update, DeskContext], Coroutine[Any, Any, None]]
AgentHandler = Callable[[Update, DeskContext, Agent], Coroutine[Any, Any, None]]


def agent_only(handler: AgentHandler) -> Handler:
    """Run ``handler`` only for a member of the agents' group, passing their Agent row."""

    @functools.wraps(handler)
    async def guarded(update: Update, context: DeskContext) -> None:
        agent = await acting_agent(update, context)
        if agent is not None:
            await handler(update, context, agent)

    return guarded


async def is_supervisor_here(update: Update, context: DeskContext) -> bool:
    """A supervisor, in a private chat or the agents' group; others are refused politely."""
    user, chat = update.effective_user, update.effective_chat
    if user is None or chat is None:
        return False
    if chat.type != ChatType.PRIVATE and await in_agent_chat(update, context) is None:
        return False  # another group the bot sits in: stay quiet
    if not context.deps.config.is_supervisor(user.id):
        log.info("refused supervisor action by %s", user.id)
        await refuse(update, context, "supervisor_refused")
        return False
    return True


def supervisor_only(handler: Handler) -> Handler:
    """Run ``handler`` only for a supervisor (``DESKBOT_SUPERVISOR_IDS``)."""

    @functools.wraps(handler)
    async def guarded(update: Update, context: DeskContext) -> None:
        if await is_supervisor_here(update, context):
            await handler(update, context)

    return guarded
