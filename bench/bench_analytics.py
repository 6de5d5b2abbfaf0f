"""Time the supervisors' analytics on a large desk (a benchmark, not a test; not run by CI).

Generates a seeded, realistic database: at ``--scale 1`` 100,000 customers, 1,000,000
complaints with their events (filed, in progress, resolved, closed, reopened), 10,000,000
interactions (questions, bot answers and votes, agent replies, desk events), 1,000,000
purchases and 200,000 handoffs over two years, skewed like a real desk (a few heavy customers,
many occasional ones). It is written with bulk paths (SQLite executemany through the stdlib
driver, PostgreSQL COPY) with the secondary indexes built after the load, then each command's
service call is timed.

    python bench/bench_analytics.py                    # scale 1, SQLite and PostgreSQL
    python bench/bench_analytics.py --scale 0.1 --no-postgres
    python bench/bench_analytics.py --json             # machine-readable results

The SQLite file lives in a temporary directory that is removed at the end; the PostgreSQL
database ``deskbot_bench_analytics`` is dropped at the end. ``--keep`` keeps both (SQLite in
``$TMPDIR/deskbot-bench-analytics``) and ``--reuse`` times them again without rebuilding;
delete that directory (and drop the database) when done.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import Index, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlmodel import SQLModel

from crm_core import models  # noqa: F401  (registers the tables)
from crm_core.charts import render_stats_chart
from crm_core.db import create_engine, create_session_factory
from crm_core.periods import Window, parse_period
from crm_core.services import (
    analytics,
    churn,
    drilldown,
    export,
    interaction_hours,
    segments,
)
from crm_core.services.gaps import knowledge_gaps

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
SPAN_DAYS = 730
CHUNK = 100_000
BENCH_PG_DATABASE = "deskbot_bench_analytics"
KEPT_DIR = Path(tempfile.gettempdir()) / "deskbot-bench-analytics"
AGENTS = 50
CATEGORIES = ["price", "product", "service", "delivery", "billing", "technical", "other"]
SEVERITIES = ["low", "medium", "high", "critical"]
SLA_HOURS = {"low": 72, "medium": 24, "high": 8, "critical": 2}
# (kind, direction, share of interactions)
KINDS = [
    ("message", "in", 0.36),
    ("kb_answer", "out", 0.16),
    ("kb_suggest", "out", 0.05),
    ("kb_none", "out", 0.05),
    ("kb_feedback", "in", 0.06),
    ("agent_reply", "out", 0.14),
    ("complaint_event", "in", 0.10),
    ("handoff_event", "internal", 0.05),
    ("csat", "in", 0.01),
    ("command", "in", 0.02),
]


@dataclass(frozen=True)
class Sizes:
    customers: int
    complaints: int
    interactions: int
    purchases: int
    handoffs: int

    @classmethod
    def at(cls, scale: float) -> Sizes:
        return cls(
            customers=max(100, int(100_000 * scale)),
            complaints=max(100, int(1_000_000 * scale)),
            interactions=max(1000, int(10_000_000 * scale)),
            purchases=max(100, int(1_000_000 * scale)),
            handoffs=max(100, int(200_000 * scale)),
        )


# --------------------------------------------------------------------------------------------
# Data generation (numpy, chunked; every table is a stream of row tuples in column order)
# --------------------------------------------------------------------------------------------

_EPOCH_NOW = NOW.timestamp()


def _ts_text(seconds: np.ndarray) -> list[str | None]:
    """Epoch seconds (NaN = NULL) -> the text SQLAlchemy stores for UTCDateTime on SQLite."""
    micro = np.round(np.nan_to_num(seconds) * 1e6).astype("int64").astype("datetime64[us]")
    strings = np.datetime_as_string(micro, unit="us")
    nulls = np.isnan(seconds)
    return [None if null else s.replace("T", " ") for s, null in zip(strings, nulls, strict=True)]


def _owners(rng: np.random.Generator, n: int, customers: int) -> np.ndarray:
    """Customer ids skewed towards low ids: a few heavy customers, a long tail."""
    return (rng.random(n) ** 2.2 * customers).astype("int64") + 1


def _times(rng: np.random.Generator, n: int) -> np.ndarray:
    """Epoch seconds spread over the span, a little denser recently (a growing desk)."""
    age = rng.random(n) ** 1.3 * SPAN_DAYS * 86400
    return _EPOCH_NOW - age


def gen_customers(sizes: Sizes) -> Iterator[tuple[str, list[str], list[tuple[Any, ...]]]]:
    created = _ts_text(np.array([_EPOCH_NOW - SPAN_DAYS * 86400.0]))[0]
    columns = ["id", "name", "identity_verified", "tags", "created_at", "updated_at"]
    for start in range(0, sizes.customers, CHUNK):
        ids = range(start + 1, min(sizes.customers, start + CHUNK) + 1)
        yield "customer", columns, [(i, f"Customer {i}", 0, "[]", created, created) for i in ids]


def gen_agents() -> Iterator[tuple[str, list[str], list[tuple[Any, ...]]]]:
    created = _ts_text(np.array([_EPOCH_NOW - SPAN_DAYS * 86400.0]))[0]
    columns = [
        "id",
        "telegram_user_id",
        "display_name",
        "role",
        "active",
        "in_agent_group",
        "available",
        "created_at",
        "updated_at",
    ]
    rows = [
        (
            i,
            10_000 + i,
            f"Agent {i}",
            "supervisor" if i == 1 else "agent",
            1,
            1,
            1,
            created,
            created,
        )
        for i in range(1, AGENTS + 1)
    ]
    yield "agent", columns, rows


def gen_purchases(
    rng: np.random.Generator, sizes: Sizes
) -> Iterator[tuple[str, list[str], list[tuple[Any, ...]]]]:
    columns = [
        "id",
        "customer_id",
        "amount_minor",
        "currency",
        "purchased_at",
        "created_at",
        "updated_at",
    ]
    for start in range(0, sizes.purchases, CHUNK):
        n = min(CHUNK, sizes.purchases - start)
        owners = _owners(rng, n, sizes.customers)
        amounts = np.round(rng.lognormal(8.3, 0.9, n)).astype("int64")
        refunds = rng.random(n) < 0.02
        amounts[refunds] = -amounts[refunds] // 2
        at = _ts_text(_times(rng, n))
        rows = [
            (start + i + 1, int(owners[i]), int(amounts[i]), "EUR", at[i], at[i], at[i])
            for i in range(n)
        ]
        yield "purchase", columns, rows


COMPLAINT_COLUMNS = [
    "id",
    "reference",
    "customer_id",
    "category",
    "severity",
    "description",
    "attachments",
    "status",
    "assignee_id",
    "sla_due_at",
    "first_response_at",
    "resolved_at",
    "closed_at",
    "reopen_count",
    "created_at",
    "updated_at",
]
EVENT_COLUMNS = [
    "id",
    "complaint_id",
    "action",
    "actor_type",
    "actor_id",
    "from_status",
    "to_status",
    "created_at",
]


def gen_complaints(
    rng: np.random.Generator, sizes: Sizes
) -> Iterator[tuple[str, list[str], list[tuple[Any, ...]]]]:
    event_id = 0
    for start in range(0, sizes.complaints, CHUNK):
        n = min(CHUNK, sizes.complaints - start)
        owners = _owners(rng, n, sizes.customers)
        created = _times(rng, n)
        category = rng.integers(0, len(CATEGORIES), n)
        severity = rng.choice(4, n, p=[0.3, 0.45, 0.2, 0.05])
        due = created + np.array([SLA_HOURS[SEVERITIES[s]] * 3600.0 for s in severity])
        first = created + rng.exponential(3 * 3600, n)
        resolve = first + rng.exponential(20 * 3600, n)
        age = _EPOCH_NOW - created
        # Recent complaints are still being worked on; old ones are nearly all settled.
        settled = rng.random(n) < np.clip(age / (5 * 86400), 0.05, 0.97)
        responded = settled | (first < _EPOCH_NOW) & (rng.random(n) < 0.7)
        closed = settled & (rng.random(n) < 0.6)
        reopened = settled & (rng.random(n) < 0.05)
        first = np.where(responded & (first < _EPOCH_NOW), first, np.nan)
        resolve = np.where(settled, np.minimum(resolve, _EPOCH_NOW - 60), np.nan)
        close = np.where(closed, resolve + 86400 * 2, np.nan)
        close = np.where(close > _EPOCH_NOW, np.nan, close)
        closed = ~np.isnan(close)
        assignee = rng.integers(1, AGENTS + 1, n)
        texts = {
            name: _ts_text(values)
            for name, values in (
                ("created", created),
                ("due", due),
                ("first", first),
                ("resolved", resolve),
                ("closed", close),
            )
        }
        complaints, events = [], []
        for i in range(n):
            cid = start + i + 1
            status = (
                "closed"
                if closed[i]
                else "resolved"
                if settled[i]
                else "in_progress"
                if responded[i] and texts["first"][i]
                else "open"
            )
            last = texts["closed"][i] or texts["resolved"][i] or texts["first"][i]
            last = last or texts["created"][i]
            complaints.append(
                (
                    cid,
                    f"C-{cid:07d}",
                    int(owners[i]),
                    CATEGORIES[category[i]],
                    SEVERITIES[severity[i]],
                    "The parcel arrived damaged.",
                    "[]",
                    status,
                    int(assignee[i]),
                    texts["due"][i],
                    texts["first"][i],
                    texts["resolved"][i],
                    texts["closed"][i],
                    int(reopened[i]),
                    texts["created"][i],
                    last,
                )
            )
            agent = int(assignee[i])
            steps = [("filed", "customer", None, None, "open", texts["created"][i])]
            if texts["first"][i]:
                steps.append(
                    ("status_changed", "agent", agent, "open", "in_progress", texts["first"][i])
                )
            if texts["resolved"][i]:
                steps.append(
                    (
                        "status_changed",
                        "agent",
                        agent,
                        "in_progress",
                        "resolved",
                        texts["resolved"][i],
                    )
                )
            if texts["closed"][i]:
                steps.append(
                    ("status_changed", "system", None, "resolved", "closed", texts["closed"][i])
                )
            for step in steps:
                event_id += 1
                events.append((event_id, cid, *step))
        yield "complaint", COMPLAINT_COLUMNS, complaints
        yield "complaint_event", EVENT_COLUMNS, events


HANDOFF_COLUMNS = [
    "id",
    "customer_id",
    "status",
    "agent_id",
    "requested_at",
    "claimed_at",
    "first_agent_reply_at",
    "closed_at",
    "reminders_sent",
    "unreachable",
    "csat_score",
    "created_at",
    "updated_at",
]


def gen_handoffs(
    rng: np.random.Generator, sizes: Sizes
) -> Iterator[tuple[str, list[str], list[tuple[Any, ...]]]]:
    # One handoff that is not closed per customer at most (the partial unique index): the few
    # open ones are the most recent, on distinct customers.
    open_tail = min(100, sizes.handoffs // 10)
    for start in range(0, sizes.handoffs, CHUNK):
        n = min(CHUNK, sizes.handoffs - start)
        owners = _owners(rng, n, sizes.customers)
        requested = _times(rng, n)
        claimed = requested + rng.exponential(600, n)
        claimed = np.where(rng.random(n) < 0.92, claimed, np.nan)
        reply = claimed + rng.exponential(120, n)
        closed = np.where(np.isnan(claimed), requested + 3600, reply + rng.exponential(1800, n))
        rated = rng.random(n) < 0.4
        scores = rng.choice([1, 2, 3, 4, 5], n, p=[0.06, 0.06, 0.13, 0.3, 0.45])
        agents = rng.integers(1, AGENTS + 1, n)
        req, cla, rep, clo = (
            _ts_text(requested),
            _ts_text(claimed),
            _ts_text(reply),
            _ts_text(closed),
        )
        rows = []
        for i in range(n):
            hid = start + i + 1
            is_open = hid > sizes.handoffs - open_tail
            customer = sizes.customers - (sizes.handoffs - hid) if is_open else int(owners[i])
            status = ("claimed" if cla[i] else "waiting") if is_open else "closed"
            rows.append(
                (
                    hid,
                    customer,
                    status,
                    int(agents[i]) if cla[i] else None,
                    req[i],
                    cla[i],
                    rep[i],
                    None if is_open else clo[i],
                    0,
                    0,
                    int(scores[i]) if rated[i] and not is_open else None,
                    req[i],
                    req[i],
                )
            )
        yield "handoff", HANDOFF_COLUMNS, rows


INTERACTION_COLUMNS = [
    "id",
    "customer_id",
    "channel",
    "direction",
    "kind",
    "text",
    "details",
    "occurred_at",
    "created_at",
    "updated_at",
]


def gen_interactions(
    rng: np.random.Generator, sizes: Sizes
) -> Iterator[tuple[str, list[str], list[tuple[Any, ...]]]]:
    shares = np.array([share for _, _, share in KINDS])
    shares = shares / shares.sum()
    helpful, unhelpful = '{"helpful": true}', '{"helpful": false}'
    for start in range(0, sizes.interactions, CHUNK):
        n = min(CHUNK, sizes.interactions - start)
        owners = _owners(rng, n, sizes.customers)
        kinds = rng.choice(len(KINDS), n, p=shares)
        votes = rng.random(n) < 0.7
        at = _ts_text(_times(rng, n))
        rows = []
        for i in range(n):
            kind, direction, _ = KINDS[kinds[i]]
            details = (helpful if votes[i] else unhelpful) if kind == "kb_feedback" else "{}"
            text_value = "Where is my parcel?" if kind == "message" else None
            rows.append(
                (
                    start + i + 1,
                    int(owners[i]),
                    "telegram",
                    direction,
                    kind,
                    text_value,
                    details,
                    at[i],
                    at[i],
                    at[i],
                )
            )
        yield "interaction", INTERACTION_COLUMNS, rows


def all_rows(sizes: Sizes, seed: int) -> Iterator[tuple[str, list[str], list[tuple[Any, ...]]]]:
    rng = np.random.default_rng(seed)
    yield from gen_customers(sizes)
    yield from gen_agents()
    yield from gen_purchases(rng, sizes)
    yield from gen_complaints(rng, sizes)
    yield from gen_handoffs(rng, sizes)
    yield from gen_interactions(rng, sizes)


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def _secondary_indexes() -> list[Index]:
    return [index for table in SQLModel.metadata.sorted_tables for index in table.indexes]


async def _create_schema(engine: AsyncEngine) -> None:
    """Tables with primary keys and unique constraints; secondary indexes come after the load."""
    async with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            await conn.execute(text("DROP SCHEMA public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
        else:
            await conn.run_sync(SQLModel.metadata.drop_all)
        await conn.run_sync(SQLModel.metadata.create_all)
        for index in _secondary_indexes():
            await conn.execute(text(f'DROP INDEX IF EXISTS "{index.name}"'))


async def _create_indexes(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        for index in _secondary_indexes():
            await conn.run_sync(lambda sync, ix=index: ix.create(sync))
    # What a live database has anyway: statistics (PostgreSQL's autovacuum; SQLite's
    # ANALYZE, which ``PRAGMA optimize`` keeps) and, on PostgreSQL, a visibility map so that
    # index-only scans need no heap visits.
    async with engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        vacuum = "VACUUM ANALYZE" if engine.dialect.name == "postgresql" else "ANALYZE"
        await conn.execute(text(vacuum))


class SqliteLoader:
    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=OFF")
        self.db.execute("PRAGMA foreign_keys=OFF")
        self.db.execute("PRAGMA cache_size=-200000")

    def write(self, table: str, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
        marks = ", ".join("?" * len(columns))
        self.db.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)
        self.db.commit()

    def close(self) -> None:
        self.db.close()


class PostgresLoader:
    def __init__(self, connection: Any) -> None:
        self.conn = connection

    async def write(self, table: str, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        for row in rows:
            # Timestamps are UTC text; CSV's empty unquoted field is NULL.
            writer.writerow(["" if v is None else v for v in row])
        data = io.BytesIO(buffer.getvalue().encode())
        await self.conn.copy_to_table(table, source=data, columns=columns, format="csv")


async def build(
    sizes: Sizes, seed: int, sqlite_path: Path | None, pg_url: str | None
) -> dict[str, float]:
    """Generate once, write to every database; returns seconds spent per phase."""
    timings: dict[str, float] = {}
    engines: list[AsyncEngine] = []
    if sqlite_path is not None:
        # A fresh file: dropping a filled table with foreign keys on checks every row against
        # its (unindexed, self-referencing) children, minutes for the customers alone.
        for leftover in sqlite_path.parent.glob(sqlite_path.name + "*"):
            leftover.unlink()
        engines.append(create_engine(f"sqlite+aiosqlite:///{sqlite_path}"))
    if pg_url is not None:
        engines.append(create_engine(pg_url))
    for engine in engines:
        await _create_schema(engine)
        await engine.dispose()
    sqlite_loader = SqliteLoader(sqlite_path) if sqlite_path is not None else None
    pg_conn = None
    if pg_url is not None:
        import asyncpg

        pg_conn = await asyncpg.connect(
            make_url(pg_url).set(drivername="postgresql").render_as_string(hide_password=False)
        )
    pg_loader = PostgresLoader(pg_conn) if pg_conn is not None else None
    t0 = time.perf_counter()
    load = {"sqlite": 0.0, "postgresql": 0.0}
    counts: dict[str, int] = {}
    for table, columns, rows in all_rows(sizes, seed):
        counts[table] = counts.get(table, 0) + len(rows)
        if sqlite_loader is not None:
            t = time.perf_counter()
            sqlite_loader.write(table, columns, rows)
            load["sqlite"] += time.perf_counter() - t
        if pg_loader is not None:
            t = time.perf_counter()
            await pg_loader.write(table, columns, rows)
            load["postgresql"] += time.perf_counter() - t
        print(f"  {table}: {counts[table]:,} rows", file=sys.stderr, flush=True)
    timings["generate+load"] = time.perf_counter() - t0
    if sqlite_loader is not None:
        sqlite_loader.close()
        timings["load sqlite"] = load["sqlite"]
    if pg_conn is not None:
        for table in (
            "customer",
            "agent",
            "purchase",
            "complaint",
            "complaint_event",
            "handoff",
            "interaction",
        ):
            await pg_conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT coalesce(max(id), 1) FROM {table}))"
            )
        await pg_conn.close()
        timings["load postgresql"] = load["postgresql"]
    for engine in engines:
        fresh = create_engine(engine.url.render_as_string(hide_password=False))
        t = time.perf_counter()
        await _create_indexes(fresh)
        timings[f"indexes {fresh.dialect.name}"] = time.perf_counter() - t
        await fresh.dispose()
    return timings


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------


class _FirstRowSink(io.StringIO):
    """A file that notes when its second write (the first row after the header) came."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0
        self.first_row_at: float | None = None

    def write(self, s: str) -> int:
        self.writes += 1
        if self.writes == 2:
            self.first_row_at = time.perf_counter()
            raise _FirstRow
        return super().write(s)


