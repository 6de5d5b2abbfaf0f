"""End-to-end benchmark of the self-service path through the real stack, against a bare PTB
echo bot in the same run (not run by CI).

Each bot runs in its own process (``bench/e2e_bot.py``: PTB's ``run_polling``, the real HTTP
stack) against the strict fake Bot API (``tests/fakes/bot_api.py``) served from this process.
K customers each send M questions taken from the sample knowledge base's own phrasings (so
that the knowledge base answers each with one article); all K x M updates are queued at
once (a burst), as Telegram would hold them for a bot that polls. Measured per bot:

- replies/s from the first update queued to the last reply received;
- latency of each question, from its update being available to its reply reaching the fake
  (p50, p99, max);
- the bot process's CPU seconds (``/proc/<pid>/stat``) during the burst, per message;
- the bot process's RSS after start and after the burst.

Commands (one each; ``--json`` prints the figures as JSON instead of a table):

    python bench/bench_e2e.py self-service [--customers 50] [--questions 10]
                              [--db sqlite|postgres|both] [--profile DIR]
    python bench/bench_e2e.py burst [--updates 5000]      (500 customers x 10 questions)
    python bench/bench_e2e.py memory [--customers 100000]  (each asks once: RSS growth)

``--profile DIR`` records the deskbot process with py-spy during the burst (a flame graph
and the collapsed stacks in DIR) and prints the top costs. Fixed seeds; the SQLite file and
the PostgreSQL database (``deskbot_bench_e2e``) are removed afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict, deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import SQLModel

import crm_core.models  # noqa: F401  (the tables for create_all)
from crm_core.db import create_engine
from knowledge_base.holder import KnowledgeBaseHolder
from knowledge_base.models import Verdict
from tests.fakes.bot_api import FakeBotAPI, FakeUser

ROOT = Path(__file__).resolve().parent.parent
SEED = 13
BENCH_PG_DATABASE = "deskbot_bench_e2e"
DEFAULT_PG_ADMIN = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
FIRST_USER_ID = 700_000_000
# deskbot runs with an agents' forum group, as a desk does (the relay checks it per message).
AGENTS_GROUP = -1001000000777


# --------------------------------------------------------------------------------------------
# The load
# --------------------------------------------------------------------------------------------


def answered_questions() -> list[str]:
    """The sample knowledge base's phrasings that it answers with their own article."""
    holder, _problems = KnowledgeBaseHolder.load()
    questions = []
    for article in holder.kb.articles:
        for question in article.questions:
            result = holder.kb.search(question)
            best = result.best if result.verdict is Verdict.ANSWER else None
            if best is not None and best.article.id == article.id:
                questions.append(question)
    return questions


def plan(customers: int, questions: int) -> list[tuple[int, str]]:
    """(user id, text) in the order queued: round by round, each customer once a round."""
    rng = random.Random(SEED)
    pool = answered_questions()
    asked = {c: [rng.choice(pool) for _ in range(questions)] for c in range(customers)}
    return [
        (FIRST_USER_ID + c, asked[c][round_])
        for round_ in range(questions)
        for c in range(customers)
    ]


# --------------------------------------------------------------------------------------------
# The bot process
# --------------------------------------------------------------------------------------------


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def proc_rss_mb(pid: int) -> float:
    pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return pages * PAGE / 1e6


@dataclass
class Result:
    bot: str
    db: str
    messages: int
    replies: int
    seconds: float
    replies_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    cpu_ms_per_message: float
    rss_start_mb: float
    rss_end_mb: float


class Recorder:
    """Wraps the fake's sendMessage to timestamp each reply (per chat, in order)."""

    def __init__(self, fake: FakeBotAPI) -> None:
        self.fake = fake
        self.pushed: dict[int, deque[float]] = defaultdict(deque)
        self.latencies: list[float] = []
        self.replies = 0
        self.last_reply = 0.0
        self.done = asyncio.Event()
        self.expected = 0
        original = fake._api_sendMessage

        async def send_message(params: dict[str, Any], uploads: Any) -> dict[str, Any]:
            result = await original(params, uploads)
            now = time.perf_counter()
            queue = self.pushed.get(int(params["chat_id"]))
            if queue:
                self.latencies.append(now - queue.popleft())
                self.replies += 1
                self.last_reply = now
                if self.replies >= self.expected:
                    self.done.set()
            return result

        fake._api_sendMessage = send_message  # type: ignore[method-assign]


async def start_bot(
    kind: str, fake: FakeBotAPI, database_url: str | None
) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, str(ROOT / "bench" / "e2e_bot.py"), kind]
    cmd += ["--api-url", fake.api_url, "--token", fake.token]
    if database_url:
        cmd += ["--database-url", database_url, "--agent-chat-id", str(AGENTS_GROUP)]
    proc = subprocess.Popen(cmd, cwd=ROOT)  # noqa: ASYNC220 (returns at once)
    # Ready when it long-polls (getUpdates after start-up) and its RSS stops moving.
    deadline = time.monotonic() + 60
    while not any(r.method == "getUpdates" for r in fake.requests):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{kind} bot did not start (exit {proc.returncode})")
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    return proc


