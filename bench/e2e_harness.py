"""The harness of ``bench/bench_e2e.py``: the load, the bot processes (``bench/e2e_bot.py``)
against the fake Bot API served from the bench process, timing each answer, the databases,
the py-spy profile and the printed tables. Not run by itself.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict, deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from crm_core.db import create_engine
from crm_core.migrate import upgrade_database
from knowledge_base.holder import KnowledgeBaseHolder
from knowledge_base.models import Verdict
from tests.fakes.bot_api import FakeBotAPI, FakeChat, FakeUser

ROOT = Path(__file__).resolve().parent.parent
SEED = 13
# Per run: another checkout running this bench at the same time must not drop our database.
BENCH_PG_DATABASE = f"deskbot_bench_e2e_{os.getpid()}"
DEFAULT_PG_ADMIN = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
FIRST_USER_ID = 700_000_000
# deskbot runs with an agents' forum group, as a desk does (the relay checks it per message).
AGENTS_GROUP = -1001000000777
TOKEN = re.compile(r"\btok(\d+)\b")


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


@dataclass(frozen=True)
class Msg:
    """One message a person sends; ``key`` is what its answer is matched by: the private chat
    (its oldest unanswered message) or a ``tokN`` token the answer repeats."""

    user: FakeUser
    text: str
    key: int | str
    chat: FakeChat | None = None  # None: the user's private chat
    thread_id: int | None = None


def customers(count: int, first: int = FIRST_USER_ID) -> list[FakeUser]:
    return [FakeUser(id=first + n, first_name=f"C{first + n}") for n in range(count)]


def questions_plan(users: Sequence[FakeUser], rounds: int, *, seed: int = SEED) -> list[Msg]:
    """Knowledge-base questions, round by round, each customer once a round."""
    rng = random.Random(seed)
    pool = answered_questions()
    return [Msg(u, rng.choice(pool), u.id) for _ in range(rounds) for u in users]


# --------------------------------------------------------------------------------------------
# The bot process
# --------------------------------------------------------------------------------------------


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def proc_rss_mb(pid: int) -> float:
    pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return pages * PAGE / 1e6


async def start_bot(
    kind: str,
    fake: FakeBotAPI,
    database_url: str | None = None,
    *,
    runtime: str = "inbox",
    webhook_port: int | None = None,
) -> subprocess.Popen[bytes]:
    """``bench/e2e_bot.py`` in its own process; returns once it polls (or set its webhook)."""
    cmd = [sys.executable, str(ROOT / "bench" / "e2e_bot.py"), kind]
    cmd += ["--api-url", fake.api_url, "--token", fake.token]
    if database_url:
        cmd += ["--database-url", database_url, "--agent-chat-id", str(AGENTS_GROUP)]
        cmd += ["--runtime", runtime]
    if webhook_port:
        cmd += ["--webhook-port", str(webhook_port)]
    ready = "setWebhook" if webhook_port else "getUpdates"
    since = len(fake.requests)
    proc = subprocess.Popen(cmd, cwd=ROOT)  # noqa: ASYNC220 (returns at once)
    deadline = time.monotonic() + 90
    while not any(r.method == ready for r in fake.requests[since:]):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"{kind} bot did not start (exit {proc.returncode})")
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # its RSS settles
    return proc


async def stop_bot(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    for _ in range(400):
        if proc.poll() is not None:
            return
        await asyncio.sleep(0.05)
    proc.kill()
    proc.wait()


@asynccontextmanager
async def running_bot(
    kind: str, fake: FakeBotAPI, database_url: str | None = None, **options: Any
) -> AsyncIterator[subprocess.Popen[bytes]]:
    proc = await start_bot(kind, fake, database_url, **options)
    try:
        yield proc
    finally:
        await stop_bot(proc)


def desk_world(fake: FakeBotAPI, users: Iterable[FakeUser]) -> FakeChat:
    """The customers' private chats and the agents' forum group, in the fake."""
    for user in users:
        fake.private_chat(user)
    return fake.add_group(AGENTS_GROUP, "Agents", forum=True)


# --------------------------------------------------------------------------------------------
# Timing answers
# --------------------------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], share: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * share))]


@dataclass
class Phase:
    """What one offered load gave: answers, rate and latency (ms)."""

    messages: int
    replies: int
    seconds: float
    replies_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    cpu_ms_per_message: float = 0.0
    offered_per_s: float | None = None


class Recorder:
    """Wraps the fake's sendMessage and copyMessage to time each answer against the message it
    answers: by the ``tokN`` token it repeats, else the chat's oldest unanswered message."""

    def __init__(self, fake: FakeBotAPI) -> None:
        self.waiting: dict[int | str, deque[float]] = defaultdict(deque)
        self.latencies: list[float] = []
        self.by_direction: dict[str, list[float]] = defaultdict(list)  # latencies
        self.replies = 0
        self.last_reply = 0.0
        self.expected = 0
        self.done = asyncio.Event()
        self.answered = asyncio.Event()  # set at each answer (closed-loop feeding)
        for method in ("_api_sendMessage", "_api_copyMessage"):
            self._wrap(fake, method)

    def begin(self, expected: int) -> None:
        self.waiting.clear()
        self.latencies = []
        self.by_direction.clear()
        self.replies = 0
        self.expected = expected
        self.done.clear()

    def sent(self, key: int | str) -> None:
        self.waiting[key].append(time.perf_counter())

    def _wrap(self, fake: FakeBotAPI, method: str) -> None:
        original = getattr(fake, method)

        async def recorded(params: dict[str, Any], uploads: Any) -> dict[str, Any]:
            result = await original(params, uploads)
            found = TOKEN.search(str(params.get("text") or params.get("caption") or ""))
            chat = int(params["chat_id"])
            key: int | str = f"tok{found.group(1)}" if found else chat
            queue = self.waiting.get(key)
            if queue:
                now = time.perf_counter()
                latency = now - queue.popleft()
                self.latencies.append(latency)
                self.by_direction["to group" if chat < 0 else "to customer"].append(latency)
                self.replies += 1
                self.last_reply = now
                self.answered.set()
                if self.replies >= self.expected:
                    self.done.set()
            return result

        setattr(fake, method, recorded)

    def phase(self, messages: int, start: float, cpu_seconds: float) -> Phase:
        seconds = self.last_reply - start if self.replies else 0.0
        lat = sorted(self.latencies)
        return Phase(
            messages=messages,
            replies=self.replies,
            seconds=round(seconds, 2),
            replies_per_s=round(self.replies / seconds, 1) if seconds > 0 else 0.0,
            p50_ms=round(percentile(lat, 0.5) * 1000, 1),
            p99_ms=round(percentile(lat, 0.99) * 1000, 1),
            max_ms=round((lat[-1] if lat else 0.0) * 1000, 1),
            cpu_ms_per_message=round(cpu_seconds * 1000 / max(1, self.replies), 2),
        )


