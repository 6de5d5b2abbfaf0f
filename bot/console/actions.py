"""Changes a supervisor makes in the console go through the same code as the bot's: the CRM
service, then the customer told in plain words, the complaint's card and topic updated."""

from __future__ import annotations

from bot.app import DeskApplication
from crm_core.models import ActorType
from handlers.agents.complaint_commands import apply_status_change
from handlers.core.context import DeskContext, update_scope
from handlers.core.send import Delivery


async def change_complaint_status(
    application: DeskApplication, *, reference: str, status: str, note: str | None, by: str
) -> Delivery:
    """Like an agent's ``/status``: raises the service's DomainError for a move the lifecycle
    forbids (nothing changed then). Returns whether the customer was told."""
    async with update_scope(application.deps.session_factory):
        return await apply_status_change(
            DeskContext(application),
            reference=reference,
            status=status,
            note=note,
            actor_type=ActorType.system,
            actor_id=None,
            actor_name=f"{by} (console)",
            details={"via": "console"},
        )
