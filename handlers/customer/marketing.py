"""Consent to campaigns: ``/stop`` (and a campaign's "no more offers" button) opts the customer
out, recorded with its source and time; ``/subscribe`` opts them in again. ``/start`` does
not: Telegram sends it whenever someone opens or unblocks the chat, which says nothing about
wanting offers, so only the customer's explicit ``/subscribe`` undoes their ``/stop``.

A campaign's "talk to us" button asks for a person, as ``/human`` does; both presses are
recorded on the campaign.
"""

from __future__ import annotations

from typing import Any

from telegram import Update
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler, filters

from crm_core.services.campaigns import opt_in, opt_out, record_press
from handlers.core.callbacks import CallbackDataError, Prefix, parse, pattern
from handlers.core.context import DeskContext
from handlers.core.send import answer_query, reply
from handlers.customer.handoff import request_human


async def stop(update: Update, context: DeskContext) -> None:
    customer_id = context.customer_id
    assert customer_id is not None
    changed = await opt_out(session=context.session, customer_id=customer_id, source="stop_command")
    await reply(context, "marketing_stopped", already=not changed)


async def subscribe(update: Update, context: DeskContext) -> None:
    customer_id = context.customer_id
    assert customer_id is not None
    changed = await opt_in(session=context.session, customer_id=customer_id)
    await reply(context, "marketing_subscribed", already=not changed)


async def on_campaign_button(update: Update, context: DeskContext) -> None:
    """``cb:<campaign_id>:<talk|stop>`` under a campaign's message."""
    await answer_query(update)
    customer_id = context.customer_id
    try:
        callback = parse(update.callback_query.data if update.callback_query else None)
        campaign_id, button = callback.int_arg(0), callback.arg(1)
    except CallbackDataError:
        campaign_id, button = 0, ""
    if customer_id is None or button not in ("talk", "stop"):
        await reply(context, "flow_expired")
        return
    if button == "stop":
        changed = await opt_out(
            session=context.session,
            customer_id=customer_id,
            source=f"campaign:{campaign_id}",
            campaign_id=campaign_id,
        )
        await reply(context, "marketing_stopped", already=not changed)
        return
    await record_press(
        session=context.session, customer_id=customer_id, campaign_id=campaign_id, button=button
    )
    await request_human(update, context)


def build_handlers() -> list[BaseHandler[Any, Any, Any]]:
    # New messages only: an edited old "/stop" must not act again.
    private = filters.ChatType.PRIVATE & filters.UpdateType.MESSAGE
    return [
        CommandHandler("stop", stop, filters=private),
        CommandHandler("subscribe", subscribe, filters=private),
        CallbackQueryHandler(on_campaign_button, pattern=pattern(Prefix.CAMPAIGN_BUTTON)),
    ]