@dataclass
class Offer:
    """How a load is offered: all at once (a burst), at a steady ``rate`` (messages/s), or
    closed-loop with at most ``window`` unanswered (nothing queues up: per-customer memory)."""

    rate: float | None = None
    window: int | None = None
    on_progress: Callable[[int], None] | None = None
    push: Callable[[Msg], None] | None = None  # default: into the fake's update queue
    pids: list[int] = field(default_factory=list)  # whose CPU to count


def push_into(fake: FakeBotAPI) -> Callable[[Msg], None]:
    def push(msg: Msg) -> None:
        fake.push_message(msg.user, msg.text, chat=msg.chat, thread_id=msg.thread_id)

    return push


async def offer(fake: FakeBotAPI, recorder: Recorder, load: Sequence[Msg], how: Offer) -> Phase:
    """Offer ``load`` and wait for its answers (or a timeout proportional to its size)."""
    push = how.push or push_into(fake)
    recorder.begin(len(load))
    cpu_start = sum(proc_cpu_seconds(pid) for pid in how.pids)
    start = time.perf_counter()
    for n, msg in enumerate(load):
        if how.rate:
            await asyncio.sleep(max(0.0, start + n / how.rate - time.perf_counter()))
        elif how.window:
            while n - recorder.replies >= how.window:
                recorder.answered.clear()
                try:
                    await asyncio.wait_for(recorder.answered.wait(), 60)
                except TimeoutError:
                    break
        recorder.sent(msg.key)
        push(msg)
        if how.on_progress is not None:
            how.on_progress(n)
    timeout = max(60.0, len(load) / 5)
    try:
        await asyncio.wait_for(recorder.done.wait(), timeout)
    except TimeoutError:
        print(f"only {recorder.replies}/{len(load)} answers", file=sys.stderr)
    cpu = sum(proc_cpu_seconds(pid) for pid in how.pids) - cpu_start
    result = recorder.phase(len(load), start, cpu)
    if how.rate:
        result.offered_per_s = round(how.rate, 1)
    return result


