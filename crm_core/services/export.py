"""CSV exports of a period for supervisors: its complaints with their events (one row per event,
the complaint's fields repeated), and its conversations with a person (one row per handoff).

Rows are streamed from the database into the file object, never held in memory all at once.
Timestamps are ISO 8601 in UTC; empty cells are missing values. Free-text cells that a
spreadsheet would run as a formula (starting with ``=``, ``+``, ``-``, ``@``, tab or CR) get a
leading apostrophe, the usual guard against CSV formula injection: a customer's complaint text
must not execute on a supervisor's machine.
"""

import csv
import io
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TextIO

from sqlalchemy import select
from sqlalchemy.orm import aliased
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.clock import as_utc
from crm_core.models import Agent, Complaint, ComplaintEvent, Customer, Handoff
from crm_core.periods import Window
from crm_core.services._figures import dialect_name, seconds_between
from crm_core.services._sql import unit_of_work
from crm_core.services.analytics import first_response_at

COMPLAINT_COLUMNS = (
    "reference",
    "complaint_id",
    "customer_id",
    "customer_name",
    "category",
    "severity",
    "status",
    "assignee",
    "created_at",
    "sla_due_at",
    "first_response_at",
    "resolved_at",
    "closed_at",
    "reopen_count",
    "description",
    "event_id",
    "event_at",
    "event_action",
    "event_actor_type",
    "event_actor",
    "event_from_status",
    "event_to_status",
    "event_note",
)
CONVERSATION_COLUMNS = (
    "handoff_id",
    "customer_id",
    "customer_name",
    "complaint_reference",
    "status",
    "agent",
    "requested_at",
    "claimed_at",
    "first_agent_reply_at",
    "closed_at",
    "wait_seconds",
    "csat_score",
    "csat_comment",
    "reason",
    "summary",
)
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_TEXT_COLUMNS = frozenset(
    {"customer_name", "description", "event_note", "csat_comment", "reason", "summary", "agent"}
    | {"assignee", "event_actor"}
)


def _cell(name: str, value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return as_utc(value).isoformat()
    if name in _TEXT_COLUMNS and isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def _writer(out: TextIO, columns: Sequence[str]) -> Any:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    return writer


async def export_complaints_csv(*, session: AsyncSession, window: Window, out: TextIO) -> int:
    """Write the complaints filed in ``window`` with their events; returns the rows written
    (without the header)."""
    dialect = dialect_name(session)
    assignee, actor = aliased(Agent), aliased(Agent)
    stmt = (
        select(
            Complaint.reference,
            Complaint.id,
            Complaint.customer_id,
            Customer.name,
            Complaint.category,
            Complaint.severity,
            Complaint.status,
            assignee.display_name,
            Complaint.created_at,
            Complaint.sla_due_at,
            first_response_at(dialect).label("first_response"),
            Complaint.resolved_at,
            Complaint.closed_at,
            Complaint.reopen_count,
            Complaint.description,
            ComplaintEvent.id,
            ComplaintEvent.created_at,
            ComplaintEvent.action,
            ComplaintEvent.actor_type,
            actor.display_name,
            ComplaintEvent.from_status,
            ComplaintEvent.to_status,
            ComplaintEvent.note,
        )
        .outerjoin(Customer, col(Customer.id) == Complaint.customer_id)
        .outerjoin(assignee, assignee.id == Complaint.assignee_id)
        .outerjoin(ComplaintEvent, col(ComplaintEvent.complaint_id) == Complaint.id)
        .outerjoin(actor, actor.id == ComplaintEvent.actor_id)
        .where(col(Complaint.created_at) >= window.start, col(Complaint.created_at) < window.end)
        .order_by(col(Complaint.created_at), col(Complaint.id), col(ComplaintEvent.id))
    )
    return await _stream(session, stmt, out, COMPLAINT_COLUMNS, _complaint_row)


_ENUM_CELLS = (4, 5, 6, 18, 20, 21)  # category, severity, status, actor type, from, to
_FIRST_RESPONSE_CELL = 10


def _complaint_row(row: Sequence[Any]) -> list[Any]:
    values = list(row)
    for i in _ENUM_CELLS:
        values[i] = str(values[i]) if values[i] is not None else None
    first = values[_FIRST_RESPONSE_CELL]
    if isinstance(first, str):  # an SQL expression SQLite may hand back as its stored text
        values[_FIRST_RESPONSE_CELL] = datetime.fromisoformat(first)
    return values


async def export_conversations_csv(*, session: AsyncSession, window: Window, out: TextIO) -> int:
    """Write the handoffs requested in ``window``, one row each; returns the rows written."""
    dialect = dialect_name(session)
    stmt = (
        select(
            Handoff.id,
            Handoff.customer_id,
            Customer.name,
            Complaint.reference,
            Handoff.status,
            Agent.display_name,
            Handoff.requested_at,
            Handoff.claimed_at,
            Handoff.first_agent_reply_at,
            Handoff.closed_at,
            seconds_between(dialect, Handoff.requested_at, Handoff.claimed_at),
            Handoff.csat_score,
            Handoff.csat_comment,
            Handoff.reason,
            Handoff.summary,
        )
        .outerjoin(Customer, col(Customer.id) == Handoff.customer_id)
        .outerjoin(Complaint, col(Complaint.id) == Handoff.complaint_id)
        .outerjoin(Agent, col(Agent.id) == Handoff.agent_id)
        .where(col(Handoff.requested_at) >= window.start, col(Handoff.requested_at) < window.end)
        .order_by(col(Handoff.requested_at), col(Handoff.id))
    )
    return await _stream(session, stmt, out, CONVERSATION_COLUMNS, _conversation_row)


def _conversation_row(row: Sequence[Any]) -> list[Any]:
    values = list(row)
    values[4] = str(values[4])
    if values[10] is not None:
        values[10] = round(float(values[10]), 3)
    return values


async def _stream(
    session: AsyncSession, stmt: Any, out: TextIO, columns: Sequence[str], shape: Any
) -> int:
    writer = _writer(out, columns)
    written = 0
    async with unit_of_work(session):
        result = await session.stream(stmt)
        async for row in result:
            cells = shape(row)
            writer.writerow(
                [_cell(name, value) for name, value in zip(columns, cells, strict=True)]
            )
            written += 1
    return written


async def export_csv_text(*, session: AsyncSession, window: Window) -> tuple[str, str]:
    """Both exports as text (complaints, conversations), for sending as two documents."""
    complaints, conversations = io.StringIO(), io.StringIO()
    await export_complaints_csv(session=session, window=window, out=complaints)
    await export_conversations_csv(session=session, window=window, out=conversations)
    return complaints.getvalue(), conversations.getvalue()
