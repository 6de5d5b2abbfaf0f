from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncEngine


async def test_all_tables_exist(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        names = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
    assert {
        "customer",
        "channel_identity",
        "interaction",
        "complaint",
        "complaint_event",
        "handoff",
        "agent",
        "purchase",
        "flow_state",
        "app_state",
    } <= names