# --------------------------------------------------------------------------------------------
# Databases
# --------------------------------------------------------------------------------------------


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


@asynccontextmanager
async def bench_database(db: str, admin_url: str) -> AsyncIterator[str]:
    """A fresh, migrated database (SQLite file or ``deskbot_bench_e2e_<pid>``), dropped after."""
    tmp = tempfile.mkdtemp(prefix="deskbot-bench-")
    try:
        if db == "sqlite":
            url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        else:
            url = await pg_database(admin_url)
        await upgrade_database(url)
        yield url
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if db == "postgres":
            await pg_database(admin_url, drop_only=True)


async def scalar_rows(url: str, sql: str) -> list[Any]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(text(sql))).scalars())
    finally:
        await engine.dispose()


async def inbound_logged(url: str) -> Counter[int]:
    """How often each Telegram update was logged as an inbound Interaction (exactly once)."""
    keys = await scalar_rows(url, "SELECT idempotency_key FROM interaction WHERE direction = 'in'")
    return Counter(int(k.split(":")[1]) for k in keys if k and k.startswith("tg:"))


# --------------------------------------------------------------------------------------------
# Profile
# --------------------------------------------------------------------------------------------


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
    ("webhook server (aiohttp)", "aiohttp/"),
    ("logging", "logging/"),
    ("asyncio event loop", "asyncio/"),
]
OUR_CODE = ("handlers/", "crm_core/", "bot/app.py", "bot/inbox_runtime.py", "knowledge_base/")


def _samples(path: Path) -> Iterable[tuple[list[str], int]]:
    if not path.exists():
        return
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if n.isdigit():
            yield stack.split(";"), int(n)


def summarize_profile(path: Path, top: int = 12) -> list[tuple[str, float]]:
    """Shares of the on-CPU samples by cost centre (first match from the leaf up wins)."""
    counts: Counter[str] = Counter()
    for frames, count in _samples(path):
        label = "other"
        for frame in reversed(frames):  # leaf first
            hit = next((name for name, needle in COST_CENTRES if needle in frame), None)
            if hit is not None:
                label = hit
                break
        counts[label] += count
    total = sum(counts.values())
    if not total:
        return []
    return [(label, round(100 * c / total, 1)) for label, c in counts.most_common(top)]


def summarize_functions(path: Path, top: int = 15) -> list[tuple[str, float]]:
    """Inclusive share of our own functions (handlers/, crm_core/, bot/) in the samples."""
    counts: Counter[str] = Counter()
    total = 0
    for frames, count in _samples(path):
        total += count
        seen = set()
        for frame in frames:
            if any(p in frame for p in OUR_CODE):
                name = frame.split(" (")[0] + " " + frame.split("/")[-1].split(":")[0].rstrip(")")
                if name not in seen:
                    seen.add(name)
                    counts[name] += count
    if not total:
        return []
    return [(name, round(100 * c / total, 1)) for name, c in counts.most_common(top)]


def profile_report(profile: Path, labels: Iterable[str]) -> dict[str, Any]:
    return {
        label: {
            "cost_centres": summarize_profile(profile / f"{label}.txt"),
            "functions": summarize_functions(profile / f"{label}.txt"),
        }
        for label in labels
    }


# --------------------------------------------------------------------------------------------
# Printing
# --------------------------------------------------------------------------------------------


def table(rows: Sequence[dict[str, Any]]) -> str:
    """Rows of one shape as an aligned text table (keys are the headers)."""
    if not rows:
        return "(nothing)"
    head = list(rows[0])
    cells = [head] + [
        ["-" if row.get(k) is None else str(row.get(k)) for k in head] for row in rows
    ]
    widths = [max(len(r[i]) for r in cells) for i in range(len(head))]
    lines = [" | ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def print_profiles(profiles: dict[str, Any]) -> None:
    for label, prof in profiles.items():
        print(f"\nprofile ({label}), share of on-CPU samples:")
        for name, share in prof["cost_centres"]:
            print(f"  {share:5.1f}%  {name}")
        print("  our functions (inclusive):")
        for name, share in prof["functions"]:
            print(f"  {share:5.1f}%  {name}")


def ratio(a: float, b: float) -> float | None:
    return round(a / b, 2) if b else None
