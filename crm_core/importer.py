"""Bulk import of customers and purchases from CSV files.

How an import runs:

1. The file is checked (UTF-8 text, not empty, not JSON/Excel/binary); the delimiter
   (``,`` ``;`` or tab) is read from the header row, whose names are matched to our fields
   case-insensitively through aliases (see ``CUSTOMER_COLUMNS`` / ``PURCHASE_COLUMNS``).
2. Every row is validated against lookup maps loaded once (a short read transaction). Each
   rejected row is reported with its line number and reason; nothing is written yet.
3. The valid rows are written in ONE transaction with bulk Core statements; any database
   failure rolls the whole import back. ``strict`` writes nothing when a row was rejected,
   ``dry_run`` never writes.

Re-running a file changes nothing (idempotent):

- customers are matched on ``external_id``, then e-mail, then phone. A matched customer gets
  every non-empty value of the file (the file is the newer source); empty cells never erase
  data; tags are added to the existing ones, never removed.
- purchases are matched on ``external_ref``. A row without one gets a deterministic key
  ``auto:<hash of customer identifier from the file, time, amount, currency>``, stored in
  ``external_ref``, so that re-runs find it; two identical rows in one file are then reported
  as duplicates. A matched purchase takes the file's amount, currency, time and customer.

Because the lookup maps are read before the write transaction (so that SQLite's write lock
is held only while writing), a concurrent change that collides with the import makes the
write fail as a whole with a clear message; running the import again then succeeds.
"""

from __future__ import annotations

import asyncio
import codecs
import csv
import hashlib
import io
import json
import os
import re
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, Any

import asyncpg
from sqlalchemy import JSON, Table, bindparam, insert, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession
from tqdm import tqdm

from crm_core.clock import utcnow
from crm_core.errors import ImportFailed, InvalidEmail, InvalidPhone
from crm_core.models import MAX_AMOUNT_MINOR, Customer, Purchase
from crm_core.normalize import normalize_email, normalize_phone, normalize_region
from crm_core.types import UTCDateTime

Source = str | os.PathLike[str] | IO[str]

BATCH_SIZE = 5_000
LOOKUP_CHUNK = 50_000
SQLITE_IMPORT_CACHE_KIB = 128 * 1024
SNIFF_BYTES = 64 * 1024
# The csv module refuses a whole file over one field longer than 128 KiB; with room up to
# 1 MiB such a field is one rejected row ("name longer than 200 characters") instead.
MAX_FIELD_CHARS = 1 << 20
DELIMITERS = (",", ";", "\t")
DEFAULT_CURRENCY = "EUR"
# ISO 4217 minor units where they are not 2.
CURRENCY_DECIMALS = {
    **dict.fromkeys(("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG"), 0),
    **dict.fromkeys(("RWF", "UGX", "UYI", "VND", "VUV", "XAF", "XOF", "XPF"), 0),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
}

CUSTOMER_COLUMNS: dict[str, tuple[str, ...]] = {
    "external_id": ("external_id", "id", "customer_id", "customer_external_id", "externalid"),
    "name": ("name", "full_name", "fullname", "customer_name"),
    "phone": ("phone", "mobile", "telephone", "phone_number", "tel"),
    "email": ("email", "e_mail", "email_address", "mail"),
    "language": ("language", "lang", "locale"),
    "tags": ("tags", "tag", "labels"),
}
PURCHASE_COLUMNS: dict[str, tuple[str, ...]] = {
    "customer_external_id": ("customer_external_id", "customer_id", "customer", "external_id"),
    "customer_email": ("customer_email", "email", "e_mail"),
    "customer_phone": ("customer_phone", "phone", "mobile", "telephone"),
    "amount": ("amount", "total", "price", "value"),
    "currency": ("currency", "currency_code"),
    "purchased_at": (
        "purchased_at",
        "date",
        "time",
        "datetime",
        "timestamp",
        "purchase_date",
        "order_date",
    ),
    "external_ref": ("external_ref", "order_id", "reference", "ref", "order", "order_number"),
}
CUSTOMER_IDENTIFIERS = ("external_id", "email", "phone")
PURCHASE_IDENTIFIERS = ("customer_external_id", "customer_email", "customer_phone")


