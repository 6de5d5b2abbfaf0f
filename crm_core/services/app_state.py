"""Small key/value facts shared by every instance (e.g. the agents' group id after Telegram
migrated it to a supergroup)."""

from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.clock import utcnow
from crm_core.models import AppState
from crm_core.services._sql import dialect_insert, unit_of_work


async def get_state(*, session: AsyncSession, key: str) -> dict[str, Any] | None:
    async with unit_of_work(session):
        row = await session.get(AppState, key, populate_existing=True)
        return None if row is None else dict(row.value)


async def set_state(*, session: AsyncSession, key: str, value: dict[str, Any]) -> None:
    """Store ``value`` under ``key``, replacing what was there (an upsert: last write wins)."""
    insert = dialect_insert(session, AppState).values(
        key=key, value=dict(value), updated_at=utcnow()
    )
    stmt = insert.on_conflict_do_update(
        index_elements=["key"],
        set_={"value": insert.excluded.value, "updated_at": insert.excluded.updated_at},
    )
    async with unit_of_work(session):
        await session.exec(stmt)
