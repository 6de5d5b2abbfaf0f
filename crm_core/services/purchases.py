"""Purchases: the monetary side of the CRM (lifetime value, RFM).

Amounts are integer minor units. A negative amount is a refund: it is stored as its own row,
lowers the customer's monetary value and does not count as a purchase for frequency/recency.
"""

import re
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.clock import as_utc
from crm_core.errors import InvalidInput
from crm_core.models import MAX_AMOUNT_MINOR, Purchase
from crm_core.services._sql import dialect_insert, unit_of_work
from crm_core.services.customers import resolve_customer
from crm_core.services.rfm import invalidate_rfm_cache

_CURRENCY = re.compile(r"[A-Z]{3}")


def normalize_currency(raw: str) -> str:
    code = (raw or "").strip().upper()
    if not _CURRENCY.fullmatch(code):
        raise InvalidInput(f"“{raw[:20]}” is not a currency code; use three letters like EUR.")
    return code


@dataclass(frozen=True)
class RecordedPurchase:
    purchase: Purchase
    created: bool  # False: the reference was recorded before; that row is returned as stored


async def record_purchase(
    *,
    session: AsyncSession,
    customer_id: int,
    amount_minor: int,
    currency: str,
    purchased_at: datetime,
    external_ref: str | None = None,
) -> Purchase:
    """Store a purchase (or refund, if negative) for the customer (the merge survivor).

    With ``external_ref`` (the shop's order id) recording is idempotent: a second call returns the
    stored row unchanged, even if its amount differs (the first record wins).
    """
    recorded = await append_purchase(
        session=session,
        customer_id=customer_id,
        amount_minor=amount_minor,
        currency=currency,
        purchased_at=purchased_at,
        external_ref=external_ref,
    )
    return recorded.purchase


async def append_purchase(
    *,
    session: AsyncSession,
    customer_id: int,
    amount_minor: int,
    currency: str,
    purchased_at: datetime,
    external_ref: str | None = None,
) -> RecordedPurchase:
    """:func:`record_purchase`, telling whether this call stored the row."""
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int):
        raise InvalidInput("The amount must be a whole number of cents.")
    if abs(amount_minor) > MAX_AMOUNT_MINOR:
        raise InvalidInput(f"The amount {amount_minor} is too large (at most {MAX_AMOUNT_MINOR}).")
    code = normalize_currency(currency)
    ref = external_ref.strip() if external_ref else None
    if ref is not None and len(ref) > 100:
        raise InvalidInput("The purchase reference is too long (at most 100 characters).")
    invalidate_rfm_cache()
    async with unit_of_work(session):
        customer = await resolve_customer(session, customer_id)
        row = Purchase(
            customer_id=customer.id,
            amount_minor=amount_minor,
            currency=code,
            purchased_at=as_utc(purchased_at),
            external_ref=ref or None,
        )
        if not ref:
            session.add(row)
            return RecordedPurchase(row, created=True)
        stmt = (
            dialect_insert(session, Purchase)
            .values(**row.model_dump(exclude={"id"}))
            .on_conflict_do_nothing(index_elements=["external_ref"])
            .returning(Purchase.id)
        )
        created = (await session.exec(stmt)).scalar_one_or_none() is not None
        stored = select(Purchase).where(col(Purchase.external_ref) == ref)
        return RecordedPurchase((await session.exec(stored)).one(), created=created)
