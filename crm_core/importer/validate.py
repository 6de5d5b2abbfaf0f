"""Validating a file's rows: the cell parsers (phone, e-mail, amount, time, tags, currency,
region), then the plan of what each valid row will create or update, made against the lookup
maps of what the database holds. Nothing here touches the database."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from crm_core.clock import utcnow
from crm_core.errors import ImportFailed, InvalidEmail, InvalidPhone
from crm_core.importer.lookup import CustomerKeys, ExistingCustomer
from crm_core.importer.parse import (
    CUSTOMER_COLUMNS,
    PURCHASE_COLUMNS,
    Header,
    Source,
    cells_by_field,
    count_lines,
    match_header,
    open_text,
    read_rows,
    source_name,
    surplus_cells,
)
from crm_core.importer.report import ImportReport, progress_bar
from crm_core.models import MAX_AMOUNT_MINOR
from crm_core.normalize import normalize_email, normalize_phone, normalize_region

DEFAULT_CURRENCY = "EUR"
# ISO 4217 minor units where they are not 2.
CURRENCY_DECIMALS = {
    **dict.fromkeys(("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG"), 0),
    **dict.fromkeys(("RWF", "UGX", "UYI", "VND", "VUV", "XAF", "XOF", "XPF"), 0),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
}
CUSTOMER_IDENTIFIERS = ("external_id", "email", "phone")
PURCHASE_IDENTIFIERS = ("customer_external_id", "customer_email", "customer_phone")


# --------------------------------------------------------------------------------------------
# Cells
# --------------------------------------------------------------------------------------------


class Reject(Exception):
    """A row's problem; the message is the reason shown with its line number."""


def _cached(cache: dict[str, str | Reject], raw: str, parse: Callable[[str], str]) -> str:
    """``parse(raw)``, remembering its result or its reason to reject: a file repeats values."""
    result = cache.get(raw)
    if result is None:
        try:
            result = parse(raw)
        except Reject as reason:
            result = reason
        cache[raw] = result
    if isinstance(result, Reject):
        raise result
    return result


def _phone(raw: str, region: str | None, cache: dict[str, str | Reject]) -> str:
    def parse(text: str) -> str:
        try:
            return normalize_phone(text, region)
        except InvalidPhone:
            if region is None and not text.startswith(("+", "00")):
                raise Reject(
                    f"phone “{text}” has no country code (write it as +49…, "
                    "or give the default region)"
                ) from None
            raise Reject(f"invalid phone “{text}”") from None

    return _cached(cache, raw, parse)


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


def _parse_email(raw: str) -> str:
    try:
        return _plain_email(raw) or normalize_email(raw)
    except InvalidEmail:
        raise Reject(f"invalid e-mail “{raw}”") from None


def _email(raw: str, cache: dict[str, str | Reject]) -> str:
    return _cached(cache, raw, _parse_email)


def _limit(value: str, length: int, label: str) -> str:
    if len(value) > length:
        raise Reject(f"{label} longer than {length} characters")
    return value


def _tags(raw: str) -> list[str]:
    seen: dict[str, None] = {}
    for part in re.split(r"[;|]", raw):
        tag = part.strip()
        if tag:
            seen.setdefault(tag, None)
    return list(seen)


def parse_currency(raw: str) -> str:
    """The default currency of a purchases import, e.g. ``eur`` -> ``EUR``."""
    code = raw.strip().upper()
    if not re.fullmatch(r"[A-Z]{3}", code):
        raise ImportFailed(f"“{raw}” is not a currency code (three letters, e.g. EUR)")
    return code


def parse_region(raw: str | None) -> str | None:
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
        raise Reject(f"amount “{raw}” is not a number") from None
    if not value.is_finite():
        raise Reject(f"amount “{raw}” is not a number")
    if value < 0:
        raise Reject(f"amount “{raw}” is negative (refunds are not imported)")
    decimals = CURRENCY_DECIMALS.get(currency, 2)
    minor = value.scaleb(decimals)
    if minor != minor.to_integral_value():
        raise Reject(f"amount “{raw}” has more than {decimals} decimals for {currency}")
    return int(minor)