class _FirstRow(Exception):
    pass


def _commands(factory: Any) -> dict[str, Callable[[], Awaitable[Any]]]:
    def period(text_value: str) -> Any:
        return parse_period(text_value, now=NOW, time_zone="Europe/Berlin")

    async def stats(p: str) -> Any:
        async with factory() as s:
            return await analytics.desk_report(session=s, period=period(p), now=NOW)

    async def chart() -> Any:
        async with factory() as s:
            series = await analytics.daily_series(
                session=s, window=period("30d").current, time_zone="Europe/Berlin"
            )
        return render_stats_chart(series)

    async def chart_query() -> Any:
        async with factory() as s:
            return await analytics.daily_series(
                session=s, window=period("30d").current, time_zone="Europe/Berlin"
            )

    async def sla() -> Any:
        async with factory() as s:
            return await analytics.sla_watchlist(session=s, now=NOW)

    async def agents() -> Any:
        async with factory() as s:
            return await analytics.agent_figures(session=s, window=period("30d").current)

    async def export_7d() -> Any:
        async with factory() as s:
            sink = io.StringIO()
            n = await export.export_complaints_csv(session=s, window=period("7d").current, out=sink)
            m = await export.export_conversations_csv(
                session=s, window=period("7d").current, out=sink
            )
            return n + m

    async def export_first_row() -> Any:
        # How long until the complaints' file has its first data row (the query's answer).
        sink = _FirstRowSink()
        try:
            async with factory() as s:
                await export.export_complaints_csv(session=s, window=period("7d").current, out=sink)
        except _FirstRow:  # the sink stops the export there
            pass
        return sink.first_row_at

    # Live: ranked on the spot (an explicit time); snapshot: what the commands read once the
    # periodic refresh_rfm_snapshot job has run (taken at the real "now": the bench's data
    # then looks half a year old, which changes the scores, not the work).
    async def segment_report(live: bool) -> Any:
        async with factory() as s:
            return await segments.rfm_segments(session=s, now=NOW if live else None)

    async def mvc(live: bool) -> Any:
        async with factory() as s:
            return await segments.most_valuable_customers(session=s, now=NOW if live else None)

    async def churn_list(live: bool) -> Any:
        async with factory() as s:
            return await churn.churn_risks(session=s, now=NOW if live else None)

    async def recovery() -> Any:
        window = Window(NOW - timedelta(days=120), NOW - timedelta(days=30))
        async with factory() as s:
            return await churn.service_recovery(session=s, window=window, now=NOW)

    async def behind(figure: str) -> Any:
        async with factory() as s:
            window = period("30d").current
            return await drilldown.behind_figure(session=s, figure=figure, window=window, now=NOW)

    async def gaps() -> Any:
        async with factory() as s:
            return await knowledge_gaps(session=s, window=period("30d").current)

    return {
        "/stats (7d)": lambda: stats("7d"),
        "/stats 30d": lambda: stats("30d"),
        "/stats month": lambda: stats("month"),
        "/stats chart 30d (query)": chart_query,
        "/stats chart 30d (+PNG)": chart,
        "button: breached 30d": lambda: behind("sla_breached"),
        "button: unhelpful 30d": lambda: behind("bot_unhelpful"),
        "/sla": sla,
        "/agents 30d": agents,
        "/export 7d (CSV)": export_7d,
        "/export 7d (first data row)": export_first_row,
        "/segments (live)": lambda: segment_report(True),
        "/mvc (live)": lambda: mvc(True),
        "/churn risks (live)": lambda: churn_list(True),
        "/segments": lambda: segment_report(False),
        "/mvc": lambda: mvc(False),
        "/churn risks": lambda: churn_list(False),
        "/churn recovery (90d)": recovery,
        "/gaps 30d": gaps,
    }


