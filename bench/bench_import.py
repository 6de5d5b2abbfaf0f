"""Import benchmark: 100,000 customers and 1,000,000 purchases into SQLite and PostgreSQL.

    python bench/bench_import.py [--customers 100000] [--purchases 1000000] [--no-postgres]

The CSV files are generated deterministically (seeded) into a temporary folder. Each store is
measured in a fresh child process (so peak RSS is per store) on a fresh database brought to
the newest schema by the migrations. PostgreSQL: a throw-away database on the server named by
DESKBOT_TEST_POSTGRES_URL (default: the local server), skipped when unreachable.
Prints a markdown table: store, rows, seconds, rows/s, peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import multiprocessing
import os
import random
import resource
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crm_core import importer, migrate
from crm_core.db import create_engine, create_session_factory

POSTGRES_ADMIN_URL = os.environ.get(
    "DESKBOT_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
SEED = 20240531
LANGUAGES = ("en", "de", "fr", "es", "")
TAGS = ("vip", "newsletter", "b2b", "wholesale", "")


def generate(folder: Path, customers: int, purchases: int) -> tuple[Path, Path]:
    rng = random.Random(SEED)
    customers_csv = folder / "customers.csv"
    with customers_csv.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["customer_id", "Full Name", "Mobile", "E-Mail", "lang", "tags"])
        for n in range(1, customers + 1):
            tags = ";".join(t for t in rng.sample(TAGS, 2) if t)
            writer.writerow(
                [
                    f"C{n:07d}",
                    f"Customer {n}",
                    f"+49151{n:08d}",
                    f"customer{n}@example.com",
                    rng.choice(LANGUAGES),
                    tags,
                ]
            )
    purchases_csv = folder / "purchases.csv"
    start = datetime(2022, 1, 1, tzinfo=UTC)
    with purchases_csv.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["customer_id", "amount", "currency", "date", "order_id"])
        for n in range(1, purchases + 1):
            when = start + timedelta(seconds=rng.randrange(3 * 365 * 86400))
            writer.writerow(
                [
                    f"C{rng.randrange(1, customers + 1):07d}",
                    f"{rng.randrange(100, 50_000) / 100:.2f}",
                    "EUR",
                    when.strftime("%Y-%m-%dT%H:%M:%S"),
                    f"O{n:08d}",
                ]
            )
    return customers_csv, purchases_csv


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


async def _import_all(url: str, customers_csv: Path, purchases_csv: Path) -> list[dict[str, Any]]:
    await migrate.upgrade_database(url)
    engine = create_engine(url)
    results = []
    try:
        factory = create_session_factory(engine)
        for kind, path in (("customers", customers_csv), ("purchases", purchases_csv)):
            started, cpu = time.perf_counter(), _cpu_seconds()
            async with factory() as session:
                if kind == "customers":
                    report = await importer.import_customers(session=session, source=path)
                else:
                    report = await importer.import_purchases(session=session, source=path)
            seconds = time.perf_counter() - started
            assert not report.rejected, report.rejected[:5]
            results.append(
                {
                    "kind": kind,
                    "rows": report.created,
                    "seconds": seconds,
                    "cpu": _cpu_seconds() - cpu,
                    "peak_rss": _peak_rss_mib(),
                }
            )
        started, cpu = time.perf_counter(), _cpu_seconds()
        async with factory() as session:
            report = await importer.import_purchases(session=session, source=purchases_csv)
        assert report.unchanged == report.rows, report.summary()
        results.append(
            {
                "kind": "purchases again (no change)",
                "rows": report.rows,
                "seconds": time.perf_counter() - started,
                "cpu": _cpu_seconds() - cpu,
                "peak_rss": _peak_rss_mib(),
            }
        )
    finally:
        await engine.dispose()
    return results


def _child(url: str, customers_csv: Path, purchases_csv: Path, queue: Any) -> None:
    queue.put(asyncio.run(_import_all(url, customers_csv, purchases_csv)))


def measure(url: str, customers_csv: Path, purchases_csv: Path) -> list[dict[str, Any]]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(url, customers_csv, purchases_csv, queue))
    process.start()
    results: list[dict[str, Any]] = queue.get()
    process.join()
    return results


async def _admin(sql: str) -> None:
    admin = create_async_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(sql))
    finally:
        await admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--purchases", type=int, default=1_000_000)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        customers_csv, purchases_csv = generate(folder, args.customers, args.purchases)
        print(f"generated CSVs in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        stores = [("SQLite", f"sqlite+aiosqlite:///{folder / 'bench.db'}")]
        pg_name = f"deskbot_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        if not args.no_postgres:
            try:
                asyncio.run(_admin(f'CREATE DATABASE "{pg_name}"'))
                url = make_url(POSTGRES_ADMIN_URL).set(database=pg_name)
                stores.append(("PostgreSQL", url.render_as_string(hide_password=False)))
            except Exception as exc:  # any failure means "no server"
                print(f"PostgreSQL skipped: {exc}", file=sys.stderr)
        try:
            for store, url in stores:
                for result in measure(url, customers_csv, purchases_csv):
                    rows.append((store, result))
                    print(f"{store} {result}", file=sys.stderr)
        finally:
            if len(stores) > 1:
                asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)'))
    load = os.getloadavg()[0]
    print(f"{os.cpu_count()} CPUs, load average {load:.1f} at the end (CPU s: this process only)")
    print()
    print("| store | import | rows | seconds | rows/s | CPU s | peak RSS (MiB) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for store, r in rows:
        print(
            f"| {store} | {r['kind']} | {r['rows']:,} | {r['seconds']:.1f} | "
            f"{r['rows'] / r['seconds']:,.0f} | {r['cpu']:.1f} | {r['peak_rss']:.0f} |"
        )


if __name__ == "__main__":
    main()