def _timestamp(raw: str) -> datetime:
    """ISO 8601 date or date-time; naive means UTC."""
    try:
        value = datetime.fromisoformat(raw)  # a bare date gives midnight
    except ValueError:
        raise Reject(
            f"date “{raw}” is not ISO 8601 (e.g. 2024-05-31 or 2024-05-31T14:30:00+02:00)"
        ) from None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


# --------------------------------------------------------------------------------------------
# Customers
# --------------------------------------------------------------------------------------------


@dataclass
class CustomerPlan:
    report: ImportReport
    creates: list[dict[str, Any]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)


UPDATABLE = ("external_id", "name", "phone", "email", "language")


def plan_customers(
    source: Source,
    existing: list[ExistingCustomer],
    *,
    phone_region: str | None,
    progress: bool,
) -> CustomerPlan:
    """Validate a customers file: the rows to create and the changes to make."""
    name = source_name(source)
    plan = CustomerPlan(report=ImportReport(kind="customers"))
    by_key: dict[str, dict[str, ExistingCustomer]] = {
        key: {getattr(c, key): c for c in existing if getattr(c, key)}
        for key in CUSTOMER_IDENTIFIERS
    }
    seen: dict[str, dict[str, int]] = {key: {} for key in CUSTOMER_IDENTIFIERS}
    matched_lines: dict[int, int] = {}  # customer id -> line that updates it
    caches: dict[str, dict[str, str | Reject]] = {"phone": {}, "email": {}}
    now = utcnow()
    with open_text(source) as stream:
        header_cells, rows = read_rows(stream, name)
        header = match_header(header_cells, CUSTOMER_COLUMNS, name)
        if not any(header.has(key) for key in CUSTOMER_IDENTIFIERS):
            raise ImportFailed(
                f"{name} has no column to identify customers: need external_id, email or phone "
                f"(found: {', '.join(header_cells)})"
            )
        plan.report.ignored_columns = header.ignored
        total = count_lines(source) if progress else None
        with progress_bar(progress, "checking customers", total) as bar:
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
                            raise Reject(
                                f"matches the same customer as line {matched_lines[match.id]}"
                            )
                        matched_lines[match.id] = line
                        changes = _customer_changes(match, values)
                        if changes:
                            plan.updates.append({"id": match.id, **changes, "updated_at": now})
                            plan.report.updated += 1
                        else:
                            plan.report.unchanged += 1
                except Reject as reason:
                    plan.report.rejected.append((line, str(reason)))
    return plan


def _customer_values(
    header: Header,
    cells: list[str],
    region: str | None,
    caches: dict[str, dict[str, str | Reject]],
) -> dict[str, Any]:
    raw = cells_by_field(header, cells)
    if isinstance(raw, str):
        raise Reject(raw)
    values: dict[str, Any] = {}
    if raw.get("external_id"):
        values["external_id"] = _limit(raw["external_id"], 100, "external_id")
    if raw.get("email"):
        values["email"] = _email(raw["email"], caches["email"])
    if raw.get("phone"):
        values["phone"] = _phone(raw["phone"], region, caches["phone"])
    if not any(key in values for key in CUSTOMER_IDENTIFIERS):
        raise Reject("no external_id, e-mail or phone to identify the customer")
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
            raise Reject(f"duplicate of line {seen[key][value]} (same {key} “{value}”)")
    for key in CUSTOMER_IDENTIFIERS:
        if values.get(key) is not None:
            seen[key][values[key]] = line


def _match_customer(
    values: dict[str, Any], by_key: dict[str, dict[str, ExistingCustomer]]
) -> ExistingCustomer | None:
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
            raise Reject(
                f"{key} “{values[key]}” belongs to another customer (#{other.id}) "
                f"than the one matched (#{match.id})"
            )
    if "external_id" in values and match.external_id not in (None, values["external_id"]):
        raise Reject(
            f"matches customer #{match.id}, whose external_id is “{match.external_id}”, "
            f"not “{values['external_id']}”"
        )
    if match.merged_into_id is not None:
        raise Reject(f"matches customer #{match.id}, merged into #{match.merged_into_id}")
    if match.anonymized:
        raise Reject(f"matches customer #{match.id}, whose data was erased")
    return match


