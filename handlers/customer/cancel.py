"""/cancel: leave the flow in progress (a complaint being written, a rating's comment), or, with
no flow, withdraw a request for a person that nobody has taken yet."""

from __future__ import annotations

from typing import Any

from telegram import Update
from telegram.ext import BaseHandler, CommandHandler, filters

from handlers.core.context import DeskContext
from handlers.core.flows import FlowName, end_flow, load_flow
from handlers.core.send import reply
from handlers.customer.handoff import withdraw_request


async def cancel(update: Update, context: DeskContext) -> None:
    flow = await load_flow(update, context)
    if flow is None:
        if not await withdraw_request(context):
            await reply(context, "cancel_nothing")
        return
    await end_flow(update, context)
    cancelled = "complaint_cancelled" if flow.flow == FlowName.COMPLAINT else "flow_cancelled"
    await reply(context, cancelled)


def build_handlers() -> list[BaseHandler[Any, Any, Any]]:
    # New messages only: editing an old "/cancel" must not cancel anything again.
    private = filters.ChatType.PRIVATE & filters.UpdateType.MESSAGE
    return [CommandHandler("cancel", cancel, filters=private)]
