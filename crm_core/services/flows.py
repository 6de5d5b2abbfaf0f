"""Multi-step conversations (e.g. filing a complaint) that survive restarts and are shared by
every bot instance: the state lives in the database, keyed by (channel, chat)."""

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.clock import as_utc, utcnow
from crm_core.models import FlowState
from crm_core.services._sql import dialect_insert, unit_of_work


async def get_flow(
    *, session: AsyncSession, channel: str, chat_key: str, now: datetime | None = None
) -> FlowState | None:
    """The chat's flow in progress; an expired one is deleted and reads as None."""
    async with unit_of_work(session):
        return await get_flow_no_commit(session, channel=channel, chat_key=chat_key, now=now)


async def get_flow_no_commit(
    session: AsyncSession, *, channel: str, chat_key: str, now: datetime | None = None
) -> FlowState | None:
    """:func:`get_flow` inside the caller's transaction."""
    now = as_utc(now or utcnow())
    params = {"channel": channel, "chat_key": chat_key}
    flow = (await session.exec(_BY_CHAT, params=params)).first()
    if flow is not None and as_utc(flow.expires_at) <= now:
        await session.delete(flow)
        await session.flush()
        return None
    return flow


async def save_flow(
    *,
    session: AsyncSession,
    channel: str,
    chat_key: str,
    customer_id: int | None,
    flow: str,
    step: str,
    data: dict[str, Any],
    ttl: timedelta,
    now: datetime | None = None,
) -> FlowState:
    """Create or replace the chat's flow state (an upsert, so two instances cannot collide)."""
    now = as_utc(now or utcnow())
    values = {
        "channel": channel,
        "chat_key": chat_key,
        "customer_id": customer_id,
        "flow": flow,
        "step": step,
        "data": dict(data),
        "expires_at": now + ttl,
        "updated_at": now,
    }
    insert = dialect_insert(session, FlowState).values(**values, created_at=now)
    stmt = insert.on_conflict_do_update(
        index_elements=["channel", "chat_key"],
        set_={k: insert.excluded[k] for k in values if k not in ("channel", "chat_key")},
    )
    async with unit_of_work(session):
        await session.exec(stmt)
        # populate_existing: the session may hold this row from an earlier read.
        query = _by_chat(channel, chat_key).execution_options(populate_existing=True)
        return (await session.exec(query)).one()


async def clear_flow(*, session: AsyncSession, channel: str, chat_key: str) -> bool:
    """End the chat's flow; True when there was one.

    One ``DELETE``, so it doubles as an atomic "take": when two bot instances handle the same
    button press (a double tap), exactly one of them gets True and goes on to act on the flow.
    """
    async with unit_of_work(session):
        result = await session.exec(
            delete(FlowState).where(
                col(FlowState.channel) == channel, col(FlowState.chat_key) == chat_key
            )
        )
    return bool(result.rowcount)


async def purge_expired_flows(*, session: AsyncSession, now: datetime | None = None) -> int:
    """Delete every expired flow; returns how many (for a periodic job)."""
    now = as_utc(now or utcnow())
    async with unit_of_work(session):
        result: Any = await session.exec(delete(FlowState).where(col(FlowState.expires_at) <= now))
        return int(result.rowcount or 0)


def _by_chat(channel: str, chat_key: str) -> Any:
    return select(FlowState).where(FlowState.channel == channel, FlowState.chat_key == chat_key)


# Built once (read for every inbound message); the values are bind parameters.
_BY_CHAT = select(FlowState).where(
    col(FlowState.channel) == bindparam("channel"), col(FlowState.chat_key) == bindparam("chat_key")
)
