"""Sending campaigns: a sweeper that sends a bounded batch each sweep
(``campaign_batch_size``, at most ``campaign_rate_per_second``), at the lowest priority.

Each recipient is claimed in the database (``sending``, committed) before its message goes
out and marked ``sent`` after, so a process killed mid-send never sends anyone twice: its
``sending`` row is settled after ``campaign_claim_seconds`` as sent (if its Interaction was
logged) or failed with reason ``unknown_after_crash`` (Telegram may have delivered it; it is
not resent). The next process, or another instance, carries on with the pending rest.

Every campaign message goes through :func:`send_campaign_message`, the one call of
``tell_customer`` for campaigns.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import jinja2
from telegram import InlineKeyboardButton, InlineKeyboardMarkup
from telegram.error import NetworkError, RetryAfter, TelegramError

from crm_core.models import Campaign, InteractionKind
from crm_core.services.campaigns import (
    Claimed,
    attribute_responses,
    claim_next,
    finish_if_complete,
    mark_failed,
    mark_sent,
    release_claim,
    sending_campaigns,
    settle_stale_claims,
)
from handlers.core.callbacks import Prefix, build
from handlers.core.context import DeskContext
from handlers.core.format import button_label
from handlers.core.send import Delivery, Priority, Recipient, find_recipient, tell_customer
from handlers.supervisor.campaigns import render_for

log = logging.getLogger(__name__)


class SendOutcome:
    SENT = "sent"
    FAILED = "failed"
    RETRY_LATER = "retry_later"  # Telegram asked us to slow down: nothing was sent


async def sweep_campaigns(context: DeskContext) -> None:
    """Sweeper: settle claims cut off by a crash, tie recipients' replies and purchases to
    their campaigns, then send the next batch."""
    config = context.deps.config
    await settle_stale_claims(
        session=context.session, older_than=timedelta(seconds=config.campaign_claim_seconds)
    )
    try:
        await attribute_responses(session=context.session)
    except Exception:  # the figures wait for the next sweep; sending must not
        log.exception("tying responses to campaigns failed")
    budget = config.campaign_batch_size
    slot = 1 / config.campaign_rate_per_second
    loop = asyncio.get_running_loop()
    next_slot = loop.time()
    for campaign in await sending_campaigns(session=context.session):
        while budget > 0:
            # Pacing by slots, not a fixed pause after each message: the time a send takes
            # counts towards its slot, so the rate is the setting's, under Telegram's limit.
            await asyncio.sleep(max(0.0, next_slot - loop.time()))
            next_slot = max(next_slot, loop.time() - slot) + slot
            # Nothing held from the last message: each claim is a fresh transaction (on
            # SQLite, no savepoint round trips per message).
            context.session.expunge_all()
            claimed = await claim_next(session=context.session, campaign_id=campaign.id or 0)
            if claimed is None:
                await finish_if_complete(session=context.session, campaign_id=campaign.id or 0)
                break
            outcome = await send_campaign_message(context, campaign, claimed)
            if outcome == SendOutcome.RETRY_LATER:
                return  # the next sweep carries on
            budget -= 1


def campaign_keyboard(
    context: DeskContext, campaign: Campaign, lang: str
) -> InlineKeyboardMarkup | None:
    texts, rows = context.deps.texts, []
    for button in campaign.buttons:
        if button.get("kind") == "link":
            rows.append([InlineKeyboardButton(button_label(button["label"]), url=button["url"])])
        elif button.get("kind") in ("talk", "stop"):
            label = texts.render_plain(f"buttons/campaign_{button['kind']}", lang)
            data = build(Prefix.CAMPAIGN_BUTTON, campaign.id, button["kind"])
            rows.append([InlineKeyboardButton(button_label(label), callback_data=data)])
    return InlineKeyboardMarkup(rows) if rows else None


async def send_campaign_message(context: DeskContext, campaign: Campaign, claimed: Claimed) -> str:
    """Send the campaign's message to one claimed recipient and record the outcome."""
    session = context.session
    recipient = await find_recipient(context, claimed.customer_id)
    if recipient is None:
        await mark_failed(session=session, claimed=claimed, reason="no_chat")
        return SendOutcome.FAILED
    try:
        text = render_for(context, campaign.template, recipient.customer)
    except jinja2.TemplateError as error:
        log.info(
            "campaign %s: no message for customer %s: %s", campaign.id, claimed.customer_id, error
        )
        await mark_failed(session=session, claimed=claimed, reason="template")
        return SendOutcome.FAILED
    try:
        delivery = await _tell(context, campaign, claimed, recipient, text)
    except RetryAfter:
        await release_claim(session=session, claimed=claimed)
        return SendOutcome.RETRY_LATER
    except NetworkError as error:  # timed out or cut: Telegram may have delivered it
        log.warning(
            "campaign %s: unknown outcome for %s: %s", campaign.id, claimed.customer_id, error
        )
        await mark_failed(session=session, claimed=claimed, reason="unknown_network")
        return SendOutcome.FAILED
    except TelegramError as error:  # refused (a bad link button, a deactivated account...)
        log.info("campaign %s: refused for %s: %s", campaign.id, claimed.customer_id, error)
        await mark_failed(session=session, claimed=claimed, reason=f"refused: {error}")
        return SendOutcome.FAILED
    if delivery is Delivery.SENT:
        await mark_sent(session=session, claimed=claimed)
        return SendOutcome.SENT
    blocked = delivery is Delivery.BLOCKED
    await mark_failed(session=session, claimed=claimed, reason=delivery.value, blocked=blocked)
    return SendOutcome.FAILED


async def _tell(
    context: DeskContext, campaign: Campaign, claimed: Claimed, recipient: Recipient, text: str
) -> Delivery:
    # The lowest priority: campaign messages wait whenever the desk's own replies need the budget.
    return await tell_customer(
        context,
        recipient,
        "campaign_message",
        idempotency_key=claimed.key,
        reply_markup=campaign_keyboard(context, campaign, recipient.lang),
        kind=InteractionKind.campaign,
        details={"campaign_id": campaign.id, "event": "sent"},
        priority=Priority.CAMPAIGN,
        text=text,
    )
