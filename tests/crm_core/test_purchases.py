from datetime import UTC, datetime

import pytest
from sqlalchemy import func
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.errors import CustomerNotFound, InvalidInput
from crm_core.models import Purchase
from crm_core.services.customers import identify_customer
from crm_core.services.purchases import record_purchase

T0 = datetime(2026, 2, 1, tzinfo=UTC)


async def _customer(session: AsyncSession) -> int:
    c = await identify_customer(session=session, channel="telegram", external_id="1")
    assert c.id is not None
    return c.id


async def _purchase_count(session: AsyncSession) -> int:
    n = (await session.exec(select(func.count()).select_from(Purchase))).one()
    await session.commit()
    return int(n)


async def test_record_purchase_normalises_currency(session: AsyncSession) -> None:
    cid = await _customer(session)
    p = await record_purchase(
        session=session, customer_id=cid, amount_minor=1999, currency=" eur ", purchased_at=T0
    )
    assert (p.customer_id, p.amount_minor, p.currency, p.purchased_at) == (cid, 1999, "EUR", T0)


async def test_external_ref_makes_recording_idempotent(session: AsyncSession) -> None:
    cid = await _customer(session)
    first = await record_purchase(
        session=session,
        customer_id=cid,
        amount_minor=500,
        currency="EUR",
        purchased_at=T0,
        external_ref="order-1",
    )
    again = await record_purchase(
        session=session,
        customer_id=cid,
        amount_minor=700,
        currency="EUR",
        purchased_at=T0,
        external_ref="order-1",
    )
    assert again.id == first.id and again.amount_minor == 500
    assert await _purchase_count(session) == 1


async def test_refund_is_a_negative_amount(session: AsyncSession) -> None:
    cid = await _customer(session)
    refund = await record_purchase(
        session=session, customer_id=cid, amount_minor=-300, currency="EUR", purchased_at=T0
    )
    assert refund.amount_minor == -300


@pytest.mark.parametrize(
    ("amount", "currency", "message"),
    [
        (100, "EURO", "three letters"),
        (100, "E1R", "three letters"),
        (100, "", "three letters"),
        (1.5, "EUR", "whole number"),
        (True, "EUR", "whole number"),
        (10**30, "EUR", "too large"),
    ],
)
async def test_bad_purchase_is_refused_and_nothing_written(
    session: AsyncSession, amount: object, currency: str, message: str
) -> None:
    cid = await _customer(session)
    with pytest.raises(InvalidInput, match=message):
        await record_purchase(
            session=session,
            customer_id=cid,
            amount_minor=amount,  # type: ignore[arg-type]
            currency=currency,
            purchased_at=T0,
        )
    assert await _purchase_count(session) == 0


async def test_amounts_beyond_32_bits_are_stored(session: AsyncSession) -> None:
    cid = await _customer(session)
    p = await record_purchase(
        session=session, customer_id=cid, amount_minor=5 * 10**12, currency="VND", purchased_at=T0
    )
    assert p.amount_minor == 5 * 10**12


async def test_unknown_customer(session: AsyncSession) -> None:
    with pytest.raises(CustomerNotFound):
        await record_purchase(
            session=session, customer_id=404, amount_minor=1, currency="EUR", purchased_at=T0
        )
    assert await _purchase_count(session) == 0
