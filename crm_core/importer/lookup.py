"""The lookup maps a file is validated against: what the database already holds, read once
before validation (in one short read transaction, see ``write.read_transaction``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, select

from crm_core.models import Customer


def table_of(model: Any) -> Table:
    result: Table = model.__table__
    return result


# A customer's id and the columns that identify them in a file.
_IDENTITY = ("id", "external_id", "email", "phone")


@dataclass
class ExistingCustomer:
    id: int
    external_id: str | None
    email: str | None
    phone: str | None
    name: str | None
    language: str | None
    tags: list[str]
    merged_into_id: int | None
    anonymized: bool


@dataclass
class CustomerKeys:
    by_key: dict[str, dict[str, int]]  # identifier field -> value -> customer id
    merged_into: dict[int, int]


def load_customers(conn: Any) -> list[ExistingCustomer]:
    """Every customer, for matching and updating the rows of a customers file."""
    columns = (*_IDENTITY, "name", "language", "tags", "merged_into_id", "anonymized_at")
    query = select(*table_of(Customer).c[columns])
    return [
        ExistingCustomer(
            id=r.id,
            external_id=r.external_id,
            email=r.email,
            phone=r.phone,
            name=r.name,
            language=r.language,
            tags=list(r.tags or []),
            merged_into_id=r.merged_into_id,
            anonymized=r.anonymized_at is not None,
        )
        for r in conn.execute(query)
    ]


def load_customer_keys(conn: Any) -> CustomerKeys:
    """Customer ids by identifier (as a purchases file names them) and the merges to follow."""
    query = select(*table_of(Customer).c[(*_IDENTITY, "merged_into_id")])
    keys = CustomerKeys(
        by_key={"customer_external_id": {}, "customer_email": {}, "customer_phone": {}},
        merged_into={},
    )
    for row in conn.execute(query):
        for fld, value in (
            ("customer_external_id", row.external_id),
            ("customer_email", row.email),
            ("customer_phone", row.phone),
        ):
            if value:
                keys.by_key[fld][value] = row.id
        if row.merged_into_id is not None:
            keys.merged_into[row.id] = row.merged_into_id
    return keys
