"""RFM segments, the 80/20 line, most valuable customers, churn risk and service recovery."""

from datetime import datetime, timedelta

import pytest
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.clock import utcnow
from crm_core.models import Complaint, Customer, Direction, Handoff, Interaction, Purchase
from crm_core.periods import Window
from crm_core.services.churn import churn_risks, service_recovery
from crm_core.services.segments import (
    SNAPSHOT_MAX_AGE,
    most_valuable_customers,
    refresh_rfm_snapshot,
    rfm_segments,
)
from tests.crm_core.desk_factories import T0

NOW = T0 + timedelta(days=400)


def days(n: float) -> timedelta:
    return timedelta(days=n)


async def customers(session: AsyncSession, *names: str) -> dict[str, int]:
    ids = {}
    for name in names:
        row = Customer(name=name)
        session.add(row)
        await session.flush()
        assert row.id is not None
        ids[name] = row.id
    return ids


def buy(customer_id: int, amount: int, at: datetime) -> Purchase:
    return Purchase(customer_id=customer_id, amount_minor=amount, purchased_at=at)


def complaint(customer_id: int, n: int, created: datetime, **fields: object) -> Complaint:
    return Complaint(
        reference=f"C-{n:06d}",
        customer_id=customer_id,
        category="product",
        description="broken",
        created_at=created,
        **fields,
    )


async def five_buyers(session: AsyncSession) -> dict[str, int]:
    """One purchase each; the more recent, the more they spent, except Dora (big, long ago)."""
    ids = await customers(session, "Ada", "Ben", "Cy", "Dora", "Eve", "Fay")
    plan = [
        ("Ada", 1000, 1),
        ("Ben", 300, 10),
        ("Cy", 200, 20),
        ("Eve", 100, 30),
        ("Dora", 400, 300),
    ]
    for name, amount, ago in plan:
        session.add(buy(ids[name], amount, NOW - days(ago)))
    await session.commit()
    return ids


async def test_segments_with_counts_revenue_shares_and_the_80_20_line(
    session: AsyncSession,
) -> None:
    await five_buyers(session)
    report = await rfm_segments(session=session, now=NOW)
    assert (report.customers, report.revenue_minor) == (5, 2000)
    # Five customers, one purchase each: F=1 for all; R by recency 5, 4, 3, 2, 1.
    by_name = {s.name: s for s in report.segments}
    assert by_name["New"].customers == 1 and by_name["New"].revenue_share == 0.5  # Ada
    assert by_name["Promising"].revenue_minor == 300  # Ben
    assert by_name["About to sleep"].revenue_minor == 200  # Cy
    assert by_name["Hibernating"].revenue_minor == 100  # Eve
    assert by_name["Lost"].revenue_minor == 400  # Dora
    assert by_name["Champions"].customers == 0 and by_name["Champions"].revenue_share == 0
    assert report.r_scores == {1: 1, 2: 1, 3: 1, 4: 1, 5: 1}
    assert report.f_scores == {1: 5, 2: 0, 3: 0, 4: 0, 5: 0}
    assert report.m_scores == {1: 1, 2: 1, 3: 1, 4: 1, 5: 1}
    # The top 20% (1 of 5) bring half of the revenue.
    assert (report.top_customers, report.top_revenue_share) == (1, 0.5)


async def test_segments_of_a_base_without_purchases(session: AsyncSession) -> None:
    report = await rfm_segments(session=session, now=NOW)
    assert report.customers == 0 and report.top_revenue_share is None
    assert all(s.customers == 0 and s.revenue_share is None for s in report.segments)


async def test_most_valuable_customers_with_what_is_open_for_them(session: AsyncSession) -> None:
    ids = await five_buyers(session)
    session.add(complaint(ids["Ada"], 1, NOW - days(2), status="open"))
    session.add(complaint(ids["Ada"], 2, NOW - days(1), status="in_progress"))
    session.add(complaint(ids["Ada"], 3, NOW - days(5), status="resolved"))
    session.add(Handoff(customer_id=ids["Dora"], status="waiting", requested_at=NOW - days(0.1)))
    await session.commit()
    top = await most_valuable_customers(session=session, now=NOW, limit=2)
    assert [(c.name, c.monetary_minor) for c in top] == [("Ada", 1000), ("Dora", 400)]
    assert top[0].open_complaints == ["C-000001", "C-000002"] and top[0].open_handoff is None
    assert top[1].open_complaints == [] and top[1].open_handoff == "waiting"
    assert top[1].segment == "Lost"


async def test_churn_risks_each_with_its_reasons(session: AsyncSession) -> None:
    ids = await five_buyers(session)
    # Ben complained twice lately, one of them still open past due.
    session.add(complaint(ids["Ben"], 1, NOW - days(20), status="resolved"))
    session.add(complaint(ids["Ben"], 2, NOW - days(3), status="open", sla_due_at=NOW - days(2)))
    # Fay (no purchases) rated a conversation 1; Cy rated 4 (no risk); an old 1 does not count.
    for who, score, ago in (("Fay", 1, 10), ("Cy", 4, 10), ("Eve", 1, 200)):
        session.add(
            Handoff(
                customer_id=ids[who],
                status="closed",
                requested_at=NOW - days(ago),
                csat_score=score,
            )
        )
    await session.commit()
    report = await churn_risks(session=session, now=NOW)
    assert report.at_risk == 3
    by_name = {c.name: c for c in report.customers}
    assert set(by_name) == {"Ben", "Dora", "Fay"}
    assert report.customers[0].name == "Ben"  # two reasons come first
    assert by_name["Ben"].reasons == [
        "2 complaints in 90 days",
        "1 complaint(s) unresolved past due",
    ]
    # Dora: valuable (M4) but no purchase for 300 days.
    assert by_name["Dora"].reasons == ["valuable (M4) but no purchase for 300 days (R1)"]
    assert by_name["Fay"].reasons == ["rated 1/5"] and by_name["Fay"].monetary_minor == 0
    assert [c.name for c in report.customers[1:]] == ["Dora", "Fay"]  # then by revenue