async def stop_bot(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    for _ in range(200):
        if proc.poll() is not None:
            return
        await asyncio.sleep(0.05)
    proc.kill()
    proc.wait()


def start_profiler(pid: int, out_dir: Path, label: str) -> subprocess.Popen[bytes] | None:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        print("py-spy not found (pip install py-spy): no profile", file=sys.stderr)
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [py_spy, "record", "--pid", str(pid), "--rate", "200", "--format", "raw", "--gil"]
    cmd += ["-o", str(out_dir / f"{label}.txt"), "--nonblocking"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def stop_profiler(profiler: subprocess.Popen[bytes] | None) -> None:
    if profiler is None:
        return
    profiler.send_signal(signal.SIGINT)
    for _ in range(200):
        if profiler.poll() is not None:
            return
        await asyncio.sleep(0.05)
    profiler.kill()


async def run_burst(
    kind: str, db: str, database_url: str | None, load: list[tuple[int, str]], profile: Path | None
) -> Result:
    async with FakeBotAPI() as fake:
        users = {uid: FakeUser(id=uid, first_name=f"C{uid % 100000}") for uid, _ in load}
        for user in users.values():
            fake.private_chat(user)
        fake.add_group(AGENTS_GROUP, "Agents", forum=True)
        recorder = Recorder(fake)
        recorder.expected = len(load)
        proc = await start_bot(kind, fake, database_url)
        profiler = None
        try:
            rss_start = proc_rss_mb(proc.pid)
            if profile is not None and kind == "desk":
                profiler = start_profiler(proc.pid, profile, f"{db}")
                await asyncio.sleep(0.5)
            cpu_start = proc_cpu_seconds(proc.pid)
            start = time.perf_counter()
            for uid, question in load:
                recorder.pushed[uid].append(time.perf_counter())
                fake.push_message(users[uid], question)
            timeout = max(60.0, len(load) / 5)
            try:
                await asyncio.wait_for(recorder.done.wait(), timeout)
            except TimeoutError:
                print(f"{kind}: only {recorder.replies}/{len(load)} replies", file=sys.stderr)
            cpu = proc_cpu_seconds(proc.pid) - cpu_start
            rss_end = proc_rss_mb(proc.pid)
            await stop_profiler(profiler)
        finally:
            await stop_bot(proc)
    seconds = recorder.last_reply - start
    lat = sorted(recorder.latencies) or [0.0]
    return Result(
        bot=kind,
        db=db,
        messages=len(load),
        replies=recorder.replies,
        seconds=round(seconds, 2),
        replies_per_s=round(recorder.replies / seconds, 1) if seconds > 0 else 0.0,
        p50_ms=round(statistics.median(lat) * 1000, 1),
        p99_ms=round(lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000, 1),
        max_ms=round(lat[-1] * 1000, 1),
        cpu_ms_per_message=round(cpu * 1000 / max(1, recorder.replies), 2),
        rss_start_mb=round(rss_start, 1),
        rss_end_mb=round(rss_end, 1),
    )


# --------------------------------------------------------------------------------------------
# Databases
# --------------------------------------------------------------------------------------------


async def fresh_schema(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(SQLModel.metadata.create_all)
    finally:
        await engine.dispose()


async def pg_database(admin_url: str, *, drop_only: bool = False) -> str:
    admin = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{BENCH_PG_DATABASE}" WITH (FORCE)'))
            if not drop_only:
                await conn.execute(text(f'CREATE DATABASE "{BENCH_PG_DATABASE}"'))
    finally:
        await admin.dispose()
    return make_url(admin_url).set(database=BENCH_PG_DATABASE).render_as_string(hide_password=False)


# --------------------------------------------------------------------------------------------
# Profile summary
# --------------------------------------------------------------------------------------------

# (label, substring of a frame) in priority order: a sample counts for the first that matches.
COST_CENTRES = [
    ("knowledge-base search", "knowledge_base/"),
    ("template rendering (Jinja2)", "jinja2/"),
    ("SQLAlchemy ORM/Core", "sqlalchemy/"),
    ("DB driver (aiosqlite/asyncpg/sqlite3)", "aiosqlite/"),
    ("DB driver (aiosqlite/asyncpg/sqlite3)", "asyncpg/"),
    ("pydantic / SQLModel", "pydantic"),
    ("pydantic / SQLModel", "sqlmodel/"),
    ("PTB request/response (httpx, JSON)", "httpx"),
    ("PTB request/response (httpx, JSON)", "httpcore"),
    ("PTB objects (de_json/to_dict)", "telegram/_"),
    ("PTB application/dispatch", "telegram/ext/"),
    ("logging", "logging/"),
    ("asyncio event loop", "asyncio/"),
]


def summarize_profile(path: Path, top: int = 12) -> list[tuple[str, float]]:
    """Shares of the on-CPU samples by cost centre (first match from the leaf up wins)."""
    if not path.exists():
        return []
    counts: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        frames = stack.split(";")
        count = int(n)
        total += count
        label = "other"
        for frame in reversed(frames):  # leaf first
            hit = next((name for name, needle in COST_CENTRES if needle in frame), None)
            if hit is not None:
                label = hit
                break
        counts[label] += count
    if not total:
        return []
    return [(label, round(100 * c / total, 1)) for label, c in counts.most_common(top)]


def summarize_functions(path: Path, top: int = 15) -> list[tuple[str, float]]:
    """Inclusive share of our own functions (handlers/, crm_core/, bot/) in the samples."""
    if not path.exists():
        return []
    counts: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        total += int(n)
        seen = set()
        for frame in stack.split(";"):
            if any(p in frame for p in ("handlers/", "crm_core/", "bot/app.py", "knowledge_base/")):
                name = frame.split(" (")[0] + " " + frame.split("/")[-1].split(":")[0].rstrip(")")
                if name not in seen:
                    seen.add(name)
                    counts[name] += int(n)
    if not total:
        return []
    return [(name, round(100 * c / total, 1)) for name, c in counts.most_common(top)]


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def table(results: list[Result]) -> str:
    head = ["bot", "db", "msgs", "replies", "s", "replies/s", "p50 ms", "p99 ms", "max ms",
            "CPU ms/msg", "RSS start MB", "RSS end MB"]  # fmt: skip
    rows = [head] + [[str(v) for v in asdict(r).values()] for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = [" | ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    if args.command == "burst":
        customers = max(1, args.updates // 10)
        load = plan(customers, 10)
    elif args.command == "memory":
        load = plan(args.customers, 1)
    else:
        load = plan(args.customers, args.questions)
    profile = Path(args.profile) if args.profile else None
    dbs = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    results: list[Result] = []
    echo = await run_burst("echo", "-", None, load, None)
    results.append(echo)
    for db in dbs:
        tmp = tempfile.mkdtemp(prefix="deskbot-bench-")
        try:
            if db == "sqlite":
                url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
            else:
                url = await pg_database(args.postgres)
            await fresh_schema(url)
            results.append(await run_burst("desk", db, url, load, profile))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            if db == "postgres":
                await pg_database(args.postgres, drop_only=True)
    ratios = {
        r.db: {
            "replies_per_s": round(r.replies_per_s / echo.replies_per_s, 2),
            "p99": round(r.p99_ms / echo.p99_ms, 2) if echo.p99_ms else None,
            "cpu_per_message": round(r.cpu_ms_per_message / echo.cpu_ms_per_message, 1),
        }
        for r in results[1:]
    }
    profiles = {}
    if profile is not None:
        for db in dbs:
            path = profile / f"{db}.txt"
            profiles[db] = {
                "cost_centres": summarize_profile(path),
                "functions": summarize_functions(path),
            }
    return {
        "command": args.command,
        "cores": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "results": [asdict(r) for r in results],
        "ratio_to_echo": ratios,
        "profile": profiles,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("self-service", "burst", "memory"):
        p = sub.add_parser(name)
        if name == "self-service":
            p.add_argument("--customers", type=int, default=50)
            p.add_argument("--questions", type=int, default=10)
        elif name == "memory":
            p.add_argument("--customers", type=int, default=100_000)
        else:
            p.add_argument("--updates", type=int, default=5000)
        p.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
        p.add_argument("--postgres", default=DEFAULT_PG_ADMIN, help="an admin URL (bench db made)")
        p.add_argument("--profile", help="record deskbot with py-spy into this folder")
        p.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = asyncio.run(main_async(args))
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{report['command']}: {report['cores']} cores, load average {report['load_average']}, "
          f"{report['date']}")  # fmt: skip
    print(table([Result(**r) for r in report["results"]]))
    for r in report["results"]:
        growth = r["rss_end_mb"] - r["rss_start_mb"]
        print(f"{r['bot']} ({r['db']}): RSS grew {growth:.1f} MB over {r['messages']} messages")
    for db, ratio in report["ratio_to_echo"].items():
        print(f"deskbot/echo on {db}: replies/s x{ratio['replies_per_s']}, p99 x{ratio['p99']}, "
              f"CPU per message x{ratio['cpu_per_message']}")  # fmt: skip
    for db, prof in report["profile"].items():
        print(f"\nprofile ({db}), share of on-CPU samples:")
        for label, share in prof["cost_centres"]:
            print(f"  {share:5.1f}%  {label}")
        print("  our functions (inclusive):")
        for label, share in prof["functions"]:
            print(f"  {share:5.1f}%  {label}")


if __name__ == "__main__":
    main()
