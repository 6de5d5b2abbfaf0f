"""Time RFM and the customer 360 view on a large base (not run by CI).

Builds 100k customers and 1M purchases (two years, skewed: a few heavy buyers, many one-timers)
in a SQLite file, and in PostgreSQL when reachable, then times ``rfm_table``,
``customer_rfm`` and ``get_customer_360``.

    python bench/bench_rfm.py [--customers 100000] [--purchases 1000000] [--sqlite PATH]
                              [--postgres URL | --no-postgres] [--rebuild]

The SQLite file is reused between runs when it already holds the requested population.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlmodel import SQLModel

from crm_core.db import create_engine, create_session_factory
from crm_core.models import (
    Customer,
    Direction,
    Interaction,
    InteractionKind,
    Purchase,
)
from crm_core.services.customer360 import get_customer_360
from crm_core.services.rfm import customer_rfm, invalidate_rfm_cache, rfm_table

NOW = datetime(2026, 6, 1, tzinfo=UTC)
CHUNK = 20_000
BENCH_PG_DATABASE = "deskbot_bench_rfm"
COVERING_INDEX = "ix_bench_purchase_rfm_covering"


async def _bench_database(admin_url: str) -> str:
    """URL of the bench's own PostgreSQL database (created once, kept for re-runs)."""
    admin = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            exists = (
                await conn.execute(
                    text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": BENCH_PG_DATABASE}
                )
            ).first()
            if exists is None:
                await conn.execute(text(f'CREATE DATABASE "{BENCH_PG_DATABASE}"'))
    finally:
        await admin.dispose()
    return make_url(admin_url).set(database=BENCH_PG_DATABASE).render_as_string(hide_password=False)


