"""The database side of an import: the short read transaction for the lookup maps, then the
ONE write transaction with bulk statements (driver-level executemany on SQLite, ``COPY`` on
PostgreSQL, grouped UPDATEs), all committed or none of it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from sqlalchemy import JSON, Table, bindparam, insert, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.clock import utcnow
from crm_core.errors import ImportFailed
from crm_core.importer.lookup import table_of
from crm_core.importer.report import ImportReport, progress_bar
from crm_core.importer.validate import UPDATABLE, CustomerPlan, PurchasePlan, PurchaseRow
from crm_core.models import Customer, Purchase
from crm_core.types import UTCDateTime

BATCH_SIZE = 5_000
LOOKUP_CHUNK = 50_000
SQLITE_IMPORT_CACHE_KIB = 128 * 1024

CUSTOMER_INSERT_COLUMNS = (*UPDATABLE, "tags", "identity_verified", "created_at", "updated_at")
PURCHASE_INSERT_COLUMNS = (
    "customer_id",
    "amount_minor",
    "currency",
    "purchased_at",
    "external_ref",
    "created_at",
    "updated_at",
)


# --------------------------------------------------------------------------------------------
# Customers and purchases
# --------------------------------------------------------------------------------------------


async def write_customers(
    conn: AsyncConnection, *, plan: CustomerPlan, batch_size: int, progress: bool
) -> None:
    customers = table_of(Customer)
    await _insert(
        conn,
        customers,
        CUSTOMER_INSERT_COLUMNS,
        plan.creates,
        lambda row: tuple(row[column] for column in CUSTOMER_INSERT_COLUMNS),
        batch_size=batch_size,
        progress=progress,
        description="creating customers",
    )
    await _update(conn, customers, plan.updates, batch_size, progress, "updating customers")


async def write_purchases(
    conn: AsyncConnection, *, plan: PurchasePlan, write: bool, batch_size: int, progress: bool
) -> None:
    """Sort the planned rows into creates, updates and unchanged ones (counted in the plan's
    report) and, when ``write``, write them."""
    values = _purchase_driver_values(conn.dialect.name, utcnow())
    purchases = table_of(Purchase)
    any_existing = (await conn.execute(select(purchases.c.id).limit(1))).first() is not None
    label = "writing purchases" if write else "checking purchases"
    # Chunk by chunk, so that the existing rows looked up never pile up in memory.
    with progress_bar(progress, label, len(plan.rows)) as bar:
        for start in range(0, len(plan.rows), LOOKUP_CHUNK):
            chunk = plan.rows[start : start + LOOKUP_CHUNK]
            existing = await _existing_purchases(conn, chunk) if any_existing else {}
            creates, updates = _classify_purchases(chunk, existing, conn.dialect.name, plan.report)
            if write:
                await _insert(
                    conn,
                    purchases,
                    PURCHASE_INSERT_COLUMNS,
                    creates,
                    values,
                    batch_size=batch_size,
                    driver_ready=conn.dialect.name in ("sqlite", "postgresql"),
                )
                await _update(conn, purchases, updates, batch_size)
            bar.update(len(chunk))


def _classify_purchases(
    rows: list[PurchaseRow],
    existing: dict[str, tuple[Any, ...]],
    dialect: str,
    report: ImportReport,
) -> tuple[list[PurchaseRow], list[dict[str, Any]]]:
    """Split valid rows into inserts and updates (existing external_ref), counting unchanged."""
    # SQLite hands back the stored text: compare in that form.
    as_stored: Callable[[datetime], Any] = (
        _sqlite_datetime if dialect == "sqlite" else (lambda value: value)
    )
    now = utcnow()
    creates: list[PurchaseRow] = []
    updates: list[dict[str, Any]] = []
    for row in rows:
        _line, customer_id, amount, currency, purchased_at, ref = row
        old = existing.get(ref)
        if old is None:
            creates.append(row)
        elif old[1:] == (customer_id, amount, currency, as_stored(purchased_at)):
            report.unchanged += 1
        else:
            updates.append(
                {
                    "id": old[0],
                    "customer_id": customer_id,
                    "amount_minor": amount,
                    "currency": currency,
                    "purchased_at": purchased_at,
                    "updated_at": now,
                }
            )
    report.created += len(creates)
    report.updated += len(updates)
    return creates, updates


_EXISTING_PURCHASE_COLUMNS = (
    "external_ref",
    "id",
    "customer_id",
    "amount_minor",
    "currency",
    "purchased_at",
)


async def _existing_purchases(
    conn: AsyncConnection, rows: list[PurchaseRow]
) -> dict[str, tuple[Any, ...]]:
    """external_ref -> (id, customer id, amount, currency, purchased_at) for the rows' refs.

    A driver-level query with one array parameter: re-importing a million rows must not pay
    SQLAlchemy's per-value processing (purchased_at comes back as the driver has it).
    """
    refs = [row[5] for row in rows]
    columns = ", ".join(_EXISTING_PURCHASE_COLUMNS)
    records: Any
    if conn.dialect.name == "sqlite":
        result = await conn.exec_driver_sql(
            f"SELECT {columns} FROM purchase "
            "WHERE external_ref IN (SELECT value FROM json_each(?))",
            (json.dumps(refs),),
        )
        records = result.all()
    elif conn.dialect.name == "postgresql":
        driver = (await conn.get_raw_connection()).driver_connection
        assert driver is not None
        records = await driver.fetch(
            f"SELECT {columns} FROM purchase WHERE external_ref = ANY($1::text[])", refs
        )
    else:
        purchases = table_of(Purchase)
        query = select(*purchases.c[_EXISTING_PURCHASE_COLUMNS]).where(
            purchases.c.external_ref.in_(refs)
        )
        records = (await conn.execute(query)).all()
    return {record[0]: tuple(record[1:]) for record in records}


# --------------------------------------------------------------------------------------------
# Transactions
# --------------------------------------------------------------------------------------------


async def read_transaction(session: AsyncSession, work: Callable[[Any], Any]) -> Any:
    """Run ``work`` on a sync connection in a short read transaction."""
    try:
        conn = await session.connection()
        result = await conn.run_sync(work)
        await session.commit()
        return result
    except SQLAlchemyError as exc:
        await session.rollback()
        raise ImportFailed(f"cannot read the database: {_first_line(exc)}") from None


# The PostgreSQL bulk paths (COPY, array lookups) talk to asyncpg directly, so its errors
# arrive unwrapped by SQLAlchemy.
_WRITE_ERRORS: tuple[type[Exception], ...] = (
    SQLAlchemyError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)


async def write_transaction(
    session: AsyncSession,
    work: Callable[[AsyncConnection], Any],
    *,
    commit: bool = True,
) -> None:
    """Run ``work`` in one transaction: all of it is committed, or none of it."""
    try:
        conn = await session.connection()
        async with _large_sqlite_cache(conn):
            await work(conn)
        if commit:
            await session.commit()
        else:
            await session.rollback()
    except _WRITE_ERRORS as exc:
        await session.rollback()
        raise ImportFailed(
            "the database refused the import, nothing was imported "
            f"(did the data change meanwhile? running it again may help): {_first_line(exc)}"
        ) from None
    except BaseException:
        await session.rollback()
        raise


@asynccontextmanager
async def _large_sqlite_cache(conn: AsyncConnection) -> AsyncIterator[None]:
    """Random-order index inserts thrash SQLite's default 2 MiB page cache: a million rows
    take twice as long. Enlarge it for this connection while importing, then restore it."""
    if conn.dialect.name != "sqlite":
        yield
        return
    previous = (await conn.exec_driver_sql("PRAGMA cache_size")).scalar()
    await conn.exec_driver_sql(f"PRAGMA cache_size=-{SQLITE_IMPORT_CACHE_KIB}")
    try:
        yield
    finally:
        await conn.exec_driver_sql(f"PRAGMA cache_size={int(previous or -2000)}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# --------------------------------------------------------------------------------------------
# Bulk statements
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Copy:
    """A PostgreSQL COPY into ``table`` (``columns``), the fastest bulk path there."""

    table: str
    columns: tuple[str, ...]


async def _execute_batch(conn: AsyncConnection, statement: Any, rows: list[Any]) -> None:
    """One bulk round trip (the seam where tests inject a database failure)."""
    if isinstance(statement, _Copy):
        driver = (await conn.get_raw_connection()).driver_connection
        assert driver is not None
        await driver.copy_records_to_table(
            statement.table, records=rows, columns=list(statement.columns)
        )
    elif isinstance(statement, str):
        await conn.exec_driver_sql(statement, rows)
    else:
        await conn.execute(statement, rows)


async def _insert(
    conn: AsyncConnection,
    table: Table,
    columns: tuple[str, ...],
    rows: Sequence[Any],
    to_values: Callable[[Any], tuple[Any, ...]],
    *,
    batch_size: int,
    progress: bool = False,
    description: str = "",
    driver_ready: bool = False,
) -> None:
    """Bulk INSERT in batches; ``to_values`` turns a compact row into the columns' values
    (already in the driver's form when ``driver_ready``).

    SQLAlchemy's per-value type processing would cost more than the database itself for a
    million rows, so SQLite gets a driver-level executemany with values already in the form
    SQLAlchemy stores (UTC datetimes and JSON as text) and PostgreSQL gets COPY.
    """
    if not rows:
        return
    dialect = conn.dialect.name
    statement: Any
    if dialect == "sqlite":
        statement = (
            f"INSERT INTO {table.name} ({', '.join(columns)}) "
            f"VALUES ({', '.join('?' * len(columns))})"
        )
    elif dialect == "postgresql":
        statement = _Copy(table.name, columns)
    else:
        statement = insert(table)
    convert = (
        (lambda values: values) if driver_ready else _driver_converter(table, columns, dialect)
    )
    with progress_bar(progress, description, len(rows)) as bar:
        for start in range(0, len(rows), batch_size):
            batch = [convert(to_values(row)) for row in rows[start : start + batch_size]]
            await _execute_batch(conn, statement, batch)
            bar.update(len(batch))


def _driver_converter(
    table: Table, columns: tuple[str, ...], dialect: str
) -> Callable[[tuple[Any, ...]], Any]:
    """Values in column order -> what the bulk path's driver takes."""
    if dialect not in ("sqlite", "postgresql"):
        return lambda values: dict(zip(columns, values, strict=True))
    converters: list[tuple[int, Callable[[Any], Any]]] = []
    for position, column in enumerate(columns):
        type_ = table.c[column].type
        if isinstance(type_, UTCDateTime) and dialect == "sqlite":
            converters.append((position, _sqlite_datetime_memo()))
        elif isinstance(type_, JSON):
            converters.append((position, json.dumps))
    if not converters:
        return lambda values: values

    def convert(values: tuple[Any, ...]) -> tuple[Any, ...]:
        result = list(values)
        for position, converter in converters:
            if result[position] is not None:
                result[position] = converter(result[position])
        return tuple(result)

    return convert


def _sqlite_datetime_memo() -> Callable[[datetime], str]:
    """``_sqlite_datetime`` remembering the last value: created_at/updated_at repeat a lot."""
    last: list[Any] = [None, ""]

    def convert(value: datetime) -> str:
        if value is not last[0]:
            last[0], last[1] = value, _sqlite_datetime(value)
        return str(last[1])

    return convert


def _sqlite_datetime(value: datetime) -> str:
    # The text SQLAlchemy's SQLite DATETIME writes, for the naive UTC that UTCDateTime binds.
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat(" ", "microseconds")


def _purchase_driver_values(
    dialect: str, now: datetime
) -> Callable[[PurchaseRow], tuple[Any, ...]]:
    """A planned purchase row -> the driver's values for ``PURCHASE_INSERT_COLUMNS`` (hot path)."""
    if dialect == "sqlite":
        now_text = _sqlite_datetime(now)
        return lambda r: (r[1], r[2], r[3], _sqlite_datetime(r[4]), r[5], now_text, now_text)
    return lambda r: (r[1], r[2], r[3], r[4], r[5], now, now)


async def _update(
    conn: AsyncConnection,
    table: Table,
    rows: list[dict[str, Any]],
    batch_size: int,
    progress: bool = False,
    description: str = "",
) -> None:
    """Bulk UPDATE by id, setting only each row's changed columns (never a stale copy of the
    others). executemany needs one statement per column set, so rows are grouped by it."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(key for key in row if key != "id"), []).append(row)
    with progress_bar(progress, description, len(rows)) as bar:
        for columns, group in groups.items():
            statement = (
                update(table)
                .where(table.c.id == bindparam("b_id"))
                .values({key: bindparam(f"b_{key}") for key in columns})
            )
            for start in range(0, len(group), batch_size):
                batch = [
                    {f"b_{key}": value for key, value in row.items()}
                    for row in group[start : start + batch_size]
                ]
                await _execute_batch(conn, statement, batch)
                bar.update(len(batch))