@dataclass
class ImportReport:
    """What an import did (or, when ``written`` is false, would have done)."""

    kind: str
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    dry_run: bool = False
    strict: bool = False
    written: bool = False

    def summary(self) -> str:
        counts = (
            f"{self.rows} rows: {self.created} created, {self.updated} updated, "
            f"{self.unchanged} unchanged, {len(self.rejected)} rejected"
        )
        if self.dry_run:
            return f"{self.kind} (dry run, nothing written): {counts}"
        if not self.written:
            return f"{self.kind} NOT imported (--strict and rows were rejected): {counts}"
        return f"{self.kind} imported: {counts}"


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


async def import_customers(
    *,
    session: AsyncSession,
    source: Source,
    phone_region: str | None = None,
    strict: bool = False,
    dry_run: bool = False,
    progress: bool = False,
    batch_size: int = BATCH_SIZE,
) -> ImportReport:
    """Create or update customers from a CSV file (path or text stream); see the module doc."""
    phone_region = _parse_region(phone_region)
    existing = await _read(session, _load_customers)
    plan = await asyncio.to_thread(
        _plan_customers, source, existing, phone_region=phone_region, progress=progress
    )
    plan.report.dry_run, plan.report.strict = dry_run, strict
    if dry_run or (strict and plan.report.rejected):
        return plan.report

    async def write(conn: AsyncConnection) -> None:
        table = _table(Customer)
        await _insert(
            conn,
            table,
            _CUSTOMER_COLUMNS,
            plan.creates,
            lambda row: tuple(row[column] for column in _CUSTOMER_COLUMNS),
            batch_size=batch_size,
            progress=progress,
            description="creating customers",
        )
        await _update(conn, table, plan.updates, batch_size, progress, "updating customers")

    await _write(session, write)
    plan.report.written = True
    return plan.report


async def import_purchases(
    *,
    session: AsyncSession,
    source: Source,
    currency: str = DEFAULT_CURRENCY,
    phone_region: str | None = None,
    strict: bool = False,
    dry_run: bool = False,
    progress: bool = False,
    batch_size: int = BATCH_SIZE,
) -> ImportReport:
    """Create or update purchases from a CSV file (path or text stream); see the module doc."""
    default_currency = _parse_currency(currency)
    phone_region = _parse_region(phone_region)
    keys = await _read(session, _load_customer_keys)
    plan = await asyncio.to_thread(
        _plan_purchases,
        source,
        keys,
        currency=default_currency,
        phone_region=phone_region,
        progress=progress,
    )
    report = plan.report
    report.dry_run, report.strict = dry_run, strict
    nothing_to_write = dry_run or (strict and report.rejected)

    async def write(conn: AsyncConnection) -> None:
        values = _purchase_driver_values(conn.dialect.name, utcnow())
        table = _table(Purchase)
        any_existing = (await conn.execute(select(table.c.id).limit(1))).first() is not None
        label = "checking purchases" if nothing_to_write else "writing purchases"
        # Chunk by chunk, so that the existing rows looked up never pile up in memory.
        with _progress(progress, label, len(plan.rows)) as bar:
            for start in range(0, len(plan.rows), LOOKUP_CHUNK):
                chunk = plan.rows[start : start + LOOKUP_CHUNK]
                existing = await _existing_purchases(conn, chunk) if any_existing else {}
                creates, updates = _classify_purchases(chunk, existing, conn.dialect.name, report)
                if not nothing_to_write:
                    await _insert(
                        conn,
                        table,
                        _PURCHASE_COLUMNS,
                        creates,
                        values,
                        batch_size=batch_size,
                        driver_ready=conn.dialect.name in ("sqlite", "postgresql"),
                    )
                    await _update(conn, table, updates, batch_size)
                bar.update(len(chunk))

    await _write(session, write, commit=not nothing_to_write)
    report.written = not nothing_to_write
    return report


# --------------------------------------------------------------------------------------------
# Reading the file
# --------------------------------------------------------------------------------------------


@dataclass
class _Header:
    index: dict[str, int]  # our field -> column position
    ignored: list[str]
    width: int

    def has(self, name: str) -> bool:
        return name in self.index


def _source_name(source: Source) -> str:
    if isinstance(source, str | os.PathLike):
        return Path(source).name
    return str(getattr(source, "name", "input"))


@contextmanager
def _open_text(source: Source) -> Iterator[IO[str]]:
    """A text stream positioned at the start, after the content passed the "is it CSV" checks."""
    name = _source_name(source)
    if isinstance(source, str | os.PathLike):
        try:
            with open(source, "rb") as raw:
                _check_bytes(raw.read(SNIFF_BYTES), name)
                raw.seek(0)
                _check_utf8(raw, name)
            stream: IO[str] = open(source, encoding="utf-8-sig", newline="")  # noqa: SIM115
        except OSError as exc:
            raise ImportFailed(f"cannot read {source}: {exc.strerror or exc}") from None
        with stream:
            yield stream
        return
    if not source.seekable():
        source = io.StringIO(source.read())
    yield source


