"""Nobody waits unseen: the reminder sweeper.

Reminders are scheduled in the database (``Handoff.next_reminder_at``, taken atomically by
``claim_due_reminders``), so they survive restarts and several instances never send one twice.
A handoff nobody claims is announced again after ``handoff_reminder_delay`` and escalated after
``handoff_escalation_delay`` (both counted from the request): a private message to every
supervisor and a mention in the group.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from telegram.error import TelegramError

from crm_core.clock import as_utc, utcnow
from crm_core.services.agents import get_agent_by_telegram
from crm_core.services.handoffs import DueReminder, claim_due_reminders, estimate_wait
from handlers.agents.announce import HandoffSubject, Place, post_html, send_html_to
from handlers.agents.cards import claim_keyboard, customer_name, handoff_reference
from handlers.core.context import DeskContext
from handlers.core.format import format_wait
from handlers.core.membership import agent_chat_id
from handlers.core.send import tell_customer

log = logging.getLogger(__name__)


def sweep_now() -> datetime:
    """The sweeper's clock (tests move it forward)."""
    return utcnow()


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
        name=await customer_name(context, reminder.customer_id),
        waited=format_wait(now - as_utc(reminder.requested_at)),
        reference=handoff_reference(handoff),
    )
    await post_html(context, subject, html, claim_keyboard(context, handoff))
    await tell_still_waiting(context, reminder)


async def tell_still_waiting(context: DeskContext, reminder: DueReminder) -> None:
    """The customer hears that they are not forgotten, and where they stand."""
    wait = await estimate_wait(session=context.session, handoff_id=reminder.handoff_id)
    await tell_customer(
        context,
        reminder.customer_id,
        "handoff_still_waiting",
        position=wait.position,
        idempotency_key=f"handoff:{reminder.handoff_id}:still_waiting:{reminder.reminders_sent}",
        handoff_id=reminder.handoff_id,
    )


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
        "name": await customer_name(context, reminder.customer_id),
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
        # Through the outbox like every message to a person: paced within the bot's budget,
        # queued and retried when Telegram is away. A supervisor who never started the bot or
        # blocked it is refused by Telegram; that stays in the outbox's record, not a retry.
        try:
            await send_html_to(context, Place(supervisor_id), private)
        except TelegramError as error:
            log.warning("could not tell supervisor %s of handoff %s: %s", supervisor_id,
                        reminder.handoff_id, error)  # fmt: skip
