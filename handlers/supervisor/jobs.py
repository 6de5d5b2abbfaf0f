"""The analytics refreshes the sweeper runs (at most every ``REFRESH_EVERY`` per process): the
verified-resolution outcomes of bot answers, the hourly timeline counts behind the bot figures
of /stats and its chart, and the RFM snapshot behind /segments, /mvc and /churn. Without them
the figures are still right, only slower to compute.

And the retention sweep (``DESKBOT_RETENTION_DAYS``): as often, or at every sweep while old rows
are left (a backlog is worked off ``RETENTION_BATCHES_PER_SWEEP`` batches at a time, so one
sweep never holds the desk up for long)."""

from __future__ import annotations

import logging
import time

from crm_core.services.analytics import refresh_bot_outcomes
from crm_core.services.interaction_hours import refresh_interaction_hours
from crm_core.services.retention import RetentionMode, apply_retention, retention_cutoff
from crm_core.services.segments import refresh_rfm_snapshot
from handlers.core.context import DeskContext

log = logging.getLogger(__name__)

REFRESH_EVERY = 15 * 60.0  # seconds
RETENTION_BATCHES_PER_SWEEP = 20
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


async def sweep_retention(context: DeskContext) -> None:
    """Sweeper: anonymise or delete interactions older than the retention, when due."""
    config = context.deps.config
    if config.retention_days <= 0:
        return
    if not _due("retention"):
        return
    report = await apply_retention(
        session=context.session,
        before=retention_cutoff(config.retention_days),
        mode=RetentionMode(config.retention_mode),
        max_batches=RETENTION_BATCHES_PER_SWEEP,
    )
    if not report.finished:  # old rows left: due again at the next sweep
        del _last_run["retention"]
    if report.touched:
        log.info(
            "retention: %s interaction(s) older than %s day(s) %s",
            report.touched,
            config.retention_days,
            "deleted" if report.mode is RetentionMode.delete else "anonymised",
        )