async def test_service_recovery_resolved_against_unresolved(session: AsyncSession) -> None:
    ids = await customers(session, "Ada", "Ben", "Cy", "Dan")
    start = NOW - days(120)
    rows = [
        # resolved, and Ada bought 10 days after the resolution: came back
        complaint(ids["Ada"], 1, start, status="resolved", resolved_at=start + days(1)),
        # resolved, Ben only bought 40 days later: did not come back in time
        complaint(ids["Ben"], 2, start, status="resolved", resolved_at=start + days(1)),
        # not resolved; Cy wrote again 5 days after filing: came back
        complaint(ids["Cy"], 3, start, status="open"),
        # filed 10 days ago: its 30 days are not over, so it does not count yet
        complaint(ids["Dan"], 4, NOW - days(10), status="open"),
    ]
    session.add_all(rows)
    session.add(buy(ids["Ada"], 500, start + days(11)))
    session.add(buy(ids["Ben"], 500, start + days(41)))
    session.add(
        Interaction(
            customer_id=ids["Cy"],
            channel="telegram",
            direction=Direction.inbound,
            kind="message",
            occurred_at=start + days(5),
        )
    )
    await session.commit()
    recovery = await service_recovery(session=session, window=Window(NOW - days(365), NOW), now=NOW)
    assert (recovery.resolved.complaints, recovery.resolved.came_back) == (2, 1)
    assert recovery.resolved.rate == 0.5
    assert (recovery.unresolved.complaints, recovery.unresolved.came_back) == (1, 1)
    empty = await service_recovery(session=session, window=Window(NOW - days(1), NOW), now=NOW)
    assert empty.resolved.rate is None and empty.unresolved.complaints == 0


@pytest.mark.parametrize("limit", [1])
async def test_the_churn_list_is_cut_at_the_limit_but_counts_everyone(
    session: AsyncSession, limit: int
) -> None:
    ids = await customers(session, "Ada", "Ben")
    for n, who in enumerate(("Ada", "Ada", "Ben", "Ben"), start=1):
        session.add(complaint(ids[who], n, NOW - days(n)))
    await session.commit()
    report = await churn_risks(session=session, now=NOW, limit=limit)
    assert report.at_risk == 2 and len(report.customers) == 1


async def recent_buyers(session: AsyncSession) -> dict[str, int]:
    """five_buyers, but relative to the real clock (snapshots are taken "now")."""
    ids = await customers(session, "Ada", "Ben", "Cy", "Dora", "Eve", "Fay")
    plan = [
        ("Ada", 1000, 1),
        ("Ben", 300, 10),
        ("Cy", 200, 20),
        ("Eve", 100, 30),
        ("Dora", 400, 300),
    ]
    for name, amount, ago in plan:
        session.add(buy(ids[name], amount, utcnow() - days(ago)))
    await session.commit()
    return ids


async def test_reports_read_the_snapshot_once_one_is_taken(session: AsyncSession) -> None:
    ids = await recent_buyers(session)
    live = await rfm_segments(session=session)
    assert not live.from_snapshot
    assert await refresh_rfm_snapshot(session=session) == 5
    snap = await rfm_segments(session=session)
    assert snap.from_snapshot
    assert (snap.segments, snap.top_revenue_share, snap.m_scores) == (
        live.segments,
        live.top_revenue_share,
        live.m_scores,
    )
    churn = await churn_risks(session=session)
    assert [c.name for c in churn.customers] == ["Dora"]
    assert churn.customers[0].reasons == ["valuable (M4) but no purchase for 300 days (R1)"]
    # A purchase after the snapshot shows after the next refresh.
    session.add(buy(ids["Fay"], 5000, utcnow()))
    await session.commit()
    assert (await rfm_segments(session=session)).customers == 5
    assert [c.name for c in await most_valuable_customers(session=session, limit=1)] == ["Ada"]
    assert await refresh_rfm_snapshot(session=session) == 6
    assert [c.name for c in await most_valuable_customers(session=session, limit=1)] == ["Fay"]


async def test_a_stale_snapshot_is_not_used(session: AsyncSession) -> None:
    await recent_buyers(session)
    await refresh_rfm_snapshot(session=session, now=utcnow() - SNAPSHOT_MAX_AGE - days(1))
    assert not (await rfm_segments(session=session)).from_snapshot
    # Nor one taken for another look-back window.
    await refresh_rfm_snapshot(session=session, window_days=30)
    assert not (await rfm_segments(session=session)).from_snapshot
    assert (await rfm_segments(session=session, window_days=30)).from_snapshot


async def test_explicit_times_always_rank_live(session: AsyncSession) -> None:
    await recent_buyers(session)
    await refresh_rfm_snapshot(session=session)
    assert not (await rfm_segments(session=session, now=utcnow())).from_snapshot
