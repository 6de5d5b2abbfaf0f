"""``/queue``: who is waiting for a person (longest first, valuable customers marked) and the
open complaints with their SLA state."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from telegram import Update

from crm_core.clock import as_utc, utcnow
from crm_core.models import Agent, Complaint, Handoff
from crm_core.services.complaints import list_open_complaints
from crm_core.services.handoffs import list_waiting_handoffs
from crm_core.services.rfm import customer_rfm
from handlers.agents.cards import VALUABLE_TIERS, customer_name, handoff_reference
from handlers.core.context import DeskContext
from handlers.core.format import format_wait, status_label
from handlers.core.guards import agent_only
from handlers.core.send import reply

QUEUE_LIMIT = 30


@agent_only
async def on_queue(update: Update, context: DeskContext, agent: Agent) -> None:
    now = utcnow()
    handoffs = await list_waiting_handoffs(session=context.session)
    complaints = await list_open_complaints(session=context.session, limit=QUEUE_LIMIT)
    rows = [await _handoff_row(context, h, now) for h in handoffs[:QUEUE_LIMIT]]
    complaint_rows = [await _complaint_row(context, c, now) for c in complaints]
    await reply(
        context,
        "agent_queue",
        handoffs=rows,
        complaints=complaint_rows,
        more_handoffs=max(0, len(handoffs) - QUEUE_LIMIT),
    )


async def _handoff_row(context: DeskContext, handoff: Handoff, now: datetime) -> dict[str, Any]:
    rfm = None
    if handoff.customer_id is not None:
        rfm = await customer_rfm(session=context.session, customer_id=handoff.customer_id, now=now)
    return {
        "reference": handoff_reference(handoff),
        "name": await customer_name(context, handoff.customer_id),
        "waited": format_wait(now - as_utc(handoff.requested_at)),
        "tier": rfm.tier if rfm else None,
        "valuable": rfm is not None and rfm.tier in VALUABLE_TIERS,
        "reason": handoff.reason,
    }


async def _complaint_row(
    context: DeskContext, complaint: Complaint, now: datetime
) -> dict[str, Any]:
    due = as_utc(complaint.sla_due_at) if complaint.sla_due_at else None
    return {
        "reference": complaint.reference,
        "name": await customer_name(context, complaint.customer_id),
        "status": status_label(complaint.status),
        "severity": complaint.severity.value,
        "waited": format_wait(now - as_utc(complaint.created_at)),
        "overdue": due is not None and due < now,
        "assigned": complaint.assignee_id is not None,
    }
