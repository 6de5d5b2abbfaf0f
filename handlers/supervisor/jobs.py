"""The analytics refreshes the sweeper runs (at most every ``REFRESH_EVERY`` per process): the
verified-resolution outcomes of bot answers, the hourly timeline counts behind the bot figures
of /stats and its chart, and the RFM snapshot behind /segments, /mvc and /churn. Without them
the figures are still right, only slower to compute."""

from __future__ import annotations

import logging
import time

from crm_core.services.analytics import refresh_bot_outcomes
from crm_core.services.interaction_hours import refresh_interaction_hours
from crm_core.services.segments import refresh_rfm_snapshot
from handlers.core.context import DeskContext

log = logging.getLogger(__name__)

REFRESH_EVERY = 15 * 60.0  # seconds
_last_run: dict[str, float] = {}


def _due(name: str) -> bool:
    now = time.monotonic()
    if now - _last_run.get(name, float("-inf")) < REFRESH_EVERY:
        return False
    _last_run[name] = now
    return True


async def sweep_analytics(context: DeskContext) -> None:
    """Sweeper: refresh what the supervisors' reports read, when due."""
    if _due("bot_outcomes"):
        recorded = await refresh_bot_outcomes(session=context.session)
        log.info("analytics: %s bot answer outcome(s) recorded", recorded)
    if _due("interaction_hours"):
        rows = await refresh_interaction_hours(session=context.session)
        log.info("analytics: %s hourly timeline count(s) rolled up", rows)
    if _due("rfm_snapshot"):
        await refresh_rfm_snapshot(session=context.session)
