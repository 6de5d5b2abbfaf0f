import itertools
import random
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.models import Customer, Purchase
from crm_core.services.customers import identify_customer, merge_customers
from crm_core.services.purchases import record_purchase
from crm_core.services.rfm import (
    ABOUT_TO_SLEEP,
    AT_RISK,
    CANT_LOSE,
    CHAMPIONS,
    HIBERNATING,
    LOST,
    LOYAL,
    NEED_ATTENTION,
    NEW,
    POTENTIAL_LOYALIST,
    PROMISING,
    customer_rfm,
    invalidate_rfm_cache,
    refresh_rfm_cache,
    rfm_table,
    segment_for,
    tier_for,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)

# name: (days since last purchase, purchases in the window)
POPULATION = {
    "A": (1, 7),
    "B": (2, 1),
    "C": (3, 9),
    "D": (4, 2),
    "E": (5, 5),
    "F": (6, 3),
    "G": (7, 8),
    "H": (8, 4),
    "I": (9, 10),
    "J": (10, 1),
}
# (r, f, m, segment, tier), worked out by hand from the rank formulas in crm_core.services.rfm
EXPECTED = {
    "A": (5, 4, 4, CHAMPIONS, "top"),
    "B": (5, 1, 1, NEW, "medium"),
    "C": (4, 5, 5, LOYAL, "top"),
    "D": (4, 2, 2, POTENTIAL_LOYALIST, "medium"),
    "E": (3, 3, 3, NEED_ATTENTION, "medium"),
    "F": (3, 2, 2, ABOUT_TO_SLEEP, "medium"),
    "G": (2, 4, 4, AT_RISK, "high"),
    "H": (2, 3, 3, AT_RISK, "medium"),
    "I": (1, 5, 5, CANT_LOSE, "high"),
    "J": (1, 1, 1, LOST, "low"),
}


@pytest.fixture(autouse=True)
def _fresh_rfm_cache() -> Iterator[None]:
    invalidate_rfm_cache()
    yield
    invalidate_rfm_cache()


async def _build_population(session: AsyncSession) -> dict[str, int]:
    ids: dict[str, int] = {}
    for name, (days, count) in POPULATION.items():
        customer = Customer(name=name)
        session.add(customer)
        await session.flush()
        assert customer.id is not None
        ids[name] = customer.id
        for k in range(count):
            session.add(
                Purchase(
                    customer_id=customer.id,
                    amount_minor=1000,
                    currency="EUR",
                    purchased_at=NOW - timedelta(days=days, hours=k),
                )
            )
    # A refund lowers C's money but is not a purchase; J's old order is outside the window.
    session.add(
        Purchase(
            customer_id=ids["C"],
            amount_minor=-500,
            currency="EUR",
            purchased_at=NOW - timedelta(days=3, hours=1),
        )
    )
    session.add(
        Purchase(
            customer_id=ids["J"],
            amount_minor=90_000,
            currency="EUR",
            purchased_at=NOW - timedelta(days=400),
        )
    )
    session.add(Customer(name="never bought"))
    await session.commit()
    return ids


async def test_population_scores_and_segments(session: AsyncSession) -> None:
    ids = await _build_population(session)
    names = {v: k for k, v in ids.items()}

    table = await rfm_table(session=session, now=NOW)

    got = {names[s.customer_id]: (s.r, s.f, s.m, s.segment, s.tier) for s in table}
    assert got == EXPECTED
    assert [names[s.customer_id] for s in table] == list("CAIGEHDFBJ")
    by_name = {names[s.customer_id]: s for s in table}
    assert (by_name["C"].frequency, by_name["C"].monetary_minor) == (9, 8500)
    assert (by_name["J"].frequency, by_name["J"].monetary_minor) == (1, 1000)
    assert by_name["J"].recency_days == 10
    assert by_name["A"].currency == "EUR"
    assert [s.customer_id for s in await rfm_table(session=session, now=NOW, limit=3)] == [
        ids["C"],
        ids["A"],
        ids["I"],
    ]


async def test_single_customer_score_matches_the_table(session: AsyncSession) -> None:
    ids = await _build_population(session)
    table = {s.customer_id: s for s in await rfm_table(session=session, now=NOW)}
    for customer_id in ids.values():
        assert (
            await customer_rfm(session=session, customer_id=customer_id, now=NOW)
            == (table[customer_id])
        )


async def test_no_purchases_means_no_score(session: AsyncSession) -> None:
    c = await identify_customer(session=session, channel="telegram", external_id="1")
    assert c.id is not None
    assert await customer_rfm(session=session, customer_id=c.id, now=NOW) is None
    assert await rfm_table(session=session, now=NOW) == []


