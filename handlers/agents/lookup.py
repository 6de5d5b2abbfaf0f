"""``/customer <name, phone, e-mail, @username or #id>``: the 360° card of one customer, or a
short list to choose from when several match. A phone may be written as agents say it, without
the country code (read in ``DESKBOT_DEFAULT_PHONE_REGION``)."""

from __future__ import annotations

from telegram import Update

from crm_core.models import Agent
from crm_core.services.customers import find_customers
from handlers.agents.announce import send_html_to
from handlers.agents.cards import customer_card_html
from handlers.agents.threads import here
from handlers.core.context import DeskContext
from handlers.core.guards import agent_only
from handlers.core.send import reply

MAX_LISTED = 8


@agent_only
async def on_customer_command(update: Update, context: DeskContext, agent: Agent) -> None:
    query = " ".join(context.args or []).strip()
    if not query:
        await reply(context, "agent_customer_usage")
        return
    found = await find_customers(
        session=context.session,
        query=query,
        limit=MAX_LISTED,
        default_region=context.deps.config.default_phone_region,
    )
    if not found:
        await reply(context, "agent_customer_not_found", query=query)
    elif len(found) == 1 and found[0].id is not None:
        html = await customer_card_html(context, found[0].id)
        await send_html_to(context, here(update), html)
    else:
        await reply(context, "card_customer_list", query=query, customers=found)
