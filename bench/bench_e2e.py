"""End-to-end benchmarks of deskbot through the real stack, against a bare PTB echo bot in the
same run (not run by CI).

Each bot runs in its own process (``bench/e2e_bot.py``): deskbot as ``deskbot run`` runs it
(``bot.runtime.serve``: the durable inbox, its getUpdates loop or webhook server, the inbox
workers, the real PTB HTTP stack, CRM logging, an agents' forum group), the echo bot as PTB's
``run_polling``; both against the strict fake Bot API (``bot/emulator.py``) served from this
process, with Telegram's limits off. Latency runs from an update being available (or posted,
for the webhook) to its answer reaching the fake; CPU and RSS are the bot process's own.

Commands (one each; ``--json`` prints the figures as JSON instead of tables):

    python bench/bench_e2e.py self-service [--customers 1000] [--questions 1]
                              [--paced-seconds 20] [--db sqlite|postgres|both]
    python bench/bench_e2e.py relay [--handoffs 200] [--messages 2] [--db ...]
    python bench/bench_e2e.py webhook [--customers 500] [--updates 1000] [--connections 40]
                              [--redeliver 0.05]             (two instances, PostgreSQL)
    python bench/bench_e2e.py memory [--customers 100000] [--window 100] [--db sqlite]
    python bench/bench_e2e.py burst [--updates 5000] [--db sqlite|postgres|both]

- **self-service**: K customers each ask M knowledge-base questions, all queued at once: the
  maximum throughput (answers/s) and latency, deskbot on each database and the echo bot; then
  deskbot again at half its own maximum, at a steady rate, for ``--paced-seconds``: p50/p99.
- **relay**: H handoffs opened and claimed first (not timed), then each customer and the agent
  of each handoff write M messages, all at once: relayed messages/s both ways, latency from
  sent to delivered in the other chat; the same messages to the echo bot (in the same chats).
- **webhook**: two deskbot processes in webhook mode on one PostgreSQL database; the fake
  posts each update to one of them (seeded random choice, ``--connections`` at once, as
  Telegram does) and a share of them again to the other one (a redelivery): updates/s, time
  to acknowledge, and, counted in the CRM, each update logged and answered exactly once.
- **memory**: N distinct customers send one message each, at most ``--window`` unanswered at a
  time (nothing queues up, so growth is what is kept per customer): the bot's RSS, sampled.
- **burst**: U updates (U/10 customers x 10 questions) queued at once and drained.

``--profile DIR`` records the deskbot process with py-spy (``pip install -e ".[bench]"``)
during the timed load and prints the top costs. Fixed seeds; the SQLite file and the PostgreSQL
database (``deskbot_bench_e2e_<pid>``) are removed afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.e2e_bot import WEBHOOK_SECRET
from bench.e2e_harness import (
    DEFAULT_PG_ADMIN,
    SEED,
    Msg,
    Offer,
    Phase,
    Recorder,
    bench_database,
    customers,
    desk_world,
    inbound_logged,
    offer,
    percentile,
    print_profiles,
    proc_rss_mb,
    profile_report,
    questions_plan,
    ratio,
    running_bot,
    scalar_rows,
    start_profiler,
    stop_profiler,
    table,
)
from tests.fakes.bot_api import FakeBotAPI, FakeChat, FakeUser, StoredMessage

P99_TARGET_MS = 100.0
RATIO_TARGET = 0.6


def dbs_of(args: argparse.Namespace) -> list[str]:
    return ["sqlite", "postgres"] if args.db == "both" else [args.db]


def row(bot: str, db: str, load: str, phase: Phase, **extra: Any) -> dict[str, Any]:
    return {"bot": bot, "db": db, "load": load, **asdict(phase), **extra}


async def profiled(
    pid: int, profile: Path | None, label: str, work: Callable[[], Awaitable[Phase]]
) -> Phase:
    profiler = start_profiler(pid, profile, label) if profile is not None else None
    if profiler is not None:
        await asyncio.sleep(0.5)
    try:
        return await work()
    finally:
        await stop_profiler(profiler)


# --------------------------------------------------------------------------------------------
# self-service and burst: knowledge-base questions
# --------------------------------------------------------------------------------------------


async def questions_run(
    kind: str,
    db: str,
    url: str | None,
    users: Sequence[FakeUser],
    load: Sequence[Msg],
    *,
    paced: Sequence[Msg] = (),
    paced_seconds: float = 0.0,
    profile: Path | None = None,
    runtime: str = "inbox",
) -> list[dict[str, Any]]:
    """The burst, then (with ``paced``) half the burst's rate for ``paced_seconds``."""
    rows = []
    async with FakeBotAPI() as fake:
        desk_world(fake, users)
        recorder = Recorder(fake)
        async with running_bot(kind, fake, url, runtime=runtime) as proc:
            rss_start = proc_rss_mb(proc.pid)
            how = Offer(pids=[proc.pid])
            burst = await profiled(proc.pid, profile, db, lambda: offer(fake, recorder, load, how))
            rss = {
                "rss_start_mb": round(rss_start, 1),
                "rss_end_mb": round(proc_rss_mb(proc.pid), 1),
            }
            rows.append(row(kind, db, "burst", burst, **rss))
            if paced and burst.replies_per_s:
                rate = burst.replies_per_s / 2
                count = min(len(paced), max(1, int(rate * paced_seconds)))
                steady = Offer(rate=rate, pids=[proc.pid])
                phase = await offer(fake, recorder, paced[:count], steady)
                rss = {
                    "rss_start_mb": rss["rss_end_mb"],
                    "rss_end_mb": round(proc_rss_mb(proc.pid), 1),
                }
                rows.append(row(kind, db, "half max", phase, **rss))
    return rows


