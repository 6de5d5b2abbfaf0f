"""Changes a supervisor makes in the console go through the same code as the bot's: the CRM
service, then the customer told in plain words, the complaint's card and topic updated."""

from __future__ import annotations

from bot.app import DeskApplication
from crm_core.models import ActorType, ComplaintStatus, InteractionKind
from crm_core.services.complaints import get_complaint, transition_complaint
from handlers.agents.announce import ComplaintSubject, post_html, refresh_complaint, set_topic_open
from handlers.core.context import DeskContext, update_scope
from handlers.core.format import status_label
from handlers.core.send import Delivery, tell_customer


async def change_complaint_status(
    application: DeskApplication, *, reference: str, status: str, note: str | None, by: str
) -> Delivery:
    """Like an agent's ``/status``: raises the service's DomainError for a move the lifecycle
    forbids (nothing changed then). Returns whether the customer was told."""
    async with update_scope(application.deps.session_factory):
        context = DeskContext(application)
        before = await get_complaint(session=context.session, reference=reference)
        was_closed = before.status == ComplaintStatus.closed
        complaint = await transition_complaint(
            session=context.session,
            reference=reference,
            to_status=status,
            actor_type=ActorType.system,
            note=note,
        )
        assert complaint.id is not None
        delivery = await tell_customer(
            context,
            complaint.customer_id,
            "agent_complaint_status_customer",
            reference=complaint.reference,
            status=complaint.status.value,
            note=note,
            idempotency_key=None,
            kind=InteractionKind.message,
            details={"status": complaint.status, "via": "console"},
            complaint_id=complaint.id,
        )
        lang = context.deps.config.default_language
        html = context.deps.texts.render(
            "agent_complaint_status",
            lang,
            agent=f"{by} (console)",
            reference=complaint.reference,
            status=status_label(complaint.status),
            note=note,
        )
        if delivery is not Delivery.SENT:
            html += "\n" + context.deps.texts.render(
                "agent_complaint_customer_unreachable", lang, reference=complaint.reference
            )
        if was_closed:
            await set_topic_open(context, complaint.group_chat_id, complaint.group_topic_id, True)
        await post_html(context, ComplaintSubject(complaint.id), html)
        await refresh_complaint(context, complaint.id)
        if complaint.status == ComplaintStatus.closed:
            await set_topic_open(context, complaint.group_chat_id, complaint.group_topic_id, False)
        return delivery
