import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import func
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.db import SessionFactory
from crm_core.models import Direction, Interaction, InteractionKind
from crm_core.services.customers import identify_customer, merge_customers
from crm_core.services.interactions import log_interaction, recent_interactions

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


async def _customer(session: AsyncSession, ext: str = "1") -> int:
    c = await identify_customer(session=session, channel="telegram", external_id=ext)
    assert c.id is not None
    return c.id


async def test_log_and_read_back_newest_last(session: AsyncSession) -> None:
    cid = await _customer(session)
    for i, kind in enumerate(
        [InteractionKind.message, InteractionKind.kb_answer, InteractionKind.message]
    ):
        await log_interaction(
            session=session,
            customer_id=cid,
            channel="telegram",
            direction=Direction.inbound,
            kind=kind,
            text=f"m{i}",
            details={"n": i},
            occurred_at=T0 + timedelta(minutes=i),
        )
    rows = await recent_interactions(session=session, customer_id=cid, limit=2)
    assert [r.text for r in rows] == ["m1", "m2"]
    only = await recent_interactions(
        session=session, customer_id=cid, kinds=[InteractionKind.kb_answer]
    )
    assert [(r.text, r.details) for r in only] == [("m1", {"n": 1})]


async def test_idempotency_key_returns_existing_row(session: AsyncSession) -> None:
    cid = await _customer(session)
    first = await log_interaction(
        session=session,
        customer_id=cid,
        channel="telegram",
        direction=Direction.inbound,
        kind=InteractionKind.message,
        text="hello",
        idempotency_key="tg:update:1",
    )
    again = await log_interaction(
        session=session,
        customer_id=cid,
        channel="telegram",
        direction=Direction.inbound,
        kind=InteractionKind.message,
        text="hello (redelivered)",
        idempotency_key="tg:update:1",
    )
    assert first.created and not again.created
    assert again.interaction.id == first.interaction.id
    assert again.interaction.text == "hello"
    assert len(await recent_interactions(session=session, customer_id=cid)) == 1


async def test_concurrent_duplicate_key_stores_one_row(session_factory: SessionFactory) -> None:
    async with session_factory() as s:
        cid = await _customer(s)

    async def deliver(n: int) -> tuple[bool, int | None]:
        async with session_factory() as s:
            logged = await log_interaction(
                session=s,
                customer_id=cid,
                channel="telegram",
                direction=Direction.inbound,
                kind=InteractionKind.message,
                text=f"copy {n}",
                idempotency_key="tg:update:99",
            )
            return logged.created, logged.interaction.id

    results = await asyncio.wait_for(asyncio.gather(*(deliver(n) for n in range(6))), 60)
    assert sum(created for created, _ in results) == 1
    assert len({row_id for _, row_id in results}) == 1
    async with session_factory() as s:
        count = (await s.exec(select(func.count()).select_from(Interaction))).one()
        assert count == 1


async def test_very_long_text_is_kept_whole(session: AsyncSession) -> None:
    cid = await _customer(session)
    text = "ä" * 200_000
    logged = await log_interaction(
        session=session,
        customer_id=cid,
        channel="telegram",
        direction=Direction.inbound,
        kind=InteractionKind.message,
        text=text,
    )
    session.expunge_all()
    stored = await session.get(Interaction, logged.interaction.id)
    assert stored is not None and stored.text == text


async def test_interactions_of_absorbed_customer_land_on_survivor(session: AsyncSession) -> None:
    a = await _customer(session, "1")
    b = await _customer(session, "2")
    await merge_customers(session=session, survivor_id=a, absorbed_id=b)
    logged = await log_interaction(
        session=session,
        customer_id=b,  # a stale id, e.g. from an old button
        channel="telegram",
        direction=Direction.inbound,
        kind=InteractionKind.message,
        text="late",
    )
    assert logged.interaction.customer_id == a
    texts = [i.text for i in await recent_interactions(session=session, customer_id=b)]
    assert texts[-1] == "late"
