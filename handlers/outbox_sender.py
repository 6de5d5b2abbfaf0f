"""The outbox sender and its housekeeping, as the application runs them.

:func:`send_outbox` delivers what the outbox holds (``handlers.core.outbox.flush``), and when a
queued message finds its customer gone (403) it takes the same path as a message sent at once:
the conversation is marked unreachable and the agents are told (``announce.customer_unreachable``).
:func:`sweep_outbox` purges old sent rows and past send-budget windows.
"""

from __future__ import annotations

import contextlib
import logging
import time

from crm_core.clock import utcnow
from crm_core.models import Customer, OutboxMessage
from crm_core.services import outbox as store
from crm_core.services.handoffs import get_handoff
from handlers.agents.announce import customer_unreachable
from handlers.core import outbox
from handlers.core.context import DeskContext

log = logging.getLogger(__name__)

BUDGET_KEEP_SECONDS = 600  # longer than any send-budget window


async def send_outbox(context: DeskContext) -> int:
    """One pass of the sender; returns how many messages it tried."""

    async def unreachable(row: OutboxMessage) -> None:
        if row.handoff_id is None or row.customer_id is None:
            return
        try:
            handoff = await get_handoff(session=context.session, handoff_id=row.handoff_id)
            customer = await context.session.get(Customer, row.customer_id)
            if customer is not None:
                await customer_unreachable(context, handoff, customer)
        except Exception:
            log.exception("could not tell the agents that customer %s is gone", row.customer_id)
            with contextlib.suppress(Exception):
                await context.session.rollback()

    return await outbox.flush(
        context.bot,
        session=context.session,
        pending=context.deps.outbox,
        retry_seconds=context.deps.config.outbox_retry_seconds,
        on_unreachable=unreachable,
    )


async def sweep_outbox(context: DeskContext) -> None:
    """Forget sent and refused messages past their retention, and finished budget windows."""
    purged = await store.purge(
        session=context.session, older_than=utcnow() - context.deps.config.outbox_retention
    )
    if purged:
        log.info("outbox: purged %d old message(s)", purged)
    await store.purge_budget(
        session=context.session, before_window=int(time.time()) - BUDGET_KEEP_SECONDS
    )