def _jobs(factory: Any) -> dict[str, Callable[[], Awaitable[Any]]]:
    """The periodic jobs the commands rely on, run once each before the commands."""

    async def outcomes(now: datetime) -> Any:
        async with factory() as s:
            return await analytics.refresh_bot_outcomes(session=s, now=now)

    async def hours(now: datetime) -> Any:
        async with factory() as s:
            return await interaction_hours.refresh_interaction_hours(session=s, now=now)

    async def snapshot() -> Any:
        async with factory() as s:
            return await segments.refresh_rfm_snapshot(session=s)

    return {
        "job: refresh_bot_outcomes (first run, 2 years)": lambda: outcomes(NOW),
        "job: refresh_bot_outcomes (next run, +15 min)": lambda: outcomes(
            NOW + timedelta(minutes=15)
        ),
        "job: refresh_interaction_hours (first run, 2 years)": lambda: hours(NOW),
        "job: refresh_interaction_hours (next run, +15 min)": lambda: hours(
            NOW + timedelta(minutes=15)
        ),
        "job: refresh_rfm_snapshot": snapshot,
    }


async def _add_missing_indexes(engine: AsyncEngine) -> None:
    """Build the models' indexes a kept database lacks (the schema moved on since it was
    built), then refresh the planner's statistics; index builds are reported, not timed."""

    def present(sync: Any) -> set[str]:
        inspector = inspect(sync)
        return {
            str(ix["name"])
            for table in SQLModel.metadata.sorted_tables
            for ix in inspector.get_indexes(table.name)
        }

    async with engine.connect() as conn:
        have = await conn.run_sync(present)
    wanted = {str(ix.name) for ix in _secondary_indexes()}
    todo = [ix for ix in _secondary_indexes() if ix.name not in have]
    stale = sorted(name for name in have - wanted if name.startswith("ix_"))
    if not todo and not stale:
        return
    async with engine.begin() as conn:  # indexes the models no longer have
        for name in stale:
            await conn.execute(text(f'DROP INDEX IF EXISTS "{name}"'))
    for index in todo:
        t0 = time.perf_counter()
        async with engine.begin() as conn:
            await conn.run_sync(lambda sync, ix=index: ix.create(sync))
        took = time.perf_counter() - t0
        print(f"  [{engine.dialect.name}] built {index.name}: {took:.0f} s", file=sys.stderr)
    async with engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text("ANALYZE"))