def _check_bytes(head: bytes, name: str) -> None:
    if not head.strip():
        raise ImportFailed(f"{name} is empty: expected a CSV file with a header row")
    if head.startswith(b"PK\x03\x04"):
        raise ImportFailed(
            f"{name} is an Excel workbook or a zip archive, not CSV: export it as “CSV UTF-8”"
        )
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise ImportFailed(f"{name} is UTF-16 text: save it as “CSV UTF-8”")
    if b"\x00" in head:
        raise ImportFailed(f"{name} is a binary file, not CSV text")


def _check_utf8(raw: IO[bytes], name: str) -> None:
    """Refuse a file that is not UTF-8, naming the line of the first bad byte. (The text
    stream decodes in chunks, so its own error could only say roughly where.)"""
    decoder = codecs.getincrementaldecoder("utf-8")()
    line = 1
    while chunk := raw.read(1 << 20):
        try:
            decoder.decode(chunk)
        except UnicodeDecodeError as exc:
            raise _not_utf8(name, line + chunk[: exc.start].count(b"\n")) from None
        line += chunk.count(b"\n")
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise _not_utf8(name, line) from None


def _check_text(head: str, name: str) -> str:
    """Reject non-CSV text; return the delimiter read from the header line."""
    stripped = head.lstrip("\ufeff \t\r\n")
    if not stripped:
        raise ImportFailed(f"{name} is empty: expected a CSV file with a header row")
    if stripped[0] in "{[":
        raise ImportFailed(f"{name} looks like JSON, not CSV: expected a header row, then rows")
    header_line = stripped.splitlines()[0]
    counts = {d: header_line.count(d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: counts[d])  # ties: the first, ","
    return best if counts[best] else ","


def _rows(stream: IO[str], name: str) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """The header and an iterator of (line number, cells); blank lines are skipped."""
    try:
        head = stream.read(SNIFF_BYTES)
    except UnicodeDecodeError:
        raise _not_utf8(name, 1) from None
    delimiter = _check_text(head, name)
    stream.seek(0)
    csv.field_size_limit(max(csv.field_size_limit(), MAX_FIELD_CHARS))
    reader = csv.reader(stream, delimiter=delimiter, strict=True)
    line = 0

    def next_row() -> tuple[int, list[str]] | None:
        nonlocal line
        try:
            cells = next(reader)
        except StopIteration:
            return None
        except UnicodeDecodeError:
            raise _not_utf8(name, reader.line_num + 1) from None
        except csv.Error as exc:
            raise ImportFailed(
                f"{name}, line {reader.line_num}: not valid CSV ({exc}); check the quoting"
            ) from None
        start, line = line + 1, reader.line_num
        return start, cells

    first = next_row()
    while first is not None and not any(cell.strip() for cell in first[1]):
        first = next_row()
    if first is None:
        raise ImportFailed(f"{name} is empty: expected a CSV file with a header row")

    def body() -> Iterator[tuple[int, list[str]]]:
        while (item := next_row()) is not None:
            if any(cell.strip() for cell in item[1]):
                yield item

    return [cell.lstrip("\ufeff") for cell in first[1]], body()


def _not_utf8(name: str, line: int) -> ImportFailed:
    return ImportFailed(f"{name} is not UTF-8 text (near line {line}): save it as “CSV UTF-8”")


def _normalise_column_name(text: str) -> str:
    return re.sub(r"[\s\-.]+", "_", text.strip().lower()).strip("_")


def _match_header(cells: Sequence[str], columns: dict[str, tuple[str, ...]], name: str) -> _Header:
    alias_to_field = {alias: fld for fld, aliases in columns.items() for alias in aliases}
    index: dict[str, int] = {}
    ignored: list[str] = []
    for position, cell in enumerate(cells):
        fld = alias_to_field.get(_normalise_column_name(cell))
        if fld is None:
            ignored.append(cell.strip() or f"(column {position + 1})")
        elif fld in index:
            # Silently taking one of them could import the wrong value (e.g. an old e-mail).
            first = index[fld]
            raise ImportFailed(
                f"{name}: columns {first + 1} “{cells[first].strip()}” and {position + 1} "
                f"“{cell.strip()}” both give {fld}; keep one of them"
            )
        else:
            index[fld] = position
    if not index:
        expected = ", ".join(columns)
        # One column only: most likely another delimiter ("id|name|email").
        hint = "; separate columns with , ; or tab" if len(cells) == 1 else ""
        raise ImportFailed(
            f"{name} has no usable column (found: {', '.join(c.strip() for c in cells)}); "
            f"expected a header row naming some of: {expected}{hint}"
        )
    return _Header(index=index, ignored=ignored, width=len(cells))


def _cells_by_field(header: _Header, cells: list[str]) -> dict[str, str] | str:
    """The row's values by field name (stripped), or the reason to reject it."""
    if len(cells) > header.width and any(c.strip() for c in cells[header.width :]):
        return (
            f"{len(cells)} values but the header has {header.width} columns "
            "(a value containing the delimiter must be quoted)"
        )
    return {
        fld: cells[pos].strip() if pos < len(cells) else "" for fld, pos in header.index.items()
    }


def _progress(enabled: bool, description: str, total: int | None) -> tqdm[Any]:
    return tqdm(
        total=total,
        desc=description,
        unit=" rows",
        file=sys.stderr,
        disable=not enabled,
        mininterval=0.5,
        leave=False,
    )


def _count_lines(source: Source) -> int | None:
    if not isinstance(source, str | os.PathLike):
        return None
    count = 0
    with open(source, "rb") as raw:
        while chunk := raw.read(1 << 20):
            count += chunk.count(b"\n")
    return max(count - 1, 0)


# --------------------------------------------------------------------------------------------
# Field parsing
# --------------------------------------------------------------------------------------------


class _Reject(Exception):
    """A row's problem; the message is the reason shown with its line number."""


def _phone(raw: str, region: str | None, cache: dict[str, str | _Reject]) -> str:
    result = cache.get(raw)
    if result is None:
        try:
            result = normalize_phone(raw, region)
        except InvalidPhone:
            if region is None and not raw.startswith(("+", "00")):
                result = _Reject(
                    f"phone “{raw}” has no country code (write it as +49…, "
                    "or give the default region)"
                )
            else:
                result = _Reject(f"invalid phone “{raw}”")
        cache[raw] = result
    if isinstance(result, _Reject):
        raise result
    return result


# Plain ASCII addresses whose normal form is simply the lower-cased text. They skip
# email-validator, which costs ~100 µs an address (most of a customer import's time); anything
# else (IDNA, quoting, special-use domains, odd lengths) takes the full path. A property test
# checks that both agree on everything this pattern accepts.
_PLAIN_EMAIL = re.compile(
    r"[a-z0-9_+-]+(?:\.[a-z0-9_+-]+)*@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}",
    re.ASCII,
)
_SPECIAL_USE_TLDS = frozenset(("arpa", "invalid", "local", "localhost", "onion", "test"))


def _plain_email(raw: str) -> str | None:
    """The normal form of a plain address, or ``None`` when it needs email-validator."""
    text = raw.strip().lower()
    if len(text) > 254 or not _PLAIN_EMAIL.fullmatch(text):
        return None
    local, _, domain = text.partition("@")
    if len(local) > 64 or "--" in domain or domain.rsplit(".", 1)[1] in _SPECIAL_USE_TLDS:
        return None
    return text


def _email(raw: str, cache: dict[str, str | _Reject]) -> str:
    result = cache.get(raw)
    if result is None:
        try:
            result = _plain_email(raw) or normalize_email(raw)
        except InvalidEmail:
            result = _Reject(f"invalid e-mail “{raw}”")
        cache[raw] = result
    if isinstance(result, _Reject):
        raise result
    return result


def _limit(value: str, length: int, label: str) -> str:
    if len(value) > length:
        raise _Reject(f"{label} longer than {length} characters")
    return value


def _tags(raw: str) -> list[str]:
    seen: dict[str, None] = {}
    for part in re.split(r"[;|]", raw):
        tag = part.strip()
        if tag:
            seen.setdefault(tag, None)
    return list(seen)


def _parse_currency(raw: str) -> str:
    code = raw.strip().upper()
    if not re.fullmatch(r"[A-Z]{3}", code):
        raise ImportFailed(f"“{raw}” is not a currency code (three letters, e.g. EUR)")
    return code


def _parse_region(raw: str | None) -> str | None:
    """The default phone region; a wrong one would reject every local number as "invalid"."""
    if not raw:
        return None
    try:
        return normalize_region(raw)
    except InvalidPhone as exc:
        raise ImportFailed(f"phone region: {exc}") from None


_AMOUNT_JUNK = str.maketrans("", "", " \u00a0\u202f_'")


def _amount(raw: str, currency: str) -> int:
    """Decimal text ("12.34", "12,34", "1.234,56", "1,234.56") -> integer minor units."""
    text = raw.translate(_AMOUNT_JUNK)
    if "," in text and "." in text:
        if text.rfind(",") > text.rfind("."):
            text = text.replace(".", "").replace(",", ".")
        else:
            text = text.replace(",", "")
    else:
        text = text.replace(",", ".")
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise _Reject(f"amount “{raw}” is not a number") from None
    if not value.is_finite():
        raise _Reject(f"amount “{raw}” is not a number")
    if value < 0:
        raise _Reject(f"amount “{raw}” is negative (refunds are not imported)")
    decimals = CURRENCY_DECIMALS.get(currency, 2)
    minor = value.scaleb(decimals)
    if minor != minor.to_integral_value():
        raise _Reject(f"amount “{raw}” has more than {decimals} decimals for {currency}")
    return int(minor)


def _timestamp(raw: str) -> datetime:
    """ISO 8601 date or date-time; naive means UTC."""
    try:
        value = datetime.fromisoformat(raw)  # a bare date gives midnight
    except ValueError:
        raise _Reject(
            f"date “{raw}” is not ISO 8601 (e.g. 2024-05-31 or 2024-05-31T14:30:00+02:00)"
        ) from None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


# --------------------------------------------------------------------------------------------
# Customers
# --------------------------------------------------------------------------------------------


@dataclass
class _ExistingCustomer:
    id: int
    external_id: str | None
    email: str | None
    phone: str | None
    name: str | None
    language: str | None
    tags: list[str]
    merged_into_id: int | None
    anonymized: bool


@dataclass
class _CustomerPlan:
    report: ImportReport
    creates: list[dict[str, Any]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)


_UPDATABLE = ("external_id", "name", "phone", "email", "language")
_CUSTOMER_COLUMNS = (*_UPDATABLE, "tags", "identity_verified", "created_at", "updated_at")


def _load_customers(conn: Any) -> list[_ExistingCustomer]:
    table = _table(Customer)
    query = select(
        table.c.id,
        table.c.external_id,
        table.c.email,
        table.c.phone,
        table.c.name,
        table.c.language,
        table.c.tags,
        table.c.merged_into_id,
        table.c.anonymized_at,
    )
    return [
        _ExistingCustomer(
            id=r.id,
            external_id=r.external_id,
            email=r.email,
            phone=r.phone,
            name=r.name,
            language=r.language,
            tags=list(r.tags or []),
            merged_into_id=r.merged_into_id,
            anonymized=r.anonymized_at is not None,
        )
        for r in conn.execute(query)
    ]


def _plan_customers(
    source: Source,
    existing: list[_ExistingCustomer],
    *,
    phone_region: str | None,
    progress: bool,
) -> _CustomerPlan:
    name = _source_name(source)
    plan = _CustomerPlan(report=ImportReport(kind="customers"))
    by_key: dict[str, dict[str, _ExistingCustomer]] = {
        key: {getattr(c, key): c for c in existing if getattr(c, key)}
        for key in CUSTOMER_IDENTIFIERS
    }
    seen: dict[str, dict[str, int]] = {key: {} for key in CUSTOMER_IDENTIFIERS}
    matched_lines: dict[int, int] = {}  # customer id -> line that updates it
    caches: dict[str, dict[str, str | _Reject]] = {"phone": {}, "email": {}}
    now = utcnow()
    with _open_text(source) as stream:
        header_cells, rows = _rows(stream, name)
        header = _match_header(header_cells, CUSTOMER_COLUMNS, name)
        if not any(header.has(key) for key in CUSTOMER_IDENTIFIERS):
            raise ImportFailed(
                f"{name} has no column to identify customers: need external_id, email or phone "
                f"(found: {', '.join(header_cells)})"
            )
        plan.report.ignored_columns = header.ignored
        total = _count_lines(source) if progress else None
        with _progress(progress, "checking customers", total) as bar:
            for line, cells in rows:
                bar.update()
                plan.report.rows += 1
                try:
                    values = _customer_values(header, cells, phone_region, caches)
                    _check_duplicates(values, seen, line)
                    match = _match_customer(values, by_key)
                    if match is None:
                        plan.creates.append(_new_customer(values, now))
                        plan.report.created += 1
                    else:
                        if match.id in matched_lines:
                            raise _Reject(
                                f"matches the same customer as line {matched_lines[match.id]}"
                            )
                        matched_lines[match.id] = line
                        changes = _customer_changes(match, values)
                        if changes:
                            plan.updates.append({"id": match.id, **changes, "updated_at": now})
                            plan.report.updated += 1
                        else:
                            plan.report.unchanged += 1
                except _Reject as reason:
                    plan.report.rejected.append((line, str(reason)))
    return plan


def _customer_values(
    header: _Header,
    cells: list[str],
    region: str | None,
    caches: dict[str, dict[str, str | _Reject]],
) -> dict[str, Any]:
    raw = _cells_by_field(header, cells)
    if isinstance(raw, str):
        raise _Reject(raw)
    values: dict[str, Any] = {}
    if raw.get("external_id"):
        values["external_id"] = _limit(raw["external_id"], 100, "external_id")
    if raw.get("email"):
        values["email"] = _email(raw["email"], caches["email"])
    if raw.get("phone"):
        values["phone"] = _phone(raw["phone"], region, caches["phone"])
    if not any(key in values for key in CUSTOMER_IDENTIFIERS):
        raise _Reject("no external_id, e-mail or phone to identify the customer")
    if raw.get("name"):
        values["name"] = _limit(raw["name"], 200, "name")
    if raw.get("language"):
        values["language"] = _limit(raw["language"].lower(), 16, "language")
    if raw.get("tags"):
        values["tags"] = _tags(raw["tags"])
    return values


def _check_duplicates(values: dict[str, Any], seen: dict[str, dict[str, int]], line: int) -> None:
    for key in CUSTOMER_IDENTIFIERS:
        value = values.get(key)
        if value is not None and value in seen[key]:
            raise _Reject(f"duplicate of line {seen[key][value]} (same {key} “{value}”)")
    for key in CUSTOMER_IDENTIFIERS:
        if values.get(key) is not None:
            seen[key][values[key]] = line


def _match_customer(
    values: dict[str, Any], by_key: dict[str, dict[str, _ExistingCustomer]]
) -> _ExistingCustomer | None:
    """The customer the row is about (external_id, then e-mail, then phone), checking that the
    row's other identifiers do not belong to someone else."""
    found = {
        key: by_key[key][values[key]]
        for key in CUSTOMER_IDENTIFIERS
        if key in values and values[key] in by_key[key]
    }
    if not found:
        return None
    match = next(found[key] for key in CUSTOMER_IDENTIFIERS if key in found)
    for key, other in found.items():
        if other.id != match.id:
            raise _Reject(
                f"{key} “{values[key]}” belongs to another customer (#{other.id}) "
                f"than the one matched (#{match.id})"
            )
    if "external_id" in values and match.external_id not in (None, values["external_id"]):
        raise _Reject(
            f"matches customer #{match.id}, whose external_id is “{match.external_id}”, "
            f"not “{values['external_id']}”"
        )
    if match.merged_into_id is not None:
        raise _Reject(f"matches customer #{match.id}, merged into #{match.merged_into_id}")
    if match.anonymized:
        raise _Reject(f"matches customer #{match.id}, whose data was erased")
    return match


def _customer_changes(match: _ExistingCustomer, values: dict[str, Any]) -> dict[str, Any]:
    changes = {
        key: values[key]
        for key in _UPDATABLE
        if key in values and values[key] != getattr(match, key)
    }
    if "tags" in values:
        merged = match.tags + [tag for tag in values["tags"] if tag not in match.tags]
        if merged != match.tags:
            changes["tags"] = merged
    return changes


def _new_customer(values: dict[str, Any], now: datetime) -> dict[str, Any]:
    return {
        "external_id": values.get("external_id"),
        "name": values.get("name"),
        "phone": values.get("phone"),
        "email": values.get("email"),
        "language": values.get("language"),
        "tags": values.get("tags", []),
        "identity_verified": False,
        "created_at": now,
        "updated_at": now,
    }


# --------------------------------------------------------------------------------------------
# Purchases
# --------------------------------------------------------------------------------------------


@dataclass
class _CustomerKeys:
    by_key: dict[str, dict[str, int]]  # identifier field -> value -> customer id
    merged_into: dict[int, int]


@dataclass
class _PurchasePlan:
    report: ImportReport
    # (line, customer id, amount minor, currency, purchased at, external ref)
    rows: list[tuple[int, int, int, str, datetime, str]] = field(default_factory=list)


def _load_customer_keys(conn: Any) -> _CustomerKeys:
    table = _table(Customer)
    query = select(
        table.c.id, table.c.external_id, table.c.email, table.c.phone, table.c.merged_into_id
    )
    keys = _CustomerKeys(
        by_key={"customer_external_id": {}, "customer_email": {}, "customer_phone": {}},
        merged_into={},
    )
    for row in conn.execute(query):
        for fld, value in (
            ("customer_external_id", row.external_id),
            ("customer_email", row.email),
            ("customer_phone", row.phone),
        ):
            if value:
                keys.by_key[fld][value] = row.id
        if row.merged_into_id is not None:
            keys.merged_into[row.id] = row.merged_into_id
    return keys


def _plan_purchases(
    source: Source,
    keys: _CustomerKeys,
    *,
    currency: str,
    phone_region: str | None,
    progress: bool,
) -> _PurchasePlan:
    name = _source_name(source)
    plan = _PurchasePlan(report=ImportReport(kind="purchases"))
    seen_refs: dict[str, int] = {}
    with _open_text(source) as stream:
        header_cells, rows = _rows(stream, name)
        header = _match_header(header_cells, PURCHASE_COLUMNS, name)
        _require_purchase_columns(header, header_cells, name)
        plan.report.ignored_columns = header.ignored
        parse = _PurchaseParser(header, keys, currency, phone_region)
        total = _count_lines(source) if progress else None
        append, rejected = plan.rows.append, plan.report.rejected
        count = 0
        with _progress(progress, "checking purchases", total) as bar:
            for count, (line, cells) in enumerate(rows, 1):
                if count % 10_000 == 0:
                    bar.update(10_000)
                try:
                    row = parse(cells)
                    previous = seen_refs.setdefault(row[4], line)
                    if previous != line:
                        raise _Reject(f"duplicate of line {previous} (same order)")
                    append((line, *row))
                except _Reject as reason:
                    rejected.append((line, str(reason)))
            plan.report.rows = count
    return plan


def _require_purchase_columns(header: _Header, cells: list[str], name: str) -> None:
    missing = [
        f"{fld} (or {', '.join(PURCHASE_COLUMNS[fld][1:4])})"
        for fld in ("amount", "purchased_at")
        if not header.has(fld)
    ]
    if not any(header.has(key) for key in PURCHASE_IDENTIFIERS):
        missing.append("customer_external_id, customer_email or customer_phone")
    if missing:
        raise ImportFailed(
            f"{name} lacks required column(s): {'; '.join(missing)} (found: {', '.join(cells)})"
        )


_SIMPLE_AMOUNT = re.compile(r"(\d{1,15})(?:[.,](\d\d))?")
_CURRENCY = re.compile(r"[A-Z]{3}")


class _PurchaseParser:
    """Turns a row's cells into (customer id, amount, currency, time, external_ref).

    This runs a million times per large file, so it reads cells by position and takes fast
    paths for the common forms ("12.34", ISO timestamps) before the general ones.
    """

    def __init__(
        self, header: _Header, keys: _CustomerKeys, currency: str, region: str | None
    ) -> None:
        index = header.index
        self.width = header.width
        self.identifiers = [(index[fld], fld) for fld in PURCHASE_IDENTIFIERS if fld in index]
        self.amount = index["amount"]
        self.time = index["purchased_at"]
        self.currency = index.get("currency")
        self.ref = index.get("external_ref")
        self.default_currency = currency
        self.keys = keys
        self.region = region
        self.caches: dict[str, dict[str, str | _Reject]] = {"phone": {}, "email": {}}

    def __call__(self, cells: list[str]) -> tuple[int, int, str, datetime, str]:
        if len(cells) != self.width:
            cells = self._fit(cells)
        customer_id, identity = self._customer(cells)
        currency = self.default_currency
        if self.currency is not None and (code := cells[self.currency].strip()):
            currency = code.upper()
            if not _CURRENCY.fullmatch(currency):
                raise _Reject(f"currency “{code}” is not a three-letter code")
        raw_amount = cells[self.amount].strip()
        if not raw_amount:
            raise _Reject("no amount")
        simple = _SIMPLE_AMOUNT.fullmatch(raw_amount)
        if simple and CURRENCY_DECIMALS.get(currency, 2) == 2:
            amount = int(simple[1]) * 100 + int(simple[2] or 0)
        else:
            amount = _amount(raw_amount, currency)
        if amount > MAX_AMOUNT_MINOR:
            raise _Reject(f"amount “{raw_amount}” is too large")
        raw_time = cells[self.time].strip()
        if not raw_time:
            raise _Reject("no purchase date")
        purchased_at = _timestamp(raw_time)
        ref = cells[self.ref].strip() if self.ref is not None else ""
        if not ref:
            ref = _derived_ref(identity, purchased_at, amount, currency)
        elif len(ref) > 100:
            raise _Reject("external_ref longer than 100 characters")
        return customer_id, amount, currency, purchased_at, ref

    def _fit(self, cells: list[str]) -> list[str]:
        if len(cells) > self.width:
            if any(c.strip() for c in cells[self.width :]):
                raise _Reject(
                    f"{len(cells)} values but the header has {self.width} columns "
                    "(a value containing the delimiter must be quoted)"
                )
            return cells[: self.width]
        return cells + [""] * (self.width - len(cells))

    def _customer(self, cells: list[str]) -> tuple[int, str]:
        """The customer id (after merges) and the identity used, e.g. ``email:a@b.example``."""
        for position, fld in self.identifiers:
            raw = cells[position].strip()
            if not raw:
                continue
            if fld == "customer_email":
                value = _email(raw, self.caches["email"])
            elif fld == "customer_phone":
                value = _phone(raw, self.region, self.caches["phone"])
            else:
                value = raw
            customer_id = self.keys.by_key[fld].get(value)
            label = fld.removeprefix("customer_")
            if customer_id is None:
                raise _Reject(f"unknown customer ({label} “{value}”); import the customers first")
            hops = 0
            while customer_id in self.keys.merged_into and hops < 100:
                customer_id, hops = self.keys.merged_into[customer_id], hops + 1
            return customer_id, f"{label}:{value}"
        raise _Reject("no customer external_id, e-mail or phone")


def _derived_ref(identity: str, purchased_at: datetime, amount: int, currency: str) -> str:
    text = f"{identity}|{purchased_at.isoformat()}|{amount}|{currency}"
    return "auto:" + hashlib.sha256(text.encode()).hexdigest()[:32]


_PurchaseRow = tuple[int, int, int, str, datetime, str]  # line, customer, amount, cur, at, ref
_PURCHASE_COLUMNS = (
    "customer_id",
    "amount_minor",
    "currency",
    "purchased_at",
    "external_ref",
    "created_at",
    "updated_at",
)


def _classify_purchases(
    rows: list[_PurchaseRow],
    existing: dict[str, tuple[Any, ...]],
    dialect: str,
    report: ImportReport,
) -> tuple[list[_PurchaseRow], list[dict[str, Any]]]:
    """Split valid rows into inserts and updates (existing external_ref), counting unchanged."""
    # SQLite hands back the stored text: compare in that form.
    as_stored: Callable[[datetime], Any] = (
        _sqlite_datetime if dialect == "sqlite" else (lambda value: value)
    )
    now = utcnow()
    creates: list[_PurchaseRow] = []
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


async def _existing_purchases(
    conn: AsyncConnection, rows: list[_PurchaseRow]
) -> dict[str, tuple[Any, ...]]:
    """external_ref -> (id, customer id, amount, currency, purchased_at) for the rows' refs.

    A driver-level query with one array parameter: re-importing a million rows must not pay
    SQLAlchemy's per-value processing (purchased_at comes back as the driver has it).
    """
    refs = [row[5] for row in rows]
    columns = "external_ref, id, customer_id, amount_minor, currency, purchased_at"
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
        table = _table(Purchase)
        query = select(
            table.c.external_ref,
            table.c.id,
            table.c.customer_id,
            table.c.amount_minor,
            table.c.currency,
            table.c.purchased_at,
        ).where(table.c.external_ref.in_(refs))
        records = (await conn.execute(query)).all()
    return {record[0]: tuple(record[1:]) for record in records}


# --------------------------------------------------------------------------------------------
# Database access
# --------------------------------------------------------------------------------------------


def _table(model: Any) -> Table:
    table: Table = model.__table__
    return table


async def _read(session: AsyncSession, work: Callable[[Any], Any]) -> Any:
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


async def _write(
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
    with _progress(progress, description, len(rows)) as bar:
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
) -> Callable[[_PurchaseRow], tuple[Any, ...]]:
    """A planned purchase row -> the driver's values for ``_PURCHASE_COLUMNS`` (hot path)."""
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
    with _progress(progress, description, len(rows)) as bar:
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
