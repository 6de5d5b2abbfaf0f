"""Black-box crash measurement of issue 18 (not run by CI): the real ``deskbot run`` against the
fake Bot API, customers sending a stream of messages, one SIGKILL part-way, then a restart.
Prints how many updates Telegram considered delivered (confirmed) and what became of them.

    python bench/bench_crash.py [--customers 30] [--updates 372] [--duration 82]
                                [--kill-at 39] [--webhook] [--postgres URL] [--seed 1]

The defaults reproduce the issue's run (SQLite, polling, 372 updates over 82 s, killed at
39 s); ``--duration 20 --kill-at 9`` is a quicker version.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import socket
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text

from crm_core.db import create_engine
from crm_core.migrate import upgrade_database
from tests.bot.running import start_deskbot
from tests.fakes.bot_api import FakeBotAPI, FakeUser

PHRASES = [
    "How do I return an item?", "/help", "Where is my order?", "thanks",
    "Can I change my delivery address?", "What payment methods do you accept?", "hello",
    "How long does shipping take?",
]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _start(
    fake: FakeBotAPI, workdir: Path, url: str, webhook: bool, port: int
) -> asyncio.subprocess.Process:
    settings = {"database_url": url}
    args: list[str] = []
    if webhook:
        args = ["--webhook"]
        settings.update(
            webhook_url=f"http://127.0.0.1:{port}/hook", webhook_listen="127.0.0.1",
            webhook_port=str(port), webhook_secret_token="bench-secret",
        )  # fmt: skip
    since = len(fake.requests)
    process = await start_deskbot(fake, workdir, *args, **settings)
    await fake.wait_for_request("setWebhook" if webhook else "getUpdates", since=since, timeout=60)
    return process


async def main(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    workdir = Path(tempfile.mkdtemp(prefix="deskbot-crash-"))
    url = args.postgres or f"sqlite+aiosqlite:///{workdir / 'crash.db'}"
    if args.postgres:
        await upgrade_database(url)
    port = _free_port()
    async with FakeBotAPI() as fake:
        users = [FakeUser(id=9000 + n, first_name=f"C{n}") for n in range(args.customers)]
        process = await _start(fake, workdir, url, args.webhook, port)
        started = time.monotonic()
        gap = args.duration / args.updates

        async def stream() -> None:
            for n in range(args.updates):
                fake.push_message(rng.choice(users), rng.choice(PHRASES))
                await asyncio.sleep(max(0.0, started + (n + 1) * gap - time.monotonic()))

        feeding = asyncio.create_task(stream())
        await asyncio.sleep(args.kill_at)
        process.send_signal(signal.SIGKILL)
        await process.wait()
        confirmed_at_kill = len(fake.confirmed_update_ids)
        process = await _start(fake, workdir, url, args.webhook, port)
        await feeding
        pushed = set(fake._all_updates)
        await fake.wait_for(lambda: pushed <= set(fake.confirmed_update_ids), timeout=300)
        expected = Counter(
            fake.update_payload(u)["message"]["chat"]["id"] for u in fake.confirmed_update_ids
        )
        await fake.wait_for(
            lambda: all(len(fake.sent_to(c)) >= n for c, n in expected.items()), timeout=300
        )
        process.send_signal(signal.SIGINT)
        await process.communicate()
    engine = create_engine(url)
    async with engine.connect() as conn:
        keys = (
            await conn.execute(
                text("SELECT idempotency_key FROM interaction WHERE direction = 'in'")
            )
        ).scalars()
        logged = Counter(int(k.split(":")[1]) for k in keys if k and k.startswith("tg:"))
        cut_off = (
            await conn.execute(text("SELECT count(*) FROM inbox_update WHERE attempts > 1"))
        ).scalar_one()
    await engine.dispose()
    confirmed = set(fake.confirmed_update_ids)
    replies = {c: len(fake.sent_to(c)) for c in expected}
    extra = sum(max(0, replies[c] - n) for c, n in expected.items())
    missing = sum(max(0, n - replies[c]) for c, n in expected.items())
    mode = "webhook" if args.webhook else "polling"
    backend = "PostgreSQL" if args.postgres else "SQLite"
    rows = [
        ("mode / database", f"{mode} / {backend}"),
        ("updates sent", str(len(pushed))),
        ("confirmed to Telegram", f"{len(confirmed)} ({confirmed_at_kill} at the kill)"),
        ("logged (inbound Interaction)", str(len(set(logged) & confirmed))),
        ("confirmed but never logged", str(len(confirmed - set(logged)))),
        ("logged more than once", str(sum(1 for n in logged.values() if n > 1))),
        ("answers missing", str(missing)),
        ("answers sent twice", str(extra)),
        ("updates cut off by the kill", str(cut_off)),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=30)
    parser.add_argument("--updates", type=int, default=372)
    parser.add_argument("--duration", type=float, default=82.0)
    parser.add_argument("--kill-at", type=float, default=39.0)
    parser.add_argument("--webhook", action="store_true")
    parser.add_argument("--postgres", help="a migrated-or-empty PostgreSQL database URL")
    parser.add_argument("--seed", type=int, default=1)
    asyncio.run(main(parser.parse_args()))
