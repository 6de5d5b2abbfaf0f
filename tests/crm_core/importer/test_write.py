"""Writing an import: re-runs change nothing, updates, and all-or-nothing transactions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.errors import ImportFailed
from crm_core.importer import import_customers, import_purchases, lookup
from crm_core.importer import write as importer_write
from crm_core.models import Customer, Purchase
from crm_core.services.customers import identify_customer, link_email
from tests.crm_core.importer.csv_files import PURCHASES, count, customers, load_customers, write

# --------------------------------------------------------------------------------------------
# Customers
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Failures roll everything back
# --------------------------------------------------------------------------------------------


async def test_a_database_failure_midway_leaves_the_database_unchanged(
    session: AsyncSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await load_customers(session, tmp_path)
    many = "customer_id,amount,date,order_id\n" + "".join(
        f"C1,{n}.00,2024-01-01,X{n}\n" for n in range(1, 11)
    )
    real_execute = importer_write._execute_batch
    calls = 0

    async def fail_on_third_batch(conn: Any, statement: Any, rows: list[Any]) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise OperationalError("INSERT", {}, Exception("disk I/O error"))
        await real_execute(conn, statement, rows)

    monkeypatch.setattr(importer_write, "_execute_batch", fail_on_third_batch)

    with pytest.raises(ImportFailed, match=r"nothing was imported.*disk I/O error"):
        await import_purchases(session=session, source=write(tmp_path, many), batch_size=2)

    assert calls == 3  # two batches were written before the failure...
    assert await count(session, Purchase) == 0  # ...and rolled back with it


async def test_a_customer_created_meanwhile_makes_the_import_fail_cleanly(
    session: AsyncSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The file was checked against the database before the bot linked the same e-mail.
    monkeypatch.setattr(lookup, "load_customers", lambda conn: [])
    bot_user = await identify_customer(session=session, channel="telegram", external_id="1")
    await link_email(session=session, customer_id=bot_user.id or 0, email="ada@example.com")
    path = write(tmp_path, "email,name\nnew@example.com,New\nada@example.com,Ada\n")

    with pytest.raises(ImportFailed, match="refused the import, nothing was imported"):
        await import_customers(session=session, source=path)
    assert await count(session, Customer) == 1
