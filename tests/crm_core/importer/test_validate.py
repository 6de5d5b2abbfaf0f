"""Validating rows: the reasons rows are rejected, normalised values, matching customers."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.errors import ImportFailed, InvalidEmail
from crm_core.importer import import_customers, import_purchases, validate
from crm_core.models import Purchase
from crm_core.normalize import normalize_email
from tests.crm_core.importer.csv_files import PURCHASES, customers, load_customers, write

# --------------------------------------------------------------------------------------------
# Customers
# --------------------------------------------------------------------------------------------


async def test_customers_are_created_with_normalised_contact_data(
    session: AsyncSession, tmp_path: Path
) -> None:
    report = await load_customers(session, tmp_path)

    assert (report.created, report.updated, report.unchanged, report.rejected) == (3, 0, 0, [])
    assert report.ignored_columns == ["Shoe size"]
    assert report.written
    people = await customers(session)
    ada = people["Ada Lovelace"]
    assert (ada.external_id, ada.phone, ada.email, ada.language) == (
        "C1",
        "+4915112345678",
        "ada@example.com",
        "en",
    )
    assert ada.tags == ["vip", "newsletter"]
    assert people["Carol"].phone == "+447911123456"
    assert people["Carol"].external_id is None


async def test_rejected_customer_rows_name_line_and_reason(
    session: AsyncSession, tmp_path: Path
) -> None:
    await load_customers(session, tmp_path)
    path = write(
        tmp_path,
        "external_id,name,phone,email\n"
        'N1,"Dora\nwith a two-line name",+4915199999999,dora@example.com\n'  # lines 2-3
        "N2,Ed,12345,\n"
        "N3,Flo,,not-an-email\n"
        ",Gus,,\n"
        "N1,Dora again,,\n"
        "C9,Ada twin,,ada@example.com\n",
        "bad.csv",
    )

    report = await import_customers(session=session, source=path)

    ada_id = (await customers(session))["Ada Lovelace"].id
    assert report.rejected == [
        (4, "phone “12345” has no country code (write it as +49…, or give the default region)"),
        (5, "invalid e-mail “not-an-email”"),
        (6, "no external_id, e-mail or phone to identify the customer"),
        (7, "duplicate of line 2 (same external_id “N1”)"),
        (8, f"matches customer #{ada_id}, whose external_id is “C1”, not “C9”"),
    ]
    assert report.created == 1
    assert report.rows == 6


async def test_phone_region_reads_local_numbers(session: AsyncSession, tmp_path: Path) -> None:
    path = write(tmp_path, "phone,name\n0151 12345678,Local\n", "local.csv")
    report = await import_customers(session=session, source=path, phone_region="DE")
    assert report.created == 1
    assert (await customers(session))["Local"].phone == "+4915112345678"


@pytest.mark.parametrize("region", ["Germany", "XX"])
async def test_an_unknown_phone_region_is_one_clear_error(
    session: AsyncSession, tmp_path: Path, region: str
) -> None:
    path = write(tmp_path, "email,phone\nx@example.com,030 1234567\n")
    with pytest.raises(ImportFailed, match=f"phone region: “{region}” is not a country code"):
        await import_customers(session=session, source=path, phone_region=region)
    with pytest.raises(ImportFailed, match="is not a country code"):
        await import_purchases(session=session, source=path, phone_region=region)


# --------------------------------------------------------------------------------------------
# Purchases
# --------------------------------------------------------------------------------------------


async def test_purchases_are_imported_for_known_customers(
    session: AsyncSession, tmp_path: Path
) -> None:
    await load_customers(session, tmp_path)

    report = await import_purchases(session=session, source=write(tmp_path, PURCHASES, "p.csv"))

    assert (report.created, report.updated, report.unchanged, report.rejected) == (3, 0, 0, [])
    rows = (await session.exec(select(Purchase).order_by(Purchase.purchased_at))).all()  # type: ignore[call-overload]
    got = [(p.amount_minor, p.currency, p.purchased_at, p.external_ref) for (p,) in rows]
    assert got[:2] == [
        (1234, "EUR", datetime(2024, 5, 31, tzinfo=UTC), "O-1"),
        (750, "USD", datetime(2024, 6, 1, 12, 30, tzinfo=UTC), "O-2"),
    ]
    amount, currency, when, ref = got[2]
    assert (amount, currency, when) == (10000, "EUR", datetime(2024, 6, 2, 8, 0, tzinfo=UTC))
    assert ref is not None and ref.startswith("auto:")  # derived: no order id in the file
    people = await customers(session)
    owners = {p.external_ref: p.customer_id for (p,) in rows}
    assert owners["O-1"] == people["Ada Lovelace"].id
    assert owners["O-2"] == people["Bob"].id


async def test_rejected_purchase_rows_name_line_and_reason(
    session: AsyncSession, tmp_path: Path
) -> None:
    await load_customers(session, tmp_path)
    path = write(
        tmp_path,
        "customer_id\tamount\tpurchased_at\treference\n"
        "C404\t1.00\t2024-01-01\tA\n"
        "C1\tlots\t2024-01-01\tB\n"
        "C1\t1.999\t2024-01-01\tC\n"
        "C1\t1.00\tyesterday\tD\n"
        "C1\t-5\t2024-01-01\tE\n"
        "C1\t1.00\t2024-01-01\tF\n"
        "C2\t2.00\t2024-01-02\tF\n"
        "C1\t1 234,50\t2024-01-03\tG\n",
        "tabs.csv",
    )

    report = await import_purchases(session=session, source=path)

    assert report.rejected == [
        (2, "unknown customer (external_id “C404”); import the customers first"),
        (3, "amount “lots” is not a number"),
        (4, "amount “1.999” has more than 2 decimals for EUR"),
        (5, "date “yesterday” is not ISO 8601 (e.g. 2024-05-31 or 2024-05-31T14:30:00+02:00)"),
        (6, "amount “-5” is negative (refunds are not imported)"),
        (8, "duplicate of line 7 (same order)"),
    ]
    assert report.created == 2
    amounts = (
        await session.exec(select(Purchase.amount_minor).order_by(Purchase.amount_minor))
    ).all()  # type: ignore[call-overload]
    assert [a for (a,) in amounts] == [100, 123450]


async def test_large_amounts_fit_and_absurd_ones_are_rejected_rows(
    session: AsyncSession, tmp_path: Path
) -> None:
    # 30 million EUR and 5 billion VND exceed 32-bit minor units; 1e30 overflows any integer.
    await load_customers(session, tmp_path)
    path = write(
        tmp_path,
        "customer_id,amount,currency,date,order_id\n"
        "C1,30000000.00,EUR,2024-01-01,BIG\n"
        "C1,5000000000,VND,2024-01-01,VND\n"
        "C1,1e30,EUR,2024-01-01,HUGE\n"
        "C1,999999999999999.99,EUR,2024-01-01,FAST\n",
        "big.csv",
    )

    report = await import_purchases(session=session, source=path)

    assert report.rejected == [
        (4, "amount “1e30” is too large"),
        (5, "amount “999999999999999.99” is too large"),
    ]
    amounts = (
        await session.exec(select(Purchase.amount_minor).order_by(Purchase.amount_minor))
    ).all()  # type: ignore[call-overload]
    assert [a for (a,) in amounts] == [3_000_000_000, 5_000_000_000]


async def test_purchases_of_a_merged_customer_go_to_the_survivor(
    session: AsyncSession, tmp_path: Path
) -> None:
    await load_customers(session, tmp_path)
    people = await customers(session)
    bob, ada = people["Bob"], people["Ada Lovelace"]
    bob.merged_into_id = ada.id
    await session.commit()

    report = await import_purchases(
        session=session, source=write(tmp_path, "customer_id,amount,date\nC2,5,2024-01-01\n")
    )

    assert report.created == 1
    (owner,) = (await session.exec(select(Purchase.customer_id))).one()  # type: ignore[call-overload]
    assert owner == ada.id


async def test_purchases_file_without_required_columns_is_refused(
    session: AsyncSession, tmp_path: Path
) -> None:
    path = write(tmp_path, "customer_id,amount\nC1,5\n")
    with pytest.raises(ImportFailed, match=r"lacks required column\(s\): purchased_at"):
        await import_purchases(session=session, source=path)


# --------------------------------------------------------------------------------------------
# The e-mail fast path agrees with the full normalisation
# --------------------------------------------------------------------------------------------


_ATOM = st.text(alphabet="abcXYZ0189_+-", min_size=1, max_size=8)
_LABEL = st.from_regex(r"[a-zA-Z0-9]([a-zA-Z0-9-]{0,8}[a-zA-Z0-9])?", fullmatch=True)
_ADDRESSES = st.builds(
    lambda atoms, labels, tld: f"{'.'.join(atoms)}@{'.'.join(labels)}.{tld}",
    st.lists(_ATOM, min_size=1, max_size=3),
    st.lists(_LABEL, min_size=1, max_size=3),
    st.sampled_from(["com", "DE", "org", "test", "local", "c0m", "museum", "x"]),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_ADDRESSES)
def test_plain_email_fast_path_matches_normalize_email(address: str) -> None:
    fast = validate._plain_email(address)
    try:
        full: str | None = normalize_email(address)
    except InvalidEmail:
        full = None
    assert fast is None or fast == full


@pytest.mark.parametrize(
    "address",
    ["a@xn--bcher-kva.ch", "a@b-.com", "x@printer.local", "a..b@example.com", "Zoë@example.com"],
)
def test_unusual_addresses_take_the_full_path(address: str) -> None:
    assert validate._plain_email(address) is None


def test_plain_addresses_take_the_fast_path() -> None:
    assert validate._plain_email(" Ada.Lovelace+crm@Mail.Example.COM ") == (
        "ada.lovelace+crm@mail.example.com"
    )
