"""Who may act as an agent, and which chat is the agents' group (the guards in
``handlers.core.guards`` are built on this).

- The agents' group is ``DESKBOT_AGENT_CHAT_ID`` unless Telegram migrated it to a supergroup:
  the new id is then kept in app state (key ``agent_chat_id``) and read first, so every
  instance and every restart follows the migration. The stored id applies only while the
  configured id is the one it migrated from (an operator who configures another group wins).
- Agents are the group's members. What Telegram says of a person's membership is kept on their
  ``Agent`` row (``in_agent_group``), shared by every instance: a ``chat_member`` update (an
  admin removed, banned, restricted or added someone) applies at once, everywhere; otherwise
  every agent action asks ``getChatMember`` again once the last answer is older than
  ``membership_cache_seconds`` (a few seconds: every agent action reveals customer data or
  changes a conversation). Anyone else gets no agent powers.
- Each acting member gets an ``Agent`` row (``ensure_agent``); ``supervisor_ids`` are
  supervisors.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from telegram import ChatMember, Update, User
from telegram.constants import ChatMemberStatus
from telegram.error import TelegramError

from crm_core.clock import as_utc, utcnow
from crm_core.models import Agent, AgentRole
from crm_core.services.agents import (
    ensure_agent,
    forget_membership_checks,
    get_agent_by_telegram,
    record_membership,
)
from crm_core.services.app_state import get_state, set_state
from crm_core.services.handoffs import move_handoff_chat
from handlers.core.context import DeskContext
from handlers.core.send import answer_query, reply

log = logging.getLogger(__name__)

AGENT_CHAT_STATE_KEY = "agent_chat_id"
AGENT_CHAT_CACHE_SECONDS = 30.0
_AGENT_CHAT_CACHE_KEY = "agent_chat_id_cache"
_MEMBER_STATUSES = {ChatMemberStatus.OWNER, ChatMemberStatus.ADMINISTRATOR, ChatMemberStatus.MEMBER}


async def agent_chat_id(context: DeskContext) -> int | None:
    """The agents' group as it is now (after any migration), or None when not configured."""
    configured = context.deps.config.agent_chat_id
    if configured is None:
        return None
    # Read per message by the relay: kept for a short while per process (a migration this
    # instance follows updates it at once; one another instance followed shows up here
    # within AGENT_CHAT_CACHE_SECONDS).
    cached = context.application.bot_data.get(_AGENT_CHAT_CACHE_KEY)
    if cached is not None and cached[1] > time.monotonic():
        return int(cached[0])
    state = await get_state(session=context.session, key=AGENT_CHAT_STATE_KEY)
    chat_id = configured
    if state and state.get("configured") == configured and isinstance(state.get("chat_id"), int):
        chat_id = int(state["chat_id"])
    _remember_agent_chat(context, chat_id)
    return chat_id


def _remember_agent_chat(context: DeskContext, chat_id: int) -> None:
    expires = time.monotonic() + AGENT_CHAT_CACHE_SECONDS
    context.application.bot_data[_AGENT_CHAT_CACHE_KEY] = (chat_id, expires)


async def follow_migration(context: DeskContext, old_chat_id: int, new_chat_id: int) -> None:
    """Telegram moved the group: remember the new id and move every handoff/complaint/link."""
    configured = context.deps.config.agent_chat_id
    if old_chat_id == new_chat_id or configured is None:
        return
    await set_state(
        session=context.session,
        key=AGENT_CHAT_STATE_KEY,
        value={"configured": configured, "chat_id": new_chat_id, "migrated_from": old_chat_id},
    )
    _remember_agent_chat(context, new_chat_id)
    moved = await move_handoff_chat(
        session=context.session, old_chat_id=old_chat_id, new_chat_id=new_chat_id
    )
    await forget_membership_checks(session=context.session)
    log.warning(
        "agents' group migrated from %s to %s; %s rows follow", old_chat_id, new_chat_id, moved
    )


def counts_as_member(member: ChatMember) -> bool:
    status = member.status
    return status in _MEMBER_STATUSES or (
        status == ChatMemberStatus.RESTRICTED and bool(getattr(member, "is_member", False))
    )


async def is_group_member(context: DeskContext, chat_id: int, user: User) -> bool:
    """Is ``user`` a member of the group now? The stored answer while it is fresh, else
    ``getChatMember`` (and the answer is stored for every instance)."""
    session = context.session
    known = await get_agent_by_telegram(session=session, telegram_user_id=user.id)
    await session.commit()  # read only: do not hold SQLite's write lock across the call below
    fresh_for = timedelta(seconds=context.deps.config.membership_cache_seconds)
    checked = known.membership_checked_at if known is not None else None
    if known is not None and checked is not None and utcnow() - as_utc(checked) < fresh_for:
        return known.in_agent_group
    try:
        member = await context.bot.get_chat_member(chat_id, user.id)
    except TelegramError as error:
        log.info("membership of %s in %s unknown: %s", user.id, chat_id, error)
        return False
    is_member = counts_as_member(member)
    await record_membership(
        session=session,
        telegram_user_id=user.id,
        display_name=user.full_name or str(user.id),
        is_member=is_member,
        checked_at=utcnow(),
    )
    return is_member


async def on_member_change(update: Update, context: DeskContext) -> None:
    """Telegram says someone joined, left, was removed, restricted or promoted in the agents'
    group: their powers follow at once, on every instance."""
    change = update.chat_member
    if change is None or await in_agent_chat(update, context) is None:
        return
    user = change.new_chat_member.user
    if user.is_bot:
        return
    is_member = counts_as_member(change.new_chat_member)
    await record_membership(
        session=context.session,
        telegram_user_id=user.id,
        display_name=user.full_name or str(user.id),
        is_member=is_member,
        checked_at=utcnow(),
    )
    log.info("agents' group: %s is %s", user.id, "a member" if is_member else "no longer a member")


async def in_agent_chat(update: Update, context: DeskContext) -> int | None:
    """The agents' group id when this update comes from it, else None."""
    chat = update.effective_chat
    if chat is None:
        return None
    group_id = await agent_chat_id(context)
    return group_id if group_id is not None and chat.id == group_id else None


async def acting_agent(update: Update, context: DeskContext) -> Agent | None:
    """The Agent behind this group update, or None (after telling a non-member no).

    Updates from other chats return None silently: the bot may sit in other groups.
    """
    user = update.effective_user
    group_id = await in_agent_chat(update, context)
    if group_id is None or user is None or user.is_bot:
        return None
    if not await is_group_member(context, group_id, user):
        log.info("refused agent action by non-member %s", user.id)
        await refuse(update, context, "agent_refused")
        return None
    config = context.deps.config
    role = AgentRole.supervisor if config.is_supervisor(user.id) else AgentRole.agent
    agent = await ensure_agent(
        session=context.session,
        telegram_user_id=user.id,
        display_name=user.full_name or str(user.id),
        role=role,
    )
    if not agent.active:  # deactivated by an operator: still in the group, but no powers
        log.info("refused agent action by deactivated agent %s", agent.id)
        await refuse(update, context, "agent_inactive")
        return None
    return agent


async def refuse(update: Update, context: DeskContext, template: str) -> None:
    """Say no: an alert on a button, a short reply to a message."""
    if update.callback_query is not None:
        text = context.deps.texts.render_plain(template, context.lang)
        await answer_query(update, text, alert=True)
        return
    if update.effective_message is not None:
        try:
            await reply(context, template)
        except TelegramError as error:
            log.info("could not refuse in chat %s: %s", update.effective_message.chat_id, error)
