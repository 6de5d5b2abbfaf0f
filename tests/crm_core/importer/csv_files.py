"""CSV files and database look-ups shared by the importer tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.importer import ImportReport, import_customers
from crm_core.models import Customer

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
