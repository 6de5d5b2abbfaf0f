"""Medians and 90th percentiles are percentile_cont's, on both databases: many values, ties,
negative and sub-second durations, per group and overall."""

import random
from datetime import timedelta

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.models import Complaint
from crm_core.services._figures import dialect_name, seconds_between, spread, spreads
from tests.crm_core.desk_factories import T0


def percentile_cont(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (position - low) * (ordered[high] - ordered[low])


async def test_percentiles_match_percentile_cont(session: AsyncSession) -> None:
    rng = random.Random(7)
    durations: dict[int, list[float]] = {1: [], 2: [], 3: []}
    for i in range(1500):
        group = 1 + i % 3
        kind = i % 5
        if kind == 0:
            seconds = float(rng.choice([60, 3600]))  # ties
        elif kind == 1:
            seconds = round(rng.uniform(0, 2), 3)  # under a second and a few
        elif kind == 2 and group == 3:
            seconds = -float(rng.randint(1, 5000))  # answered "before" filing (bad clocks)
        else:
            seconds = round(rng.lognormvariate(8, 2), 3)
        durations[group].append(seconds)
        session.add(
            Complaint(
                reference=f"C-{i:06d}",
                category="other",
                description="x",
                created_at=T0,
                first_response_at=T0 + timedelta(seconds=seconds),
                assignee_id=None,
                reopen_count=group,  # the group, in a column the query can read
            )
        )
    await session.commit()
    value = seconds_between(
        dialect_name(session), col(Complaint.created_at), col(Complaint.first_response_at)
    ).label("v")
    grouped = await spreads(
        session, select(value, col(Complaint.reopen_count).label("g")), grouped=True
    )
    overall = await spread(session, select(value))
    everything = [v for values in durations.values() for v in values]
    for key, values in [*durations.items(), (None, everything)]:
        got = overall if key is None else grouped[key]
        assert got.count == len(values)
        for fraction, figure in ((0.5, got.median), (0.9, got.p90)):
            assert figure is not None
            expected = percentile_cont(values, fraction)
            assert abs(figure.total_seconds() - expected) < 0.002, (key, fraction)