async def time_commands(
    url: str, repeat: int, only: str | None = None
) -> dict[str, dict[str, float]]:
    engine = create_engine(url)
    async with engine.begin() as conn:  # tables and indexes added since the databases were kept
        await conn.run_sync(SQLModel.metadata.create_all)
    await _add_missing_indexes(engine)
    factory = create_session_factory(engine)
    results: dict[str, dict[str, float]] = {}
    try:
        for name, job in _jobs(factory).items():
            t0 = time.perf_counter()
            await job()
            took = time.perf_counter() - t0
            results[name] = {"first": took, "median": took}
            print(f"  [{engine.dialect.name}] {name}: {took:.3f} s", file=sys.stderr, flush=True)
        for name, command in _commands(factory).items():
            if only is not None and only not in name:
                continue
            samples = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                await command()
                samples.append(time.perf_counter() - t0)
            results[name] = {"first": samples[0], "median": statistics.median(samples)}
            print(
                f"  [{engine.dialect.name}] {name}: {samples[0]:.3f} s", file=sys.stderr, flush=True
            )
    finally:
        await engine.dispose()
    return results


async def _pg_database(admin_url: str, *, create: bool = True, drop: bool = False) -> str:
    """The bench's own database on the server: (re)created, dropped, or left as it is."""
    admin = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            if create or drop:
                await conn.execute(
                    text(f'DROP DATABASE IF EXISTS "{BENCH_PG_DATABASE}" WITH (FORCE)')
                )
            if create and not drop:
                await conn.execute(text(f'CREATE DATABASE "{BENCH_PG_DATABASE}"'))
    finally:
        await admin.dispose()
    return make_url(admin_url).set(database=BENCH_PG_DATABASE).render_as_string(hide_password=False)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--postgres",
        default="postgresql+asyncpg://postgres@127.0.0.1:5432/test",
        help="maintenance URL; the bench creates and drops its own database there",
    )
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument(
        "--keep",
        action="store_true",
        help=f"keep the databases (SQLite in {KEPT_DIR}) for --reuse",
    )
    parser.add_argument(
        "--reuse", action="store_true", help="time the databases kept by --keep (same --scale)"
    )
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    parser.add_argument("--only", help="time only the commands whose name contains this")
    args = parser.parse_args()
    sizes = Sizes.at(args.scale)
    keep = args.keep or args.reuse
    if keep:
        KEPT_DIR.mkdir(exist_ok=True)
    workdir = KEPT_DIR if keep else Path(tempfile.mkdtemp(prefix="deskbot-bench-analytics-"))
    sqlite_path = None if args.no_sqlite else workdir / "bench.db"
    marker = workdir / "population.json"
    population = json.dumps({"sizes": sizes.__dict__, "seed": args.seed})
    reuse = args.reuse and marker.exists() and marker.read_text() == population
    pg_url = None
    if not args.no_postgres:
        try:
            pg_url = await _pg_database(args.postgres, create=not reuse)
        except Exception as exc:  # no server: SQLite only
            print(f"PostgreSQL unavailable ({exc}); SQLite only", file=sys.stderr)
    try:
        build_times: dict[str, float] = {}
        if not reuse:
            print(f"building {sizes}", file=sys.stderr, flush=True)
            build_times = await build(sizes, args.seed, sqlite_path, pg_url)
            marker.write_text(population)
        results: dict[str, dict[str, dict[str, float]]] = {}
        if sqlite_path is not None:
            results["sqlite"] = await time_commands(
                f"sqlite+aiosqlite:///{sqlite_path}", args.repeat, args.only
            )
        if pg_url is not None:
            results["postgresql"] = await time_commands(pg_url, args.repeat, args.only)
    finally:
        if keep:
            print(f"kept: {sqlite_path} {pg_url}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
            if pg_url is not None:
                await _pg_database(args.postgres, drop=True)
    report(sizes, build_times, results, as_json=args.json)


def report(
    sizes: Sizes,
    build_times: dict[str, float],
    results: dict[str, dict[str, dict[str, float]]],
    *,
    as_json: bool,
) -> None:
    if as_json:
        print(
            json.dumps(
                {"sizes": sizes.__dict__, "build_s": build_times, "commands_s": results}, indent=2
            )
        )
        return
    print(
        f"{sizes.customers:,} customers, {sizes.complaints:,} complaints, "
        f"{sizes.interactions:,} interactions, {sizes.purchases:,} purchases, "
        f"{sizes.handoffs:,} handoffs"
    )
    if build_times:
        print("build: " + ", ".join(f"{k} {v:.0f} s" for k, v in build_times.items()))
    backends = list(results)
    header = f"| {'command':<46} |" + "".join(f" {b} first | {b} median |" for b in backends)
    print(header)
    print("|" + "-" * 48 + "|" + "".join("---:|---:|" for _ in backends))
    names = next(iter(results.values())).keys() if results else []
    for name in names:
        cells = "".join(
            f" {results[b][name]['first']:.3f} s | {results[b][name]['median']:.3f} s |"
            for b in backends
        )
        print(f"| {name:<46} |{cells}")


if __name__ == "__main__":
    asyncio.run(main())