async def questions_bench(
    args: argparse.Namespace, users: Sequence[FakeUser], rounds: int, paced_seconds: float
) -> dict[str, Any]:
    load = questions_plan(users, rounds)
    paced_rounds = max(1, math.ceil(2000 / len(users)))  # enough for any half-max rate
    paced = questions_plan(users, paced_rounds, seed=SEED + 1) if paced_seconds else []
    profile = Path(args.profile) if args.profile else None
    rows = await questions_run("echo", "-", None, users, load)
    for db in dbs_of(args):
        async with bench_database(db, args.postgres) as url:
            rows += await questions_run(
                "desk", db, url, users, load, paced=paced, paced_seconds=paced_seconds,
                profile=profile, runtime=args.runtime,
            )  # fmt: skip
    echo = rows[0]
    ratios = {
        r["db"]: {
            "replies_per_s": ratio(r["replies_per_s"], echo["replies_per_s"]),
            "p99": ratio(r["p99_ms"], echo["p99_ms"]),
            "cpu_per_message": ratio(r["cpu_ms_per_message"], echo["cpu_ms_per_message"]),
        }
        for r in rows
        if r["bot"] == "desk" and r["load"] == "burst"
    }
    targets = {}
    if paced_seconds:
        for r in rows:
            if r["bot"] == "desk" and r["load"] == "half max":
                targets[r["db"]] = {
                    f"ratio >= {RATIO_TARGET}": (ratios[r["db"]]["replies_per_s"] or 0)
                    >= RATIO_TARGET,
                    f"p99 at half max <= {P99_TARGET_MS:g} ms": r["p99_ms"] <= P99_TARGET_MS,
                }
    return {
        "results": rows,
        "ratio_to_echo": ratios,
        "targets": targets,
        "profile": profile_report(profile, dbs_of(args)) if profile else {},
    }


async def self_service(args: argparse.Namespace) -> dict[str, Any]:
    return await questions_bench(
        args, customers(args.customers), args.questions, args.paced_seconds
    )


