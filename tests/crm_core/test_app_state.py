from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.db import SessionFactory
from crm_core.services.app_state import get_state, set_state


async def test_missing_key_is_none(session: AsyncSession) -> None:
    assert await get_state(session=session, key="agents_group") is None


async def test_set_replaces_and_is_shared(session_factory: SessionFactory) -> None:
    async with session_factory() as a:
        await set_state(session=a, key="agents_group", value={"chat_id": -100})
        assert await get_state(session=a, key="agents_group") == {"chat_id": -100}
    async with session_factory() as b:
        await set_state(session=b, key="agents_group", value={"chat_id": -1009999999999})
    async with session_factory() as c:
        assert await get_state(session=c, key="agents_group") == {"chat_id": -1009999999999}
