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
from functools import partial

from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.importer import lookup, write
from crm_core.importer.parse import CUSTOMER_COLUMNS, PURCHASE_COLUMNS, Source
from crm_core.importer.report import ImportReport
from crm_core.importer.validate import (
    CURRENCY_DECIMALS,
    DEFAULT_CURRENCY,
    parse_currency,
    parse_region,
    plan_customers,
    plan_purchases,
)
from crm_core.importer.write import BATCH_SIZE

__all__ = [
    "BATCH_SIZE",
    "CURRENCY_DECIMALS",
    "CUSTOMER_COLUMNS",
    "DEFAULT_CURRENCY",
    "PURCHASE_COLUMNS",
    "ImportReport",
    "Source",
    "import_customers",
    "import_purchases",
]


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
    phone_region = parse_region(phone_region)
    existing = await write.read_transaction(session, lookup.load_customers)
    plan = await asyncio.to_thread(
        plan_customers, source, existing, phone_region=phone_region, progress=progress
    )
    plan.report.dry_run, plan.report.strict = dry_run, strict
    if dry_run or (strict and plan.report.rejected):
        return plan.report
    await write.write_transaction(
        session,
        partial(write.write_customers, plan=plan, batch_size=batch_size, progress=progress),
    )
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
    default_currency = parse_currency(currency)
    phone_region = parse_region(phone_region)
    keys = await write.read_transaction(session, lookup.load_customer_keys)
    plan = await asyncio.to_thread(
        plan_purchases,
        source,
        keys,
        currency=default_currency,
        phone_region=phone_region,
        progress=progress,
    )
    report = plan.report
    report.dry_run, report.strict = dry_run, strict
    # Without writing, the rows are still sorted into created/updated/unchanged for the report.
    writing = not (dry_run or (strict and report.rejected))
    await write.write_transaction(
        session,
        partial(
            write.write_purchases,
            plan=plan,
            write=writing,
            batch_size=batch_size,
            progress=progress,
        ),
        commit=writing,
    )
    report.written = writing
    return report
