"""Reading import files: what is not usable CSV, encodings, headers and field sizes."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.errors import ImportFailed
from crm_core.importer import import_customers, import_purchases
from crm_core.models import Customer, Purchase
from tests.crm_core.importer.csv_files import count, customers, load_customers, write


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


async def test_an_overlong_field_rejects_its_row_only(
    session: AsyncSession, tmp_path: Path
) -> None:
    text = f"id,name\nC1,Ada\nC2,{'x' * 200_000}\nC3,Bob\n"
    report = await import_customers(session=session, source=write(tmp_path, text))
    assert report.rejected == [(3, "name longer than 200 characters")]
    assert sorted(await customers(session)) == ["Ada", "Bob"]
