"""`deskbot import customers|purchases FILE.csv`: bulk import from CSV."""

from __future__ import annotations

import argparse
import csv
import sys
from typing import Any

from bot.cli_db import EXIT_FAILURE, EXIT_OK, add_database_url_option, run_database_command
from crm_core import importer, migrate
from crm_core.db import create_engine, create_session_factory
from crm_core.errors import ImportFailed
from crm_core.importer import ImportReport

EXIT_SOME_REJECTED = 3
REJECTED_SHOWN = 20

_EXIT_CODES = """\
exit status: 0 every row is fine; 1 nothing was imported (bad file, database error, or --strict
with rejected rows); 2 bad settings; 3 imported, but some rows were rejected (listed)."""

_CUSTOMERS_HELP = """\
Columns (header row, any order, case-insensitive; others are ignored): external_id (or id,
customer_id), name (full_name), phone (mobile, telephone), email (e-mail), language (lang),
tags (separated by ; or |). Each row needs external_id, email or phone. Customers are matched
on external_id, then email, then phone; non-empty cells overwrite, empty cells never erase,
tags are added. Re-running the same file changes nothing."""

_PURCHASES_HELP = """\
Columns: customer_external_id (or customer_id), customer_email or customer_phone (to find the
customer, who must exist), amount ("12.34" or "12,34"), currency (default --currency),
purchased_at (or date; ISO 8601 date or date-time, without zone = UTC), external_ref (or
order_id, reference). Purchases are matched on external_ref; rows without one get a key derived
from customer, time and amount, so re-running the same file changes nothing."""


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "import",
        help="import customers or purchases from a CSV file",
        description="Import customers or purchases from a CSV file (UTF-8; delimiter , ; or "
        "tab). Rows are validated first; valid rows are written in one transaction.",
    )
    kinds = parser.add_subparsers(dest="import_kind", metavar="KIND", required=True)
    customers = kinds.add_parser(
        "customers",
        help="create or update customers",
        description=_CUSTOMERS_HELP,
        epilog=_EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common_options(customers)
    customers.set_defaults(func=_import_customers)

    purchases = kinds.add_parser(
        "purchases",
        help="create or update purchases of existing customers",
        description=_PURCHASES_HELP,
        epilog=_EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common_options(purchases)
    purchases.add_argument(
        "--currency",
        default=importer.DEFAULT_CURRENCY,
        help="currency of rows without one (default: EUR)",
    )
    purchases.set_defaults(func=_import_purchases)


def _add_common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE.csv", help="the CSV file to import")
    add_database_url_option(parser)
    parser.add_argument(
        "--dry-run", action="store_true", help="validate and report only; write nothing"
    )
    parser.add_argument(
        "--strict", action="store_true", help="import nothing if any row is rejected"
    )
    parser.add_argument(
        "--phone-region",
        metavar="CC",
        help="country of phone numbers written without +country code, e.g. DE",
    )
    parser.add_argument(
        "--report",
        metavar="REJECTED.csv",
        help="write every rejected row (line, reason) to this CSV file",
    )
    parser.add_argument(
        "--progress",
        action="store_true",
        help="show progress bars (default: only when stderr is a terminal)",
    )


def _import_customers(args: argparse.Namespace) -> int:
    return _run_import(args, "customers")


def _import_purchases(args: argparse.Namespace) -> int:
    return _run_import(args, "purchases")


def _run_import(args: argparse.Namespace, kind: str) -> int:
    progress = bool(args.progress or sys.stderr.isatty())

    async def action(url: str) -> int:
        if args.report:
            # Before importing: failing to write it afterwards would report an error (exit 1,
            # "nothing imported") for an import that was committed.
            _write_rejected(ImportReport(kind=kind), args.report)
        await migrate.ensure_database_current(url)
        engine = create_engine(url)
        try:
            async with create_session_factory(engine)() as session:
                if kind == "customers":
                    report = await importer.import_customers(
                        session=session,
                        source=args.file,
                        phone_region=args.phone_region,
                        strict=args.strict,
                        dry_run=args.dry_run,
                        progress=progress,
                    )
                else:
                    report = await importer.import_purchases(
                        session=session,
                        source=args.file,
                        currency=args.currency,
                        phone_region=args.phone_region,
                        strict=args.strict,
                        dry_run=args.dry_run,
                        progress=progress,
                    )
        finally:
            await engine.dispose()
        return _print_report(report, args.report)

    return run_database_command(args, action)


def _print_report(report: ImportReport, report_path: str | None) -> int:
    if report.ignored_columns:
        print(f"ignored columns: {', '.join(report.ignored_columns)}")
    for line, reason in report.rejected[:REJECTED_SHOWN]:
        print(f"line {line}: {reason}")
    hidden = len(report.rejected) - REJECTED_SHOWN
    if report_path:
        _write_rejected(report, report_path)
        if report.rejected:
            print(f"all {len(report.rejected)} rejected rows written to {report_path}")
    elif hidden > 0:
        print(f"... and {hidden} more rejected rows (list them all with --report FILE.csv)")
    print(report.summary())
    if report.strict and report.rejected and not report.dry_run:
        return EXIT_FAILURE
    return EXIT_SOME_REJECTED if report.rejected else EXIT_OK


def _write_rejected(report: ImportReport, path: str) -> None:
    try:
        with open(path, "w", encoding="utf-8", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(["line", "reason"])
            writer.writerows(report.rejected)
    except OSError as exc:
        raise ImportFailed(f"cannot write the report {path}: {exc.strerror or exc}") from None
