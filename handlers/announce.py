"""Announce new handoffs and complaints to the agents' group (stubs; real version follows)."""

from __future__ import annotations

import logging

from handlers.deps import DeskContext

log = logging.getLogger(__name__)


async def announce_handoff(context: DeskContext, *, handoff_id: int) -> None:
    """Post the context card of handoff ``handoff_id`` to the agents' group. Never raises."""
    log.info("announce_handoff(%s): not implemented yet", handoff_id)


async def announce_complaint(context: DeskContext, *, complaint_id: int) -> None:
    """Post complaint ``complaint_id`` with its customer's context to the agents' group.
    Never raises."""
    log.info("announce_complaint(%s): not implemented yet", complaint_id)