async def test_a_lone_buyer_is_new_and_mixed_currencies_are_flagged(
    session: AsyncSession,
) -> None:
    a = await identify_customer(session=session, channel="telegram", external_id="1")
    b = await identify_customer(session=session, channel="telegram", external_id="2")
    assert a.id and b.id
    await record_purchase(
        session=session,
        customer_id=b.id,
        amount_minor=100,
        currency="USD",
        purchased_at=NOW - timedelta(days=3),
    )
    score = await customer_rfm(session=session, customer_id=b.id, now=NOW)
    assert score is not None
    assert (score.r, score.f, score.m, score.segment, score.currency) == (5, 1, 1, NEW, "USD")
    await record_purchase(
        session=session,
        customer_id=a.id,
        amount_minor=100,
        currency="EUR",
        purchased_at=NOW - timedelta(days=1),
    )
    await merge_customers(session=session, survivor_id=a.id, absorbed_id=b.id)
    merged = await customer_rfm(session=session, customer_id=b.id, now=NOW)
    assert merged is not None
    assert (merged.customer_id, merged.frequency, merged.currency) == (a.id, 2, "XXX")


async def test_recorded_purchase_is_seen_at_once(session: AsyncSession) -> None:
    a = await identify_customer(session=session, channel="telegram", external_id="1")
    b = await identify_customer(session=session, channel="telegram", external_id="2")
    assert a.id and b.id
    for cid, amount in ((a.id, 100), (b.id, 200)):
        await record_purchase(
            session=session,
            customer_id=cid,
            amount_minor=amount,
            currency="EUR",
            purchased_at=NOW - timedelta(days=5),
        )
    before = await customer_rfm(session=session, customer_id=a.id, now=NOW)
    assert before is not None and before.m == 1
    await record_purchase(
        session=session,
        customer_id=a.id,
        amount_minor=1000,
        currency="EUR",
        purchased_at=NOW - timedelta(days=1),
    )
    after = await customer_rfm(session=session, customer_id=a.id, now=NOW)
    assert after is not None
    assert (after.r, after.f, after.m, after.monetary_minor) == (5, 3, 3, 1100)


@pytest.mark.parametrize(
    ("r", "f", "segment"),
    [
        (5, 5, CHAMPIONS),
        (5, 4, CHAMPIONS),
        (4, 4, LOYAL),
        (3, 5, LOYAL),
        (5, 2, POTENTIAL_LOYALIST),
        (4, 3, POTENTIAL_LOYALIST),
        (5, 1, NEW),
        (4, 1, PROMISING),
        (3, 3, NEED_ATTENTION),
        (3, 1, ABOUT_TO_SLEEP),
        (2, 3, AT_RISK),
        (1, 4, AT_RISK),
        (2, 5, CANT_LOSE),
        (1, 5, CANT_LOSE),
        (2, 2, HIBERNATING),
        (2, 1, HIBERNATING),
        (1, 2, LOST),
        (1, 1, LOST),
    ],
)
def test_segment_grid(r: int, f: int, segment: str) -> None:
    assert segment_for(r, f) == segment


def test_every_grid_cell_has_a_segment_and_tiers_are_ordered() -> None:
    cells = {segment_for(r, f) for r in range(1, 6) for f in range(1, 6)}
    assert len(cells) == 11
    assert [tier_for(5, 5, 5), tier_for(4, 3, 3), tier_for(3, 2, 2), tier_for(1, 1, 1)] == [
        "top",
        "high",
        "medium",
        "low",
    ]


async def test_random_populations_agree_and_form_quintiles(session: AsyncSession) -> None:
    """Ties everywhere (few distinct values): the per-customer path must still equal the table,
    and equal values must always get equal scores."""
    rng = random.Random(20260601)
    customers = [Customer(name=f"c{i}") for i in range(60)]
    session.add_all(customers)
    await session.flush()
    for c in customers:
        for _ in range(rng.randint(1, 4)):
            session.add(
                Purchase(
                    customer_id=c.id,
                    amount_minor=rng.choice([500, 1000, 1000, 2500, -200]),
                    currency="EUR",
                    purchased_at=NOW - timedelta(days=rng.choice([1, 1, 5, 30, 200, 500])),
                )
            )
    await session.commit()

    table = await rfm_table(session=session, now=NOW)

    for score in table:
        single = await customer_rfm(session=session, customer_id=score.customer_id, now=NOW)
        assert single == score
    for attr, score_attr in (("frequency", "f"), ("monetary_minor", "m"), ("recency_days", "r")):
        by_value: dict[int, set[int]] = {}
        for score in table:
            by_value.setdefault(getattr(score, attr), set()).add(getattr(score, score_attr))
        assert all(len(scores) == 1 for scores in by_value.values()), attr
    # more recent / more frequent never scores lower
    ordered = sorted(table, key=lambda s: s.recency_days)
    assert all(a.r >= b.r for a, b in itertools.pairwise(ordered))


async def test_distinct_values_split_into_even_quintiles(session: AsyncSession) -> None:
    customers = [Customer(name=f"c{i}") for i in range(50)]
    session.add_all(customers)
    await session.flush()
    for i, c in enumerate(customers):
        session.add(
            Purchase(
                customer_id=c.id,
                amount_minor=100 * (i + 1),
                currency="EUR",
                purchased_at=NOW - timedelta(days=i + 1),
            )
        )
    await session.commit()
    table = await rfm_table(session=session, now=NOW)
    assert Counter(s.m for s in table) == {1: 10, 2: 10, 3: 10, 4: 10, 5: 10}
    assert Counter(s.r for s in table) == {1: 10, 2: 10, 3: 10, 4: 10, 5: 10}
    assert await refresh_rfm_cache(session=session) == 50
