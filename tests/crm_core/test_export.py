"""CSV exports: parse with the csv module, hold what the database holds, round-trip."""

import csv
import io
from datetime import timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.models import Handoff
from crm_core.periods import Window
from crm_core.services.complaints import comment_complaint, file_complaint, transition_complaint
from crm_core.services.export import (
    COMPLAINT_COLUMNS,
    CONVERSATION_COLUMNS,
    export_complaints_csv,
    export_conversations_csv,
    export_csv_text,
)
from tests.crm_core.desk_factories import T0, aid, cid, make_agent, make_customer

W = Window(T0, T0 + timedelta(days=7))
TRICKY = 'Broken "lid", second line:\nstill broken; 50% off?'


def rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


async def test_complaints_with_their_events_one_row_per_event(session: AsyncSession) -> None:
    customer, agent = await make_customer(session, 'Ana, the "first"'), await make_agent(session)
    complaint = await file_complaint(
        session=session,
        customer_id=cid(customer),
        category="delivery",
        severity="high",
        description=TRICKY,
        now=T0 + timedelta(hours=1),
    )
    await transition_complaint(
        session=session,
        reference=complaint.reference,
        to_status="resolved",
        actor_type="agent",
        actor_id=aid(agent),
        note="Refunded",
        now=T0 + timedelta(hours=3),
    )
    # Before the window: not exported.
    await file_complaint(
        session=session,
        customer_id=cid(customer),
        category="other",
        description="old",
        now=T0 - timedelta(hours=1),
    )
    out = io.StringIO()
    written = await export_complaints_csv(session=session, window=W, out=out)
    table = rows(out.getvalue())
    assert written == len(table) == 3  # filed, open -> in progress, in progress -> resolved
    assert list(table[0]) == list(COMPLAINT_COLUMNS)
    assert {r["reference"] for r in table} == {complaint.reference}
    first = table[0]
    assert first["description"] == TRICKY  # commas, quotes and newlines survive
    assert first["customer_name"] == 'Ana, the "first"'
    assert (first["category"], first["severity"], first["status"]) == (
        "delivery",
        "high",
        "resolved",
    )
    assert first["created_at"] == "2026-03-02T10:00:00+00:00"
    assert first["resolved_at"] == "2026-03-02T12:00:00+00:00"
    assert first["first_response_at"] == "2026-03-02T12:00:00+00:00"
    assert [(r["event_action"], r["event_to_status"]) for r in table] == [
        ("filed", "open"),
        ("status_changed", "in_progress"),
        ("status_changed", "resolved"),
    ]
    assert table[2]["event_actor"] == "Anna" and table[2]["event_note"] == "Refunded"
    assert table[0]["event_actor_type"] == "customer" and table[0]["event_actor"] == ""


async def test_the_csv_round_trips(session: AsyncSession) -> None:
    customer = await make_customer(session)
    await file_complaint(
        session=session, customer_id=cid(customer), category="billing", description=TRICKY, now=T0
    )
    first = io.StringIO()
    await export_complaints_csv(session=session, window=W, out=first)
    parsed = list(csv.reader(io.StringIO(first.getvalue())))
    again = io.StringIO()
    csv.writer(again, lineterminator="\n").writerows(parsed)
    assert again.getvalue() == first.getvalue()


async def test_cells_a_spreadsheet_would_run_as_formulas_are_defused(session: AsyncSession) -> None:
    customer = await make_customer(session, "=cmd|'/c calc'!A1")
    complaint = await file_complaint(
        session=session,
        customer_id=cid(customer),
        category="billing",
        description='=HYPERLINK("http://evil")',
        now=T0,
    )
    agent = await make_agent(session)
    await comment_complaint(
        session=session,
        reference=complaint.reference,
        text="-1 for this",
        actor_type="agent",
        actor_id=aid(agent),
        now=T0 + timedelta(minutes=5),
    )
    out = io.StringIO()
    await export_complaints_csv(session=session, window=W, out=out)
    table = rows(out.getvalue())
    assert table[0]["description"] == '\'=HYPERLINK("http://evil")'
    assert table[0]["customer_name"].startswith("'=")
    assert table[1]["event_note"] == "'-1 for this"


async def test_conversations_one_row_each(session: AsyncSession) -> None:
    customer, agent = await make_customer(session), await make_agent(session)
    session.add(
        Handoff(
            customer_id=cid(customer),
            status="closed",
            agent_id=aid(agent),
            requested_at=T0 + timedelta(hours=1),
            claimed_at=T0 + timedelta(hours=1, minutes=4),
            closed_at=T0 + timedelta(hours=2),
            csat_score=4,
            csat_comment="quick, thanks",
            reason="where is my parcel",
        )
    )
    session.add(
        Handoff(customer_id=cid(customer), status="waiting", requested_at=T0 + timedelta(hours=5))
    )
    await session.commit()
    out = io.StringIO()
    assert await export_conversations_csv(session=session, window=W, out=out) == 2
    table = rows(out.getvalue())
    assert list(table[0]) == list(CONVERSATION_COLUMNS)
    done, waiting = table
    assert (done["status"], done["agent"], done["csat_score"]) == ("closed", "Anna", "4")
    assert float(done["wait_seconds"]) == 240.0
    assert done["csat_comment"] == "quick, thanks"
    assert (
        waiting["status"],
        waiting["agent"],
        waiting["claimed_at"],
        waiting["wait_seconds"],
    ) == (
        "waiting",
        "",
        "",
        "",
    )


async def test_an_empty_period_exports_just_the_headers(session: AsyncSession) -> None:
    complaints, conversations = await export_csv_text(session=session, window=W)
    assert complaints == ",".join(COMPLAINT_COLUMNS) + "\n"
    assert conversations == ",".join(CONVERSATION_COLUMNS) + "\n"
