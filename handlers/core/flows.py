"""Conversation flows (a complaint being written, a rating awaiting its comment): which flow owns
a chat, and the one dispatcher that hands it the chat's next message.

A flow's state is a ``FlowState`` row keyed by ``("telegram", chat key)`` (see
``crm_core.services.flows``), never PTB's in-memory ``user_data``: a restart or a second
instance continues where the customer left off. Every save renews the flow's TTL.

The dispatcher runs in ``Group.FLOWS``, before the handoff relay and the knowledge base: when a
flow owns the chat, its step function gets the message first and returns whether it took it
(then nothing else sees the message). Which function handles which flow is one map, given by
the customer package (``handlers.customer.FLOW_STEPS``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Mapping
from datetime import timedelta
from enum import StrEnum
from typing import Any

from telegram import Update
from telegram.ext import ApplicationHandlerStop

from crm_core.clock import as_utc, utcnow
from crm_core.models import Channel, FlowState
from crm_core.services.flows import clear_flow, get_flow, save_flow
from handlers.core.context import DeskContext


class FlowName(StrEnum):
    COMPLAINT = "complaint"
    # Not a flow the chat is in: a marker (under its own key) of the last filed complaint, so
    # a second press of "Submit" names it instead of filing twice.
    COMPLAINT_FILED = "complaint_filed"
    CSAT = "csat"
    CAMPAIGN = "campaign"  # a supervisor writing a new campaign (/campaign new)


# Step function: (update, context, the chat's flow) -> True when it took the message.
MessageStep = Callable[[Update, DeskContext, FlowState], Awaitable[bool]]


def chat_key(chat_id: int, suffix: str = "") -> str:
    """The FlowState key of a chat (``suffix`` for side records like the filed marker)."""
    return f"{chat_id}{suffix}"


def update_chat_key(update: Update, suffix: str = "") -> str:
    chat = update.effective_chat
    assert chat is not None
    return chat_key(chat.id, suffix)


async def load_flow(
    update: Update, context: DeskContext, name: FlowName | None = None, *, suffix: str = ""
) -> FlowState | None:
    """The chat's flow (only if it is ``name``, when given), or None. Read once per update
    (the inbound recorder reads the chat's own flow with the inbound row)."""
    key = update_chat_key(update, suffix)
    cache = context.scope.flows
    if key in cache:
        flow = cache[key]
        if flow is not None and as_utc(flow.expires_at) <= utcnow():
            flow = None  # expired meanwhile: the next read deletes it
    else:
        flow = cache[key] = await get_flow(
            session=context.session, channel=Channel.telegram, chat_key=key
        )
    if flow is None or (name is not None and flow.flow != name):
        return None
    return flow


async def save_step(
    update: Update,
    context: DeskContext,
    name: FlowName,
    step: str,
    data: dict[str, Any],
    *,
    ttl: timedelta | None = None,
    suffix: str = "",
) -> None:
    """Store the chat's flow at ``step`` (renewing its TTL, by default ``config.flow_ttl``)."""
    key = update_chat_key(update, suffix)
    context.scope.flows[key] = await save_flow(
        session=context.session,
        channel=Channel.telegram,
        chat_key=key,
        customer_id=context.customer_id,
        flow=name,
        step=step,
        data=data,
        ttl=ttl if ttl is not None else context.deps.config.flow_ttl,
    )


async def end_flow(update: Update, context: DeskContext) -> bool:
    """Leave the chat's flow; False when there was none (another instance ended it first)."""
    key = update_chat_key(update)
    context.scope.flows[key] = None
    return await clear_flow(session=context.session, channel=Channel.telegram, chat_key=key)


def flow_dispatcher(
    steps: Mapping[str, MessageStep],
) -> Callable[[Update, DeskContext], Coroutine[Any, Any, None]]:
    """The handler that gives a message to the flow owning the chat (see the module doc)."""

    async def dispatch(update: Update, context: DeskContext) -> None:
        if context.customer is None or update.effective_chat is None:
            return
        flow = await load_flow(update, context)
        # FlowName is a StrEnum: the stored name finds its step directly.
        step = steps.get(flow.flow) if flow is not None else None
        if flow is not None and step is not None and await step(update, context, flow):
            raise ApplicationHandlerStop

    return dispatch