async def burst(args: argparse.Namespace) -> dict[str, Any]:
    return await questions_bench(args, customers(max(1, args.updates // 10)), 10, 0.0)


# --------------------------------------------------------------------------------------------
# relay: open, claimed handoffs; customers and agents write at once
# --------------------------------------------------------------------------------------------


async def wait_count(
    fake: FakeBotAPI, since: int, wanted: Callable[[StoredMessage], bool], count: int
) -> list[StoredMessage]:
    deadline = time.monotonic() + max(60.0, count / 2)
    while True:
        found = [m for m in fake.messages[since:] if m.from_bot and wanted(m)]
        if len(found) >= count or time.monotonic() > deadline:
            if len(found) < count:
                raise RuntimeError(f"set-up: only {len(found)}/{count} messages")
            return found
        await asyncio.sleep(0.2)


async def open_claimed_handoffs(
    fake: FakeBotAPI, group: FakeChat, users: Sequence[FakeUser], agents: Sequence[FakeUser]
) -> dict[int, int]:
    """Each customer asks for a person, an agent claims the card: user id -> topic id."""
    since = len(fake.messages)
    for user in users:
        fake.push_message(user, "/human")
    cards = await wait_count(
        fake, since, lambda m: m.chat_id == group.id and "Handoff H-" in m.text, len(users)
    )
    topic_of: dict[int, int] = {}
    by_name = {u.first_name: u for u in users}
    since = len(fake.messages)
    for n, card in enumerate(cards):
        assert card.thread_id is not None
        name = group.topics[card.thread_id].name.split(" · ")[1]  # "🙋 H-5 · Name · waiting"
        topic_of[by_name[name].id] = card.thread_id
        fake.press(agents[n % len(agents)], card, "Claim")
    await wait_count(fake, since, lambda m: "took this conversation" in m.text, len(users))
    await asyncio.sleep(1.0)  # the last claims' commits
    return topic_of


def relay_plan(
    users: Sequence[FakeUser],
    agents: Sequence[FakeUser],
    group: FakeChat,
    topic_of: dict[int, int],
    rounds: int,
) -> list[Msg]:
    """Round by round: each customer writes once in their chat, their agent once in the topic."""
    load, token = [], 0
    for round_ in range(rounds):
        for n, user in enumerate(users):
            token += 1
            load.append(Msg(user, f"customer line {round_} tok{token}", f"tok{token}"))
            token += 1
            agent = agents[n % len(agents)]
            load.append(
                Msg(
                    agent,
                    f"agent line {round_} tok{token}",
                    f"tok{token}",
                    group,
                    topic_of[user.id],
                )
            )
    return load


async def relay_run(
    kind: str, db: str, url: str | None, args: argparse.Namespace, profile: Path | None
) -> dict[str, Any]:
    users = customers(args.handoffs)
    agents = [FakeUser(id=600_000_000 + n, first_name=f"Agent{n}") for n in range(args.agents)]
    async with FakeBotAPI() as fake:
        group = desk_world(fake, [*users, *agents])
        for agent in agents:
            fake.set_member(group.id, agent.id, "member")
        recorder = Recorder(fake)
        async with running_bot(kind, fake, url, runtime=args.runtime) as proc:
            if kind == "desk":
                topic_of = await open_claimed_handoffs(fake, group, users, agents)
            else:  # the echo bot answers in the same topics
                topic_of = {u.id: fake.add_topic(group.id, u.first_name).thread_id for u in users}
            load = relay_plan(users, agents, group, topic_of, args.messages)
            how = Offer(pids=[proc.pid])
            phase = await profiled(
                proc.pid, profile, f"relay-{db}", lambda: offer(fake, recorder, load, how)
            )
            directions = {k: sorted(v) for k, v in recorder.by_direction.items()}
    per_direction = {}
    for name, key in (("to group", "to_group"), ("to customer", "to_customer")):
        lat = directions.get(name, [])
        per_direction[key] = len(lat)
        per_direction[f"{key}_p99_ms"] = round(percentile(lat, 0.99) * 1000, 1)
    return row(kind, db, f"{args.handoffs} handoffs", phase, **per_direction)


async def relay(args: argparse.Namespace) -> dict[str, Any]:
    profile = Path(args.profile) if args.profile else None
    rows = [await relay_run("echo", "-", None, args, None)]
    for db in dbs_of(args):
        async with bench_database(db, args.postgres) as url:
            rows.append(await relay_run("desk", db, url, args, profile))
    echo = rows[0]
    ratios = {
        r["db"]: {
            "relayed_per_s": ratio(r["replies_per_s"], echo["replies_per_s"]),
            "p99": ratio(r["p99_ms"], echo["p99_ms"]),
        }
        for r in rows[1:]
    }
    labels = [f"relay-{db}" for db in dbs_of(args)]
    return {
        "results": rows,
        "ratio_to_echo": ratios,
        "profile": profile_report(profile, labels) if profile else {},
    }


# --------------------------------------------------------------------------------------------
# webhook: two instances on one PostgreSQL database
# --------------------------------------------------------------------------------------------


class TwoWebhookFake(FakeBotAPI):
    """The fake, with the bench posting the updates (to every registered webhook) instead of
    its own one-at-a-time delivery to the last registered one."""

    def __init__(self) -> None:
        super().__init__()
        self.webhooks: list[str] = []

    async def _api_setWebhook(self, params: dict[str, Any], _: Any) -> bool:
        self.webhooks.append(str(params["url"]))
        self.webhook_url = self.webhooks[-1]
        return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Poster:
    """Posts updates as Telegram does: ``connections`` at once, each until answered 2xx."""

    def __init__(self, fake: TwoWebhookFake, connections: int, redeliver: float) -> None:
        self.fake = fake
        self.rng = random.Random(SEED)
        self.redeliver = redeliver
        self.queue: asyncio.Queue[tuple[int, str]] = asyncio.Queue()
        self.ack_times: list[float] = []
        self.acked: set[int] = set()
        self.posts = 0
        self.redelivered = 0
        self.refused = 0
        self.connections = connections
        self.per_instance: dict[str, int] = {}

    def push(self, msg: Msg) -> None:
        """Offer's push: into the fake, then to one instance, chosen at random."""
        self.fake.push_message(msg.user, msg.text, chat=msg.chat, thread_id=msg.thread_id)
        update_id = int(self.fake._updates[-1]["update_id"])
        self.queue.put_nowait((update_id, self.rng.choice(self.fake.webhooks)))

    async def work(self, http: aiohttp.ClientSession) -> None:
        while True:
            update_id, url = await self.queue.get()
            payload = self.fake.update_payload(update_id)
            started = time.perf_counter()
            await self.post_until_acked(http, url, payload)
            self.ack_times.append(time.perf_counter() - started)
            self.acked.add(update_id)
            self.per_instance[url] = self.per_instance.get(url, 0) + 1
            if self.rng.random() < self.redeliver:  # "no answer in time": sent to the other one
                other = next(u for u in self.fake.webhooks if u != url)
                self.redelivered += 1
                await self.post_until_acked(http, other, payload)
            self.queue.task_done()

    async def post_until_acked(
        self, http: aiohttp.ClientSession, url: str, payload: dict[str, Any]
    ) -> None:
        while True:
            if await self.post(http, url, payload):
                return
            await asyncio.sleep(0.05)  # Telegram backs off, then posts again

    async def post(self, http: aiohttp.ClientSession, url: str, payload: dict[str, Any]) -> bool:
        self.posts += 1
        headers = {"X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET}
        try:
            async with http.post(url, json=payload, headers=headers) as resp:
                ok = 200 <= resp.status < 300
        except aiohttp.ClientError:
            ok = False
        if not ok:
            self.refused += 1
        return ok


async def webhook(args: argparse.Namespace) -> dict[str, Any]:
    users = customers(args.customers)
    load = questions_plan(users, max(1, math.ceil(args.updates / len(users))))[: args.updates]
    async with bench_database("postgres", args.postgres) as url:
        fake = TwoWebhookFake()
        async with fake:
            desk_world(fake, users)
            recorder = Recorder(fake)
            async with (
                running_bot("desk", fake, url, webhook_port=free_port()) as one,
                running_bot("desk", fake, url, webhook_port=free_port()) as two,
            ):
                poster = Poster(fake, args.connections, args.redeliver)
                async with aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=args.connections)
                ) as http:
                    workers = [
                        asyncio.create_task(poster.work(http)) for _ in range(args.connections)
                    ]
                    how = Offer(push=poster.push, pids=[one.pid, two.pid])
                    phase = await offer(fake, recorder, load, how)
                    await asyncio.wait_for(poster.queue.join(), 60)  # redeliveries too
                    for task in workers:
                        task.cancel()
                    await asyncio.gather(*workers, return_exceptions=True)
                await asyncio.sleep(1.0)  # answers still on their way would show as extra
            answers = {u.id: len(fake.sent_to(u.id)) for u in users}
        logged = await inbound_logged(url)
    wanted: dict[int, int] = {}
    for msg in load:
        wanted[msg.user.id] = wanted.get(msg.user.id, 0) + 1
    acks = sorted(poster.ack_times)
    pushed = set(fake._all_updates)
    result = {
        "instances": 2,
        "updates": len(load),
        "acknowledged": len(poster.acked),
        "posts": poster.posts,
        "redelivered_to_other": poster.redelivered,
        "refused_posts": poster.refused,
        "updates_per_s": phase.replies_per_s,
        "ack_p50_ms": round(percentile(acks, 0.5) * 1000, 1),
        "ack_p99_ms": round(percentile(acks, 0.99) * 1000, 1),
        "ack_max_ms": round((acks[-1] if acks else 0.0) * 1000, 1),
        "answer_p50_ms": phase.p50_ms,
        "answer_p99_ms": phase.p99_ms,
        "logged_once": sum(1 for u in pushed if logged.get(u) == 1),
        "logged_twice_or_more": sum(1 for n in logged.values() if n > 1),
        "acked_not_logged": len(poster.acked - set(logged)),
        "answers_missing": sum(max(0, n - answers[c]) for c, n in wanted.items()),
        "answers_extra": sum(max(0, answers[c] - n) for c, n in wanted.items()),
        "cpu_ms_per_update": phase.cpu_ms_per_message,
        "first_instance_share": round(
            poster.per_instance.get(fake.webhooks[0], 0) / max(1, len(poster.acked)), 2
        ),
    }
    result["duplicates"] = result["logged_twice_or_more"] + result["answers_extra"]
    result["losses"] = result["acked_not_logged"] + result["answers_missing"]
    return {"results": [result]}


# --------------------------------------------------------------------------------------------
# memory: distinct customers, one message each, nothing queued up
# --------------------------------------------------------------------------------------------


async def memory(args: argparse.Namespace) -> dict[str, Any]:
    users = customers(args.customers)
    load = questions_plan(users, 1)
    warm_at = max(1, len(users) // 50)
    marks = {warm_at, *(len(users) * k // 10 for k in range(1, 10))}
    samples: list[dict[str, Any]] = []
    async with bench_database(args.db, args.postgres) as url, FakeBotAPI() as fake:
        desk_world(fake, users)
        recorder = Recorder(fake)
        async with running_bot("desk", fake, url, runtime=args.runtime) as proc:
            started = time.monotonic()

            def sample(n: int) -> None:
                if n in marks:
                    samples.append({
                        "customers": n, "rss_mb": round(proc_rss_mb(proc.pid), 1),
                        "elapsed_s": round(time.monotonic() - started, 1),
                    })  # fmt: skip
                    if not args.json:
                        print(f"  {samples[-1]}", file=sys.stderr)

            samples.append(
                {"customers": 0, "rss_mb": round(proc_rss_mb(proc.pid), 1), "elapsed_s": 0.0}
            )
            how = Offer(window=args.window, on_progress=sample, pids=[proc.pid])
            phase = await offer(fake, recorder, load, how)
            await asyncio.sleep(1.0)
            samples.append({
                "customers": len(users), "rss_mb": round(proc_rss_mb(proc.pid), 1),
                "elapsed_s": round(time.monotonic() - started, 1),
            })  # fmt: skip
        customers_logged = await scalar_count(url, "SELECT count(*) FROM customer")
    samples.sort(key=lambda s: s["customers"])
    warm = next(s for s in samples if s["customers"] == warm_at)
    end = samples[-1]
    per_10k = (end["rss_mb"] - warm["rss_mb"]) / max(1, (len(users) - warm_at)) * 10_000
    summary = {
        "bot": "desk", "db": args.db, "customers": len(users), "in_crm": customers_logged,
        "answers": phase.replies, "seconds": phase.seconds, "answers_per_s": phase.replies_per_s,
        "rss_start_mb": samples[0]["rss_mb"], "rss_warm_mb": warm["rss_mb"],
        "rss_end_mb": end["rss_mb"], "growth_mb": round(end["rss_mb"] - samples[0]["rss_mb"], 1),
        "growth_after_warm_mb": round(end["rss_mb"] - warm["rss_mb"], 1),
        "mb_per_10k_after_warm": round(per_10k, 2),
    }  # fmt: skip
    return {"results": [summary], "samples": samples}


async def scalar_count(url: str, sql: str) -> int:
    return int((await scalar_rows(url, sql))[0])


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------

COMMANDS: dict[str, Callable[[argparse.Namespace], Coroutine[Any, Any, dict[str, Any]]]] = {
    "self-service": self_service,
    "relay": relay,
    "webhook": webhook,
    "memory": memory,
    "burst": burst,
}


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--postgres", default=DEFAULT_PG_ADMIN, help="an admin URL (bench db made)")
    common.add_argument("--profile", help="record deskbot with py-spy into this folder")
    common.add_argument("--json", action="store_true")
    common.add_argument(
        "--runtime", choices=["inbox", "ptb"], default="inbox",
        help="deskbot as `deskbot run` runs it (inbox), or under PTB's run_polling (no inbox)",
    )  # fmt: skip
    dbs = ["sqlite", "postgres", "both"]
    p = sub.add_parser("self-service", parents=[common])
    p.add_argument("--customers", type=int, default=1000)
    p.add_argument("--questions", type=int, default=1)
    p.add_argument("--paced-seconds", type=float, default=20.0)
    p.add_argument("--db", choices=dbs, default="both")
    p = sub.add_parser("relay", parents=[common])
    p.add_argument("--handoffs", type=int, default=200)
    p.add_argument("--agents", type=int, default=20)
    p.add_argument("--messages", type=int, default=2, help="each customer's and agent's")
    p.add_argument("--db", choices=dbs, default="both")
    p = sub.add_parser("webhook", parents=[common])
    p.add_argument("--customers", type=int, default=500)
    p.add_argument("--updates", type=int, default=1000)
    p.add_argument("--connections", type=int, default=40)
    p.add_argument("--redeliver", type=float, default=0.05, help="share posted to both")
    p = sub.add_parser("memory", parents=[common])
    p.add_argument("--customers", type=int, default=100_000)
    p.add_argument("--window", type=int, default=100, help="unanswered messages at most")
    p.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    p = sub.add_parser("burst", parents=[common])
    p.add_argument("--updates", type=int, default=5000)
    p.add_argument("--db", choices=dbs, default="sqlite")
    return parser


def print_report(report: dict[str, Any]) -> None:
    print(f"{report['command']}: {report['cores']} cores, load average {report['load_average']}, "
          f"{report['date']}, {report['wall_s']} s")  # fmt: skip
    print(table(report["results"]))
    if report.get("samples"):
        print("\nRSS samples:\n" + table(report["samples"]))
    for db, ratios in report.get("ratio_to_echo", {}).items():
        print(f"deskbot/echo on {db}: " + ", ".join(f"{k} x{v}" for k, v in ratios.items()))
    for db, checks in report.get("targets", {}).items():
        print(
            f"targets on {db}: "
            + ", ".join(f"{k}: {'met' if ok else 'MISSED'}" for k, ok in checks.items())
        )
    print_profiles(report.get("profile", {}))


def main() -> None:
    args = parser().parse_args()
    started = time.monotonic()
    load_before = [round(x, 2) for x in os.getloadavg()]
    report = asyncio.run(COMMANDS[args.command](args))
    report = {
        "command": args.command,
        "cores": os.cpu_count(),
        "load_average": load_before,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "wall_s": round(time.monotonic() - started, 1),
        **report,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)


if __name__ == "__main__":
    main()
