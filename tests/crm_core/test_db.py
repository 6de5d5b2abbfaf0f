"""The embedded SQLite store: WAL, a busy timeout, and writers that queue instead of failing."""

import asyncio
from pathlib import Path

from sqlalchemy import text

from crm_core.db import SQLITE_BUSY_TIMEOUT_MS, create_engine


async def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'd.db'}")
    try:
        async with engine.connect() as conn:
            mode = (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar()
            timeout = (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar()
            foreign_keys = (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar()
    finally:
        await engine.dispose()
    assert (mode, timeout, foreign_keys) == ("wal", SQLITE_BUSY_TIMEOUT_MS, 1)


async def test_a_second_writer_waits_for_the_first_instead_of_failing(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'd.db'}"
    first, second = create_engine(url), create_engine(url)
    try:
        async with first.begin() as conn:
            await conn.execute(text("CREATE TABLE t (who TEXT)"))
        holding = asyncio.Event()
        release = asyncio.Event()

        async def first_writer() -> None:
            async with first.begin() as conn:
                await conn.execute(text("INSERT INTO t VALUES ('first')"))
                holding.set()
                await asyncio.wait_for(release.wait(), timeout=10)

        async def second_writer() -> None:
            await asyncio.wait_for(holding.wait(), timeout=10)
            # Reads, then writes: without BEGIN IMMEDIATE this fails at once with "database
            # is locked" when the first writer holds the lock; now it queues.
            async with second.begin() as conn:
                (await conn.execute(text("SELECT count(*) FROM t"))).scalar()
                await conn.execute(text("INSERT INTO t VALUES ('second')"))

        holder = asyncio.create_task(first_writer())
        waiter = asyncio.create_task(second_writer())
        await asyncio.wait_for(holding.wait(), timeout=10)
        await asyncio.sleep(0.3)  # let the second writer reach the lock (if not, it still passes)
        assert not waiter.done()  # it is waiting, not failed
        release.set()
        await asyncio.wait_for(asyncio.gather(holder, waiter), timeout=20)
        async with second.connect() as conn:
            rows = (await conn.execute(text("SELECT * FROM t ORDER BY 1"))).scalars().all()
        assert rows == ["first", "second"]
    finally:
        await first.dispose()
        await second.dispose()
