"""The waiting line: ``/queue`` for agents, and the reminder sweeper.

Reminders are scheduled in the database (``Handoff.next_reminder_at``, taken atomically by
``claim_due_reminders``), so they survive restarts and several instances never send one twice.
A handoff nobody claims is announced again after ``handoff_reminder_delay`` and escalated after
``handoff_escalation_delay`` (both counted from the request): a private message to every
supervisor and a mention in the group.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from telegram import Update
from telegram.error import TelegramError

from crm_core.clock import as_utc, utcnow
from crm_core.models import Complaint, Customer, Handoff
from crm_core.services.agents import get_agent_by_telegram
from crm_core.services.complaints import list_open_complaints
from crm_core.services.handoffs import DueReminder, claim_due_reminders, list_waiting_handoffs
from crm_core.services.rfm import customer_rfm
from handlers.announce import HandoffSubject, claim_keyboard, post_html, release
from handlers.context_card import VALUABLE_TIERS, format_wait, handoff_reference
from handlers.deps import DeskContext
from handlers.membership import acting_agent, agent_chat_id
from handlers.messaging import reply

log = logging.getLogger(__name__)

QUEUE_LIMIT = 30


def sweep_now() -> datetime:
    """The sweeper's clock (tests move it forward)."""
    return utcnow()


# --------------------------------------------------------------------------------------------
# /queue
# --------------------------------------------------------------------------------------------


async def on_queue(update: Update, context: DeskContext) -> None:
    agent = await acting_agent(update, context)
    if agent is None:
        return
    now = utcnow()
    handoffs = await list_waiting_handoffs(session=context.session)
    complaints = await list_open_complaints(session=context.session, limit=QUEUE_LIMIT)
    rows = [await _handoff_row(context, h, now) for h in handoffs[:QUEUE_LIMIT]]
    complaint_rows = [await _complaint_row(context, c, now) for c in complaints]
    await reply(
        context,
        "agent_queue",
        handoffs=rows,
        complaints=complaint_rows,
        more_handoffs=max(0, len(handoffs) - QUEUE_LIMIT),
    )


async def _name(context: DeskContext, customer_id: int | None) -> str:
    customer = await context.session.get(Customer, customer_id) if customer_id else None
    await context.session.commit()
    return (customer.name if customer else None) or f"Customer #{customer_id}"


async def _handoff_row(context: DeskContext, handoff: Handoff, now: datetime) -> dict[str, Any]:
    rfm = None
    if handoff.customer_id is not None:
        rfm = await customer_rfm(session=context.session, customer_id=handoff.customer_id, now=now)
    return {
        "reference": handoff_reference(handoff),
        "name": await _name(context, handoff.customer_id),
        "waited": format_wait(now - as_utc(handoff.requested_at)),
        "tier": rfm.tier if rfm else None,
        "valuable": rfm is not None and rfm.tier in VALUABLE_TIERS,
        "reason": handoff.reason,
    }


async def _complaint_row(
    context: DeskContext, complaint: Complaint, now: datetime
) -> dict[str, Any]:
    due = as_utc(complaint.sla_due_at) if complaint.sla_due_at else None
    return {
        "reference": complaint.reference,
        "name": await _name(context, complaint.customer_id),
        "status": complaint.status.value.replace("_", " "),
        "severity": complaint.severity.value,
        "waited": format_wait(now - as_utc(complaint.created_at)),
        "overdue": due is not None and due < now,
        "assigned": complaint.assignee_id is not None,
    }


# --------------------------------------------------------------------------------------------
# Reminders and escalation
# --------------------------------------------------------------------------------------------


def second_delay(context: DeskContext) -> timedelta:
    """From the re-announcement to the escalation (the escalation delay counts from the
    request, like the reminder delay)."""
    config = context.deps.config
    return max(config.handoff_escalation_delay - config.handoff_reminder_delay, timedelta(0))


async def sweep_reminders(context: DeskContext) -> None:
    """Sweeper: re-announce or escalate the waiting handoffs whose time has come."""
    if await agent_chat_id(context) is None:
        return
    now = sweep_now()
    due = await claim_due_reminders(
        session=context.session, now=now, reminder_after=second_delay(context)
    )
    for reminder in due:
        try:
            if reminder.escalate:
                await escalate(context, reminder, now)
            else:
                await reannounce(context, reminder, now)
        except Exception:
            log.exception("reminder for handoff %s failed", reminder.handoff_id)
            await context.session.rollback()


async def reannounce(context: DeskContext, reminder: DueReminder, now: datetime) -> None:
    subject = HandoffSubject(reminder.handoff_id)
    handoff = await subject.handoff(context)
    html = context.deps.texts.render(
        "agent_reminder",
        context.deps.config.default_language,
        name=await _name(context, reminder.customer_id),
        waited=format_wait(now - as_utc(reminder.requested_at)),
        reference=handoff_reference(handoff),
    )
    await post_html(context, subject, html, claim_keyboard(context, handoff))


def message_link(chat_id: int, message_id: int) -> str | None:
    """``https://t.me/c/…`` link to a message of a supergroup (members can open it)."""
    text = str(chat_id)
    if not text.startswith("-100"):
        return None
    return f"https://t.me/c/{text[4:]}/{message_id}"


async def _agent_name(context: DeskContext, telegram_user_id: int) -> str:
    agent = await get_agent_by_telegram(session=context.session, telegram_user_id=telegram_user_id)
    return agent.display_name if agent is not None else "supervisor"


async def escalate(context: DeskContext, reminder: DueReminder, now: datetime) -> None:
    subject = HandoffSubject(reminder.handoff_id)
    handoff = await subject.handoff(context)
    config = context.deps.config
    lang = config.default_language
    values = {
        "name": await _name(context, reminder.customer_id),
        "waited": format_wait(now - as_utc(reminder.requested_at)),
        "reference": handoff_reference(handoff),
    }
    supervisors = sorted(config.supervisor_ids)
    mentions = [(s, await _agent_name(context, s)) for s in supervisors]
    html = context.deps.texts.render("agent_escalation", lang, supervisors=mentions, **values)
    ids = await post_html(context, subject, html, claim_keyboard(context, handoff))
    handoff = await subject.handoff(context)  # its place may have moved while posting
    link = message_link(handoff.chat_id, ids[-1]) if ids and handoff.chat_id else None
    private = context.deps.texts.render(
        "supervisor_escalation", lang, reason=handoff.reason, link=link, **values
    )
    for supervisor_id in supervisors:
        await release(context)
        try:
            await context.bot.send_message(supervisor_id, private, parse_mode="HTML")
        except TelegramError as error:  # never started the bot, blocked it...
            log.warning("could not tell supervisor %s of handoff %s: %s", supervisor_id,
                        reminder.handoff_id, error)  # fmt: skip
