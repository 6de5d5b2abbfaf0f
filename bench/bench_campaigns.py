"""Time campaign targeting, the start (freezing the segment with its hold-out) and the report
on a large base, in SQLite (not run by CI).

Builds N customers with a Telegram identity each (a third tagged vip, a tenth opted out, some
blocked, erased or without a chat) and about 3 purchases each, then times ``audience`` for a few
criteria, ``start_sending`` for everyone, a claim-and-mark cycle per recipient, and
``campaign_report``.

    python bench/bench_campaigns.py [--customers 100000] [--sqlite PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert
from sqlmodel import SQLModel

from crm_core.clock import utcnow
from crm_core.db import create_engine, create_session_factory
from crm_core.models import ChannelIdentity, Customer, Purchase
from crm_core.services.campaigns import (
    audience,
    campaign_report,
    claim_next,
    create_campaign,
    mark_sent,
    parse_criteria_text,
    start_sending,
)

CHUNK = 20_000


async def _build(url: str, customers: int) -> None:
    engine = create_engine(url)
    rng = random.Random(1)
    now = utcnow()
    async with engine.begin() as conn:
        await conn.run_sync(SQLModel.metadata.create_all)
        for start in range(1, customers + 1, CHUNK):
            ids = range(start, min(start + CHUNK, customers + 1))
            rows = [
                {
                    "id": i,
                    "name": f"Customer {i}",
                    "language": "de" if i % 4 == 0 else "en",
                    "tags": ["vip"] if i % 3 == 0 else [],
                    "last_seen_at": now - timedelta(days=i % 300),
                    "marketing_opt_out_at": now if i % 10 == 0 else None,
                    "unreachable_at": now if i % 50 == 1 else None,
                    "anonymized_at": now if i % 97 == 0 else None,
                    "identity_verified": False,
                    "created_at": now,
                    "updated_at": now,
                }
                for i in ids
            ]
            await conn.execute(insert(Customer), rows)
            await conn.execute(
                insert(ChannelIdentity),
                [
                    {"channel": "telegram", "external_id": str(10**9 + i), "customer_id": i,
                     "created_at": now, "updated_at": now}
                    for i in ids
                    if i % 13 != 0
                ],
            )  # fmt: skip
            await conn.execute(
                insert(Purchase),
                [
                    {"customer_id": i, "amount_minor": rng.randint(500, 20_000), "currency": "EUR",
                     "purchased_at": now - timedelta(days=rng.randint(0, 700)),
                     "created_at": now, "updated_at": now}
                    for i in ids
                    for _ in range(rng.randint(0, 6))
                ],
            )  # fmt: skip
    await engine.dispose()


async def _timed(label: str, work: Callable[[], Awaitable[Any]], table: list[str]) -> Any:
    started = time.perf_counter()
    result = await work()
    table.append(f"| {label} | {time.perf_counter() - started:8.3f} | {result} |")
    return result


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--sqlite", type=Path, default=None, help="database file (rebuilt)")
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="deskbot-bench-campaigns-")
    path = args.sqlite or Path(folder) / "bench.db"
    path.unlink(missing_ok=True)
    url = f"sqlite+aiosqlite:///{path}"
    started = time.perf_counter()
    await _build(url, args.customers)
    print(f"built {args.customers} customers in {time.perf_counter() - started:.1f} s ({path})")

    engine = create_engine(url)
    factory = create_session_factory(engine)
    table = ["| step | seconds | result |", "|---|---:|---|"]
    async with factory() as session:
        for criteria in ("all", "tag=vip language=de", "segment=Champions", "open_complaint=no"):
            await _timed(
                f"audience `{criteria}`",
                lambda c=criteria: _count(session, c),
                table,
            )
        campaign = await create_campaign(
            session=session,
            name="Bench",
            criteria=parse_criteria_text("all"),
            template="Hi",
            buttons=[],
            created_by=None,
        )
        assert campaign.id is not None
        campaign_id = campaign.id
        await _timed(
            "start_sending (freeze + hold-out)",
            lambda: start_sending(session=session, campaign_id=campaign_id),
            table,
        )
        await _timed(
            "claim + mark sent, 1000 recipients", lambda: _cycle(session, campaign_id, 1000), table
        )
        await _timed(
            "campaign_report",
            lambda: _report(session, campaign_id),
            table,
        )
    await engine.dispose()
    print("\n".join(table))


async def _count(session: Any, criteria: str) -> int:
    return (await audience(session=session, criteria=parse_criteria_text(criteria))).count


async def _cycle(session: Any, campaign_id: int, n: int) -> str:
    for _ in range(n):
        session.expunge_all()  # as the sender does
        claimed = await claim_next(session=session, campaign_id=campaign_id)
        assert claimed is not None
        await mark_sent(session=session, claimed=claimed)
    return f"{n} sent"


async def _report(session: Any, campaign_id: int) -> str:
    report = await campaign_report(session=session, campaign_id=campaign_id)
    return f"treatment {report.treatment.recipients}, hold-out {report.holdout.recipients}"


if __name__ == "__main__":
    asyncio.run(main())
