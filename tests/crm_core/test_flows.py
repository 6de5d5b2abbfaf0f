import asyncio
from datetime import UTC, datetime, timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.db import SessionFactory
from crm_core.services.customers import identify_customer
from crm_core.services.flows import clear_flow, get_flow, purge_expired_flows, save_flow

T0 = datetime(2026, 4, 1, 8, 0, tzinfo=UTC)
TTL = timedelta(minutes=30)


async def _save(session: AsyncSession, chat: str, step: str, data: dict[str, object]) -> None:
    await save_flow(
        session=session,
        channel="telegram",
        chat_key=chat,
        customer_id=None,
        flow="complaint",
        step=step,
        data=data,
        ttl=TTL,
        now=T0,
    )


async def test_save_then_get_and_overwrite(session: AsyncSession) -> None:
    c = await identify_customer(session=session, channel="telegram", external_id="1")
    saved = await save_flow(
        session=session,
        channel="telegram",
        chat_key="100",
        customer_id=c.id,
        flow="complaint",
        step="category",
        data={},
        ttl=TTL,
        now=T0,
    )
    assert saved.expires_at == T0 + TTL
    await _save(session, "100", "describe", {"category": "delivery"})
    flow = await get_flow(session=session, channel="telegram", chat_key="100", now=T0)
    assert flow is not None
    assert (flow.step, flow.data, flow.customer_id) == ("describe", {"category": "delivery"}, None)


async def test_state_survives_a_restart(session_factory: SessionFactory) -> None:
    async with session_factory() as s:
        await _save(s, "7", "describe", {"category": "price", "text": "too expensive"})
    async with session_factory() as fresh:  # another process / instance
        flow = await get_flow(session=fresh, channel="telegram", chat_key="7", now=T0)
        assert flow is not None and flow.data["text"] == "too expensive"


async def test_expired_flow_reads_as_none_and_is_gone(session: AsyncSession) -> None:
    await _save(session, "1", "describe", {})
    later = T0 + TTL + timedelta(seconds=1)
    assert await get_flow(session=session, channel="telegram", chat_key="1", now=later) is None
    assert await get_flow(session=session, channel="telegram", chat_key="1", now=T0) is None


async def test_clear_and_purge(session: AsyncSession) -> None:
    await _save(session, "1", "a", {})
    await _save(session, "2", "a", {})
    await save_flow(
        session=session,
        channel="telegram",
        chat_key="3",
        customer_id=None,
        flow="complaint",
        step="a",
        data={},
        ttl=timedelta(days=1),
        now=T0,
    )
    assert await clear_flow(session=session, channel="telegram", chat_key="1") is True
    assert await clear_flow(session=session, channel="telegram", chat_key="1") is False
    purged = await purge_expired_flows(session=session, now=T0 + timedelta(hours=1))
    assert purged == 1
    assert await get_flow(session=session, channel="telegram", chat_key="3", now=T0) is not None


async def test_concurrent_saves_of_one_chat_leave_one_row(session_factory: SessionFactory) -> None:
    async def save(step: str) -> None:
        async with session_factory() as s:
            await _save(s, "55", step, {"step": step})

    await asyncio.wait_for(asyncio.gather(*(save(f"s{i}") for i in range(5))), 60)
    async with session_factory() as s:
        flow = await get_flow(session=s, channel="telegram", chat_key="55", now=T0)
        assert flow is not None and flow.data == {"step": flow.step}
        assert await purge_expired_flows(session=s, now=T0 + TTL) == 1


async def test_two_concurrent_clears_let_exactly_one_take_the_flow(
    session: AsyncSession, session_factory: SessionFactory
) -> None:
    """Two bot instances handling one double-tapped "Submit": only one may file."""
    customer = await identify_customer(session=session, channel="telegram", external_id="7")
    await save_flow(
        session=session,
        channel="telegram",
        chat_key="7",
        customer_id=customer.id,
        flow="complaint",
        step="confirm",
        data={"token": "t"},
        ttl=timedelta(minutes=30),
    )

    async def take() -> bool:
        async with session_factory() as own:
            # Read first, as the handler does (on PostgreSQL both may see the flow; SQLite
            # serialises the two, so the second may already find nothing).
            await get_flow(session=own, channel="telegram", chat_key="7")
            return await clear_flow(session=own, channel="telegram", chat_key="7")

    assert sorted(await asyncio.gather(take(), take())) == [False, True]
    assert await get_flow(session=session, channel="telegram", chat_key="7") is None
