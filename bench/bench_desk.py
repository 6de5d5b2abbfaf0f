"""Time the desk services under concurrency and the supervisors' statistics (not run by CI).

On a fresh SQLite file, and on PostgreSQL when reachable:
- ``file_complaint`` from N concurrent sessions (references stay distinct and gap-free);
- ``claim_due_reminders`` by two concurrent sweepers over W waiting handoffs (each taken once);
- ``desk_report`` (the /stats figures, 365 days and the 365 before) over C complaints.

    python bench/bench_desk.py [--filers 50] [--filings 1000] [--waiting 2000]
                               [--complaints 100000] [--postgres URL | --no-postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlmodel import SQLModel

from crm_core.db import SessionFactory, create_engine, create_session_factory
from crm_core.models import Complaint, Customer, Handoff
from crm_core.periods import parse_period
from crm_core.services.analytics import desk_report
from crm_core.services.complaints import file_complaint
from crm_core.services.handoffs import claim_due_reminders

NOW = datetime(2026, 6, 1, tzinfo=UTC)
REMIND = timedelta(minutes=10)
CHUNK = 10_000
BENCH_PG_DATABASE = "deskbot_bench_desk"
STATUSES = ["open", "in_progress", "resolved", "closed"]
CATEGORIES = ["price", "product", "service", "delivery", "billing", "technical", "other"]
SEVERITIES = ["low", "medium", "high", "critical"]


async def _fresh_schema(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            await conn.execute(text("DROP SCHEMA public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
        await conn.run_sync(SQLModel.metadata.create_all)


async def _insert_chunks(engine: AsyncEngine, table: Any, rows: list[dict[str, Any]]) -> None:
    for start in range(0, len(rows), CHUNK):
        async with engine.begin() as conn:
            await conn.execute(insert(table), rows[start : start + CHUNK])


async def _customers(engine: AsyncEngine, count: int) -> None:
    rows = [{"name": f"Customer {i}", "tags": [], "created_at": NOW, "updated_at": NOW}
            for i in range(count)]  # fmt: skip
    await _insert_chunks(engine, Customer.__table__, rows)  # type: ignore[attr-defined]


async def bench_filing(factory: SessionFactory, filers: int, filings: int) -> str:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(filings):
        queue.put_nowait(i)
    references: list[str] = []

    async def filer() -> None:
        async with factory() as session:
            while not queue.empty():
                i = queue.get_nowait()
                complaint = await file_complaint(
                    session=session,
                    customer_id=1 + i % 100,
                    category="product",
                    description=f"Bench complaint {i}",
                )
                references.append(complaint.reference)

    start = time.perf_counter()
    await asyncio.gather(*(filer() for _ in range(filers)))
    elapsed = time.perf_counter() - start
    assert sorted(references) == [f"C-{n:06d}" for n in range(1, filings + 1)], "gap or duplicate"
    return f"file_complaint x{filings} from {filers} sessions: {filings / elapsed:.0f}/s"


async def bench_sweep(engine: AsyncEngine, factory: SessionFactory, waiting: int) -> str:
    rows = [{"customer_id": 101 + i, "status": "waiting", "requested_at": NOW,
             "next_reminder_at": NOW + REMIND, "reminders_sent": 0, "unreachable": False,
             "created_at": NOW, "updated_at": NOW} for i in range(waiting)]  # fmt: skip
    await _insert_chunks(engine, Handoff.__table__, rows)  # type: ignore[attr-defined]

    async def sweeper() -> int:
        taken = 0
        async with factory() as session:
            while due := await claim_due_reminders(
                session=session, now=NOW + REMIND, reminder_after=REMIND
            ):
                taken += len(due)
        return taken

    start = time.perf_counter()
    counts = await asyncio.gather(sweeper(), sweeper())
    elapsed = time.perf_counter() - start
    assert sum(counts) == waiting, f"taken {counts} of {waiting}"
    return f"2 sweepers over {waiting} due handoffs: {elapsed * 1000:.0f} ms (split {counts})"


async def bench_stats(engine: AsyncEngine, factory: SessionFactory, complaints: int) -> str:
    rng = random.Random(7)
    rows = []
    for i in range(complaints):
        created = NOW - timedelta(hours=rng.randint(1, 24 * 365))
        status = rng.choice(STATUSES)
        resolved = status in ("resolved", "closed")
        rows.append({
            "reference": f"B-{i:07d}", "customer_id": 1 + i % 100,
            "category": rng.choice(CATEGORIES), "severity": rng.choice(SEVERITIES),
            "description": "bench", "attachments": [],
            "status": status, "created_at": created, "updated_at": created,
            "sla_due_at": created + timedelta(hours=48), "reopen_count": int(rng.random() < 0.05),
            "first_response_at": created + timedelta(minutes=rng.randint(1, 600)),
            "resolved_at": created + timedelta(hours=rng.randint(1, 96)) if resolved else None,
        })  # fmt: skip
    await _insert_chunks(engine, Complaint.__table__, rows)  # type: ignore[attr-defined]
    async with factory() as session:
        start = time.perf_counter()
        period = parse_period("365d", now=NOW)
        report = await desk_report(session=session, period=period, now=NOW)
        elapsed = time.perf_counter() - start
    return f"desk_report over {report.current.opened} complaints: {elapsed * 1000:.0f} ms"


async def run(url: str, args: argparse.Namespace) -> None:
    engine = create_engine(url)
    try:
        await _fresh_schema(engine)
        await _customers(engine, 100 + args.waiting)
        factory = create_session_factory(engine)
        label = engine.dialect.name
        print(label, await bench_filing(factory, args.filers, args.filings), flush=True)
        print(label, await bench_sweep(engine, factory, args.waiting), flush=True)
        print(label, await bench_stats(engine, factory, args.complaints), flush=True)
    finally:
        await engine.dispose()


async def _pg_database(admin_url: str) -> str:
    admin = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{BENCH_PG_DATABASE}" WITH (FORCE)'))
            await conn.execute(text(f'CREATE DATABASE "{BENCH_PG_DATABASE}"'))
    finally:
        await admin.dispose()
    return make_url(admin_url).set(database=BENCH_PG_DATABASE).render_as_string(hide_password=False)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--filers", type=int, default=50)
    parser.add_argument("--filings", type=int, default=1000)
    parser.add_argument("--waiting", type=int, default=2000)
    parser.add_argument("--complaints", type=int, default=100_000)
    parser.add_argument("--postgres", default="postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        await run(f"sqlite+aiosqlite:///{Path(tmp) / 'bench_desk.db'}", args)
    if not args.no_postgres:
        try:
            url = await _pg_database(args.postgres)
        except OSError as exc:
            print(f"PostgreSQL skipped: {exc}")
            return
        await run(url, args)


if __name__ == "__main__":
    asyncio.run(main())
