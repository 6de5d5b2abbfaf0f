"""The supervisors' reports through Telegram: what is behind a figure, the chart, the SLA list,
per-agent figures, the CSV export, segments, most valuable customers, churn and gaps."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

from sqlalchemy import update

from crm_core.clock import utcnow
from crm_core.models import Complaint
from crm_core.services.customers import identify_customer
from crm_core.services.purchases import record_purchase
from tests.handlers.conftest import BOTH_DATABASES, Agent, Harness, HarnessFactory
from tests.handlers.desk import GROUP_ID, drain, open_handoff, start

SUPERVISOR_ID = 9001


def private(harness: Harness, text: str) -> None:
    harness.fake.push_message(harness.fake.chats[SUPERVISOR_ID].user, text)  # type: ignore[arg-type]


async def busy_desk(harness_factory: HarnessFactory) -> tuple[Harness, Agent]:
    """Alice talked to Sam (rated 2), filed a complaint that is past its SLA; Bob is a big buyer."""
    harness, group = await start(harness_factory, supervisor_ids=str(SUPERVISOR_ID))
    sam = harness.agent("Sam", group=group)
    sue = harness.agent("Sue", group=group, user_id=SUPERVISOR_ID)
    alice = harness.customer("Alice")
    card = await open_handoff(harness, alice, sam)
    await sam.press("Claim", card)
    await sam.send("/resolve", thread_id=card.thread_id)
    await alice.press("2", await alice.expect("How satisfied"))
    await alice.expect("rating us 2/5")
    await alice.ask("/complaint", contains="What is it about?")
    await alice.press("Delivery")
    await alice.expect("describe what happened")
    summary = await alice.ask("The parcel arrived crushed", contains="Submit it?")
    await alice.press("Submit", summary)
    await alice.expect("registered as")
    await harness.settle()
    async with harness.session_factory() as session:
        await session.exec(update(Complaint).values(sla_due_at=utcnow() - timedelta(hours=1)))
        bob = await identify_customer(
            session=session, channel="import", external_id="b1", name="Bob"
        )
        assert bob.id
        for days in (3, 40, 200):
            await record_purchase(
                session=session, customer_id=bob.id, amount_minor=90_000, currency="EUR",
                purchased_at=utcnow() - timedelta(days=days),
            )  # fmt: skip
        await session.commit()
    await drain(harness, sue, sam, alice)
    return harness, sue


@BOTH_DATABASES
async def test_what_is_behind_a_figure_the_chart_and_the_sla_list(
    harness_factory: HarnessFactory,
) -> None:
    harness, sue = await busy_desk(harness_factory)

    private(harness, "/stats")
    stats = await sue.expect_private("Desk figures")
    harness.fake.press(sue.user, stats, "SLA breached")
    behind = await sue.expect_private("SLA breached")
    assert "C-000001" in behind.text and ": 1" in behind.text
    harness.fake.press(sue.user, stats, "Low ratings")
    low = await sue.expect_private("Low ratings")
    assert ": 1" in low.text

    private(harness, "/stats chart 7d")
    chart = await sue.expect_private("Complaints per day")
    assert chart.data.get("photo")

    private(harness, "/sla")
    sla = await sue.expect_private("SLA watch")
    assert "1 breached" in sla.text and "🔴 C-000001" in sla.text and "unassigned" in sla.text


@BOTH_DATABASES
async def test_agents_export_segments_mvc_churn_and_gaps(harness_factory: HarnessFactory) -> None:
    harness, sue = await busy_desk(harness_factory)

    private(harness, "/agents 7d")
    agents = await sue.expect_private("Agents")
    assert (
        "Sam" in agents.text and "1 conversation(s)" in agents.text and "2.0 from 1" in agents.text
    )

    private(harness, "/export 7d")
    await sue.expect_private("complaint row(s)")
    documents = [m for m in harness.fake.sent_to(SUPERVISOR_ID) if m.data.get("document")]
    names = sorted(d.data["document"]["file_name"] for d in documents)
    assert names == ["complaints_7d.csv", "conversations_7d.csv"]
    complaints_csv = harness.fake.files[
        next(d for d in documents if "complaints" in d.data["document"]["file_name"]).data[
            "document"
        ]["file_id"]
    ].decode()
    rows = list(csv.DictReader(io.StringIO(complaints_csv)))
    assert rows and any("C-000001" in ",".join(r.values()) for r in rows)

    private(harness, "/segments")
    segments = await sue.expect_private("Customer segments")
    assert "80/20" in segments.text
    private(harness, "/mvc")
    mvc = await sue.expect_private("Most valuable customers")
    assert "1. Bob" in mvc.text and "2,700.00 EUR" in mvc.text
    private(harness, "/churn")
    await sue.expect_private("At risk of leaving")
    private(harness, "/gaps 30d")
    await sue.expect_private("Knowledge gaps")
    assert not [m for m in harness.fake.sent_to(SUPERVISOR_ID) if "Sorry" in m.text]
    assert GROUP_ID  # the reports went to the supervisor's private chat only