async def _populate(engine: AsyncEngine, customers: int, purchases: int) -> None:
    rng = random.Random(7)
    async with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            await conn.execute(text("DROP SCHEMA public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
        else:
            await conn.run_sync(SQLModel.metadata.drop_all)
        await conn.run_sync(SQLModel.metadata.create_all)
    created = NOW - timedelta(days=800)
    for start in range(0, customers, CHUNK):
        rows = [
            {
                "id": i + 1,
                "name": f"Customer {i + 1}",
                "tags": [],
                "identity_verified": False,
                "created_at": created,
                "updated_at": created,
            }
            for i in range(start, min(customers, start + CHUNK))
        ]
        async with engine.begin() as conn:
            await conn.execute(insert(Customer), rows)
    # Pareto-ish: weight ~ 1/rank, so some customers buy hundreds of times, most a few.
    weights = [1.0 / (k + 1) ** 0.8 for k in range(customers)]
    owners = rng.choices(range(1, customers + 1), weights=weights, k=purchases)
    for start in range(0, purchases, CHUNK):
        rows = [
            {
                "customer_id": owners[i],
                "amount_minor": rng.randint(-2000, 30000)
                if rng.random() < 0.02
                else rng.randint(500, 30000),
                "currency": "EUR",
                "purchased_at": NOW - timedelta(minutes=rng.randint(0, 730 * 24 * 60)),
                "created_at": created,
                "updated_at": created,
            }
            for i in range(start, min(purchases, start + CHUNK))
        ]
        async with engine.begin() as conn:
            await conn.execute(insert(Purchase), rows)
    async with engine.begin() as conn:
        await conn.execute(
            insert(Interaction),
            [
                {
                    "customer_id": 1 + (i % 1000),
                    "channel": "telegram",
                    "direction": Direction.inbound,
                    "kind": InteractionKind.message,
                    "text": "hello",
                    "details": {},
                    "occurred_at": NOW - timedelta(minutes=i),
                    "created_at": NOW,
                    "updated_at": NOW,
                }
                for i in range(50_000)
            ],
        )
        if engine.dialect.name == "postgresql":
            await conn.execute(text("SELECT setval('customer_id_seq', :n)"), {"n": customers})
            await conn.execute(text("ANALYZE"))
        else:
            await conn.execute(text("ANALYZE"))


async def _population(engine: AsyncEngine) -> tuple[int, int]:
    try:
        async with engine.connect() as conn:
            c = (await conn.execute(select(func.count()).select_from(Customer))).scalar_one()
            p = (await conn.execute(select(func.count()).select_from(Purchase))).scalar_one()
            return int(c), int(p)
    except Exception:
        return 0, 0


async def _time(fn: Callable[[], Awaitable[Any]], repeat: int) -> tuple[float, float]:
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        await fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples), max(samples)


async def _set_covering_index(engine: AsyncEngine, wanted: bool) -> None:
    """Optionally add an index that covers the RFM aggregate (not part of the schema)."""
    async with engine.begin() as conn:
        if wanted:
            await conn.execute(
                text(
                    f"CREATE INDEX IF NOT EXISTS {COVERING_INDEX} ON purchase "
                    "(customer_id, purchased_at, amount_minor, currency)"
                )
            )
        else:
            await conn.execute(text(f"DROP INDEX IF EXISTS {COVERING_INDEX}"))
        await conn.execute(text("ANALYZE"))


async def bench(
    url: str, customers: int, purchases: int, rebuild: bool, covering_index: bool
) -> list[tuple[str, ...]]:
    engine = create_engine(url)
    label = engine.dialect.name + (" +idx" if covering_index else "")
    try:
        if rebuild or await _population(engine) != (customers, purchases):
            t0 = time.perf_counter()
            await _populate(engine, customers, purchases)
            print(
                f"[{label}] built {customers} customers / {purchases} purchases "
                f"in {time.perf_counter() - t0:.1f} s",
                flush=True,
            )
        await _set_covering_index(engine, covering_index)
        factory = create_session_factory(engine)
        rng = random.Random(1)
        results: list[tuple[str, ...]] = []

        async def full() -> None:
            async with factory() as s:
                table = await rfm_table(session=s, now=NOW)
                assert len(table) > customers // 2

        async def top() -> None:
            async with factory() as s:
                await rfm_table(session=s, now=NOW, limit=50)

        async def one() -> None:
            async with factory() as s:
                await customer_rfm(session=s, customer_id=rng.randint(1, customers), now=NOW)

        async def view() -> None:
            async with factory() as s:
                await get_customer_360(session=s, customer_id=rng.randint(1, 1000), now=NOW)

        async def cold_one() -> None:
            invalidate_rfm_cache()
            await one()

        for name, fn, repeat in (
            ("rfm_table (all rows)", full, 3),
            ("rfm_table (limit 50)", top, 3),
            ("customer_rfm (cold cache)", cold_one, 3),
            ("customer_rfm (warm)", one, 20),
            ("get_customer_360 (warm)", view, 20),
        ):
            median, worst = await _time(fn, repeat)
            results.append((label, name, f"{median * 1000:.0f}", f"{worst * 1000:.0f}"))
            print(f"[{label}] {name}: median {median * 1000:.0f} ms", flush=True)
        return results
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--purchases", type=int, default=1_000_000)
    parser.add_argument("--sqlite", default="bench/.cache/rfm_bench.db")
    parser.add_argument(
        "--postgres",
        default="postgresql+asyncpg://postgres@127.0.0.1:5432/test",
        help="maintenance connection; the bench creates and uses its own database "
        f"{BENCH_PG_DATABASE!r} on that server",
    )
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument(
        "--covering-index",
        action="store_true",
        help="add an index on purchase(customer_id, purchased_at, amount_minor, currency)",
    )
    args = parser.parse_args()
    Path(args.sqlite).parent.mkdir(parents=True, exist_ok=True)
    urls = [f"sqlite+aiosqlite:///{args.sqlite}"]
    if not args.no_postgres:
        try:
            urls.append(asyncio.run(_bench_database(args.postgres)))
        except (OSError, DBAPIError) as exc:
            print(f"PostgreSQL unreachable, SQLite only: {exc}")
    rows: list[tuple[str, ...]] = []
    for url in urls:
        try:
            rows += asyncio.run(
                bench(url, args.customers, args.purchases, args.rebuild, args.covering_index)
            )
        except OSError as exc:
            print(f"skipping {url.split('://')[0]}: {exc}")
    print(f"\n{'database':<16}{'operation':<28}{'median ms':>10}{'max ms':>10}")
    for db, op, median, worst in rows:
        print(f"{db:<16}{op:<28}{median:>10}{worst:>10}")


if __name__ == "__main__":
    main()
