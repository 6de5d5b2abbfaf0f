from datetime import timedelta

import pytest
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.errors import InvalidInput
from crm_core.models import (
    Complaint,
    ComplaintCategory,
    ComplaintStatus,
    Customer,
    Handoff,
    HandoffStatus,
    Severity,
)
from crm_core.services.stats import complaint_stats
from tests.crm_core.desk_factories import T0

S = ComplaintStatus
C = ComplaintCategory
V = Severity
H = HandoffStatus
NOW = T0 + timedelta(hours=100)


def h(hours: float) -> timedelta:
    return timedelta(hours=hours)


def m(minutes: float) -> timedelta:
    return timedelta(minutes=minutes)


# (created, category, severity, status, first response after, resolved after, due after, reopens)
COMPLAINTS = [
    (h(0), C.delivery, V.high, S.open, None, None, h(24), 0),  # open past due
    (h(1), C.product, V.medium, S.in_progress, h(2), None, h(200), 0),
    (h(2), C.billing, V.critical, S.resolved, h(0.5), h(3), h(4), 0),
    (h(3), C.billing, V.low, S.closed, h(1), h(80), h(72), 0),  # resolved late
    (h(4), C.delivery, V.medium, S.open, h(4), None, h(48), 1),  # reopened, open past due
    (h(5), C.price, V.low, S.resolved, None, h(5), h(72), 0),
    (h(-10), C.product, V.high, S.closed, h(1), h(1), h(24), 2),  # before the window
]
# (requested, status, claimed after, csat score)
HANDOFFS = [
    (h(0), H.closed, m(5), 5),
    (h(1), H.closed, m(15), 2),
    (h(2), H.claimed, m(40), None),
    (h(3), H.waiting, None, None),
    (h(4), H.closed, None, 3),
    (h(-10), H.closed, m(1), 1),  # before the window
]


async def _dataset(session: AsyncSession) -> None:
    for i, (created, cat, sev, status, first, resolved, due, reopens) in enumerate(COMPLAINTS):
        customer = Customer(name=f"C{i}")
        session.add(customer)
        await session.flush()
        start = T0 + created
        session.add(
            Complaint(
                reference=f"C-{i + 1:06d}",
                customer_id=customer.id,
                category=cat,
                severity=sev,
                description="x",
                status=status,
                created_at=start,
                sla_due_at=start + due,
                first_response_at=start + first if first is not None else None,
                resolved_at=start + resolved if resolved is not None else None,
                reopen_count=reopens,
            )
        )
    for i, (requested, handoff_status, claimed, score) in enumerate(HANDOFFS):
        customer = Customer(name=f"H{i}")
        session.add(customer)
        await session.flush()
        start = T0 + requested
        session.add(
            Handoff(
                customer_id=customer.id,
                status=handoff_status,
                requested_at=start,
                claimed_at=start + claimed if claimed is not None else None,
                csat_score=score,
            )
        )
    await session.commit()


async def test_figures_for_a_window_are_exact(session: AsyncSession) -> None:
    await _dataset(session)
    stats = await complaint_stats(session=session, since=T0, until=T0 + h(10), now=NOW)

    assert stats.total == 6
    assert stats.by_status == {S.open: 2, S.in_progress: 1, S.resolved: 2, S.closed: 1}
    assert {k: v for k, v in stats.by_category.items() if v} == {
        C.delivery: 2,
        C.product: 1,
        C.billing: 2,
        C.price: 1,
    }
    assert stats.by_category[C.service] == 0
    assert stats.by_severity == {V.low: 2, V.medium: 2, V.high: 1, V.critical: 1}
    # First responses after 0.5, 1, 2 and 4 hours.
    assert stats.first_response.count == 4
    assert stats.first_response.median == h(1.5)
    assert stats.first_response.average == h(1.875)
    # Resolutions after 3, 5 and 80 hours.
    assert stats.resolution.count == 3
    assert stats.resolution.median == h(5)
    assert stats.resolution.average == h(88 / 3)
    assert (stats.sla_breached_open, stats.sla_breached_resolved, stats.sla_breaches) == (2, 1, 3)
    assert (stats.reopened, stats.ever_resolved, stats.reopen_rate) == (1, 4, 0.25)

    assert (stats.csat_count, stats.csat_average) == (3, pytest.approx(10 / 3))
    assert (stats.handoffs_waiting, stats.handoffs_claimed, stats.handoffs_closed) == (1, 1, 3)
    # Claimed after 5, 15 and 40 minutes.
    assert stats.wait_to_claim.count == 3
    assert stats.wait_to_claim.median == m(15)
    assert stats.wait_to_claim.average == m(20)


async def test_the_window_end_is_exclusive_and_no_window_means_everything(
    session: AsyncSession,
) -> None:
    await _dataset(session)
    upto_five = await complaint_stats(session=session, since=T0, until=T0 + h(5), now=NOW)
    assert upto_five.total == 5  # the complaint filed at exactly T0+5h is left out
    assert upto_five.by_category[C.price] == 0

    everything = await complaint_stats(session=session, now=NOW)
    assert everything.total == 7
    assert everything.reopened == 2 and everything.ever_resolved == 5
    assert everything.csat_count == 4 and everything.csat_average == pytest.approx(11 / 4)
    assert everything.handoffs_closed == 4


async def test_sla_breaches_depend_on_now(session: AsyncSession) -> None:
    await _dataset(session)
    early = await complaint_stats(session=session, since=T0, now=T0 + h(10))
    # Nothing unresolved is overdue yet; the late resolution is a breach whenever one looks.
    assert (early.sla_breached_open, early.sla_breached_resolved) == (0, 1)


async def test_an_empty_desk_has_zeros_and_no_averages(session: AsyncSession) -> None:
    stats = await complaint_stats(session=session, now=NOW)
    assert stats.total == 0 and set(stats.by_status.values()) == {0}
    assert stats.first_response.median is None and stats.resolution.average is None
    assert stats.reopen_rate is None and stats.csat_average is None
    assert stats.handoffs_waiting == 0 and stats.wait_to_claim.count == 0


async def test_a_backwards_period_is_refused(session: AsyncSession) -> None:
    with pytest.raises(InvalidInput, match="before its end"):
        await complaint_stats(session=session, since=T0, until=T0)