def _customer_changes(match: ExistingCustomer, values: dict[str, Any]) -> dict[str, Any]:
    changes = {
        key: values[key]
        for key in UPDATABLE
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


PurchaseRow = tuple[int, int, int, str, datetime, str]  # line, customer, amount, cur, at, ref


@dataclass
class PurchasePlan:
    report: ImportReport
    rows: list[PurchaseRow] = field(default_factory=list)


def plan_purchases(
    source: Source,
    keys: CustomerKeys,
    *,
    currency: str,
    phone_region: str | None,
    progress: bool,
) -> PurchasePlan:
    """Validate a purchases file: its valid rows (whether each creates or updates a purchase
    is seen only while writing, chunk by chunk)."""
    name = source_name(source)
    plan = PurchasePlan(report=ImportReport(kind="purchases"))
    seen_refs: dict[str, int] = {}
    with open_text(source) as stream:
        header_cells, rows = read_rows(stream, name)
        header = match_header(header_cells, PURCHASE_COLUMNS, name)
        _require_purchase_columns(header, header_cells, name)
        plan.report.ignored_columns = header.ignored
        parse = _PurchaseParser(header, keys, currency, phone_region)
        total = count_lines(source) if progress else None
        append, rejected = plan.rows.append, plan.report.rejected
        count = 0
        with progress_bar(progress, "checking purchases", total) as bar:
            for count, (line, cells) in enumerate(rows, 1):
                if count % 10_000 == 0:
                    bar.update(10_000)
                try:
                    row = parse(cells)
                    previous = seen_refs.setdefault(row[4], line)
                    if previous != line:
                        raise Reject(f"duplicate of line {previous} (same order)")
                    append((line, *row))
                except Reject as reason:
                    rejected.append((line, str(reason)))
            plan.report.rows = count
    return plan


def _require_purchase_columns(header: Header, cells: list[str], name: str) -> None:
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
        self, header: Header, keys: CustomerKeys, currency: str, region: str | None
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
        self.caches: dict[str, dict[str, str | Reject]] = {"phone": {}, "email": {}}

    def __call__(self, cells: list[str]) -> tuple[int, int, str, datetime, str]:
        if len(cells) != self.width:
            cells = self._fit(cells)
        customer_id, identity = self._customer(cells)
        currency = self.default_currency
        if self.currency is not None and (code := cells[self.currency].strip()):
            currency = code.upper()
            if not _CURRENCY.fullmatch(currency):
                raise Reject(f"currency “{code}” is not a three-letter code")
        raw_amount = cells[self.amount].strip()
        if not raw_amount:
            raise Reject("no amount")
        simple = _SIMPLE_AMOUNT.fullmatch(raw_amount)
        if simple and CURRENCY_DECIMALS.get(currency, 2) == 2:
            amount = int(simple[1]) * 100 + int(simple[2] or 0)
        else:
            amount = _amount(raw_amount, currency)
        if amount > MAX_AMOUNT_MINOR:
            raise Reject(f"amount “{raw_amount}” is too large")
        raw_time = cells[self.time].strip()
        if not raw_time:
            raise Reject("no purchase date")
        purchased_at = _timestamp(raw_time)
        ref = cells[self.ref].strip() if self.ref is not None else ""
        if not ref:
            ref = _derived_ref(identity, purchased_at, amount, currency)
        elif len(ref) > 100:
            raise Reject("external_ref longer than 100 characters")
        return customer_id, amount, currency, purchased_at, ref

    def _fit(self, cells: list[str]) -> list[str]:
        if len(cells) > self.width:
            if (reason := surplus_cells(cells, self.width)) is not None:
                raise Reject(reason)
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
                raise Reject(f"unknown customer ({label} “{value}”); import the customers first")
            hops = 0
            while customer_id in self.keys.merged_into and hops < 100:
                customer_id, hops = self.keys.merged_into[customer_id], hops + 1
            return customer_id, f"{label}:{value}"
        raise Reject("no customer external_id, e-mail or phone")


def _derived_ref(identity: str, purchased_at: datetime, amount: int, currency: str) -> str:
    text = f"{identity}|{purchased_at.isoformat()}|{amount}|{currency}"
    return "auto:" + hashlib.sha256(text.encode()).hexdigest()[:32]
