"""CSV import of customers and purchases, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core import importer
from crm_core.errors import ImportFailed, InvalidEmail
from crm_core.importer import ImportReport, import_customers, import_purchases
from crm_core.models import Customer, Purchase
from crm_core.normalize import normalize_email
from crm_core.services.customers import identify_customer, link_email

CUSTOMERS = """\
Customer_ID;Full Name;Mobile;E-Mail;Lang;Tags;Shoe size
C1;Ada Lovelace;+49 151 12345678;Ada@Example.com;EN;vip|newsletter;38
C2;Bob;;bob@example.com;de;;44
;Carol;+44 7911 123456;;;b2b;
"""

PURCHASES = """\
customer_id,customer_email,amount,currency,date,order_id
C1,,12.34,,2024-05-31,O-1
,bob@example.com,"7,50",usd,2024-06-01T12:30:00,O-2
C1,,100,EUR,2024-06-02T10:00:00+02:00,
"""


def write(tmp_path: Path, text: str, name: str = "file.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding=encoding)
    return path


async def customers(session: AsyncSession) -> dict[str, Customer]:
    rows = (await session.exec(select(Customer))).all()  # type: ignore[call-overload]
    return {c.name: c for (c,) in rows}


async def count(session: AsyncSession, model: Any) -> int:
    return int((await session.exec(select(func.count()).select_from(model))).one()[0])  # type: ignore[call-overload]


async def load_customers(session: AsyncSession, tmp_path: Path) -> ImportReport:
    return await import_customers(session=session, source=write(tmp_path, CUSTOMERS, "c.csv"))


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


async def test_rerunning_the_same_customers_file_changes_nothing(
    session: AsyncSession, tmp_path: Path
) -> None:
    await load_customers(session, tmp_path)
    before = {c.id: c.updated_at for c in (await customers(session)).values()}

    again = await load_customers(session, tmp_path)

    assert (again.created, again.updated, again.unchanged) == (0, 0, 3)
    session.expire_all()
    assert {c.id: c.updated_at for c in (await customers(session)).values()} == before


async def test_matching_customers_are_updated_without_erasing(
    session: AsyncSession, tmp_path: Path
) -> None:
    await load_customers(session, tmp_path)
    update = write(
        tmp_path,
        "email,name,phone,tags\n"
        "ada@example.com,Ada King,,b2b\n"  # matched by e-mail; phone cell empty
        "+44 7911 123456,,,\n",  # Carol by phone... in the e-mail column: rejected
        "u.csv",
    )

    report = await import_customers(session=session, source=update)

    assert (report.created, report.updated, report.unchanged) == (0, 1, 0)
    assert report.rejected == [(3, "invalid e-mail “+44 7911 123456”")]
    session.expire_all()
    ada = (await customers(session))["Ada King"]
    assert ada.phone == "+4915112345678"  # not erased
    assert ada.tags == ["vip", "newsletter", "b2b"]  # added, not replaced


async def test_updates_touch_only_the_changed_columns(
    session: AsyncSession, tmp_path: Path
) -> None:
    await load_customers(session, tmp_path)
    path = write(tmp_path, "id,name,lang\nC1,Ada King,\nC2,,fr\n", "two.csv")

    report = await import_customers(session=session, source=path)

    assert (report.updated, report.unchanged) == (2, 0)
    session.expire_all()
    people = await customers(session)
    assert (people["Ada King"].language, people["Bob"].language) == ("en", "fr")


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


async def test_an_overlong_field_rejects_its_row_only(
    session: AsyncSession, tmp_path: Path
) -> None:
    text = f"id,name\nC1,Ada\nC2,{'x' * 200_000}\nC3,Bob\n"
    report = await import_customers(session=session, source=write(tmp_path, text))
    assert report.rejected == [(3, "name longer than 200 characters")]
    assert sorted(await customers(session)) == ["Ada", "Bob"]


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


async def test_strict_and_dry_run_write_nothing(session: AsyncSession, tmp_path: Path) -> None:
    path = write(tmp_path, "email\nok@example.com\nbroken\n", "s.csv")

    strict = await import_customers(session=session, source=path, strict=True)
    dry = await import_customers(session=session, source=path, dry_run=True)

    assert (strict.written, len(strict.rejected), strict.created) == (False, 1, 1)
    assert (dry.written, dry.created) == (False, 1)
    assert "NOT imported" in strict.summary() and "dry run" in dry.summary()
    assert await count(session, Customer) == 0


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


async def test_rerunning_purchases_changes_nothing_even_without_order_ids(
    session: AsyncSession, tmp_path: Path
) -> None:
    await load_customers(session, tmp_path)
    path = write(tmp_path, PURCHASES, "p.csv")
    await import_purchases(session=session, source=path)

    again = await import_purchases(session=session, source=path)

    assert (again.created, again.updated, again.unchanged) == (0, 0, 3)
    assert await count(session, Purchase) == 3


async def test_a_changed_purchase_is_updated(session: AsyncSession, tmp_path: Path) -> None:
    await load_customers(session, tmp_path)
    await import_purchases(session=session, source=write(tmp_path, PURCHASES, "p.csv"))
    fixed = write(tmp_path, "customer_id,amount,date,order_id\nC2,13.00,2024-05-31,O-1\n", "f.csv")

    report = await import_purchases(session=session, source=fixed)

    assert (report.created, report.updated, report.unchanged) == (0, 1, 0)
    session.expire_all()
    (purchase,) = (await session.exec(select(Purchase).where(Purchase.external_ref == "O-1"))).one()  # type: ignore[call-overload]
    assert purchase.amount_minor == 1300
    assert purchase.customer_id == (await customers(session))["Bob"].id


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


async def test_a_database_failure_midway_leaves_the_database_unchanged(
    session: AsyncSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await load_customers(session, tmp_path)
    many = "customer_id,amount,date,order_id\n" + "".join(
        f"C1,{n}.00,2024-01-01,X{n}\n" for n in range(1, 11)
    )
    real_execute = importer._execute_batch
    calls = 0

    async def fail_on_third_batch(conn: Any, statement: Any, rows: list[Any]) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise OperationalError("INSERT", {}, Exception("disk I/O error"))
        await real_execute(conn, statement, rows)

    monkeypatch.setattr(importer, "_execute_batch", fail_on_third_batch)

    with pytest.raises(ImportFailed, match=r"nothing was imported.*disk I/O error"):
        await import_purchases(session=session, source=write(tmp_path, many), batch_size=2)

    assert calls == 3  # two batches were written before the failure...
    assert await count(session, Purchase) == 0  # ...and rolled back with it


async def test_a_customer_created_meanwhile_makes_the_import_fail_cleanly(
    session: AsyncSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The file was checked against the database before the bot linked the same e-mail.
    monkeypatch.setattr(importer, "_load_customers", lambda conn: [])
    bot_user = await identify_customer(session=session, channel="telegram", external_id="1")
    await link_email(session=session, customer_id=bot_user.id or 0, email="ada@example.com")
    path = write(tmp_path, "email,name\nnew@example.com,New\nada@example.com,Ada\n")

    with pytest.raises(ImportFailed, match="refused the import, nothing was imported"):
        await import_customers(session=session, source=path)
    assert await count(session, Customer) == 1


async def test_purchases_file_without_required_columns_is_refused(
    session: AsyncSession, tmp_path: Path
) -> None:
    path = write(tmp_path, "customer_id,amount\nC1,5\n")
    with pytest.raises(ImportFailed, match=r"lacks required column\(s\): purchased_at"):
        await import_purchases(session=session, source=path)


@pytest.mark.parametrize(
    ("kind", "header", "message"),
    [
        ("customers", "email,name,email", "columns 1 “email” and 3 “email” both give email"),
        ("customers", "E-Mail,mail,name", "columns 1 “E-Mail” and 2 “mail” both give email"),
        ("purchases", "customer_id,amount,date,time", "“date” and 4 “time” both give purchased"),
    ],
)
async def test_a_field_named_by_two_columns_is_refused(
    session: AsyncSession, tmp_path: Path, kind: str, header: str, message: str
) -> None:
    await load_customers(session, tmp_path)
    before = await count(session, Customer)
    path = write(tmp_path, f"{header}\nold@example.com,X,new@example.com,12:00\n", "dup.csv")
    load = import_customers if kind == "customers" else import_purchases
    with pytest.raises(ImportFailed, match=message):
        await load(session=session, source=path)
    assert (await count(session, Customer), await count(session, Purchase)) == (before, 0)


# --------------------------------------------------------------------------------------------
# Files that are not CSV
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b"\n\n  \n", "is empty"),
        (b'[{"email": "a@example.com"}]', "looks like JSON"),
        (b"PK\x03\x04\x14\x00\x06\x00", "Excel workbook"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary file"),
        ("email,name\nx@example.com,Zoë\n".encode("latin-1"), "not UTF-8"),
        (
            ("email,name\n" + "x@example.com,Zoe\n" * 5000 + "y@example.com,Zoë\n").encode(
                "latin-1"
            ),
            r"not UTF-8 text \(near line 5002\)",
        ),
        ("email,name\n".encode("utf-16"), "UTF-16"),
        (b'email,name\n"x@example.com,Bob\n', "not valid CSV"),
        (b"colour,size\nred,9\n", "no usable column"),
        (b"id|name|email\nC1|Ada|ada@example.com\n", "separate columns with , ; or tab"),
        (b"name,language\nAda,en\n", "no column to identify customers"),
    ],
)
async def test_files_that_are_not_usable_csv_fail_with_one_clear_error(
    session: AsyncSession, tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "input.csv"
    path.write_bytes(content)

    with pytest.raises(ImportFailed, match=message):
        await import_customers(session=session, source=path)

    assert await count(session, Customer) == 0


async def test_missing_file_is_a_clear_error(session: AsyncSession, tmp_path: Path) -> None:
    with pytest.raises(ImportFailed, match=r"cannot read .*No such file"):
        await import_customers(session=session, source=tmp_path / "nope.csv")


async def test_utf8_bom_and_text_streams_are_accepted(
    session: AsyncSession, tmp_path: Path
) -> None:
    import io

    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffE-mail,Name\nzoe@example.com,Zoë\n".encode())
    stream = io.StringIO("email,name\nyann@example.com,Yann\n")

    first = await import_customers(session=session, source=path)
    second = await import_customers(session=session, source=stream)

    assert (first.created, second.created) == (1, 1)
    assert set(await customers(session)) == {"Zoë", "Yann"}


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
    fast = importer._plain_email(address)
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
    assert importer._plain_email(address) is None


def test_plain_addresses_take_the_fast_path() -> None:
    assert importer._plain_email(" Ada.Lovelace+crm@Mail.Example.COM ") == (
        "ada.lovelace+crm@mail.example.com"
    )
