"""Plumbing shared by the desk services (complaints, handoffs, agents): transactions, portable
"insert unless present", and writing desk events onto the customer's timeline."""

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.errors import CustomerNotFound, InvalidInput
from crm_core.models import Channel, Customer, Direction, Interaction, InteractionKind

E = TypeVar("E", bound=StrEnum)
MAX_MERGE_HOPS = 10

# Reads overwrite objects already in the session: another session or instance may have changed
# the rows since they were loaded, and services must act on what the database says now.
FRESH: dict[str, Any] = {"populate_existing": True}


@asynccontextmanager
async def transaction(session: AsyncSession) -> AsyncIterator[None]:
    """One unit of work: commit on success; on any error discard everything it wrote.

    The work runs in a SAVEPOINT so that a failure rolls back only that work: a full rollback
    would expire every object the caller holds, and reading one afterwards (e.g. to word the
    error for the user) would then try lazy IO and fail under asyncio. The outer transaction is
    still ended either way: on SQLite it holds the write lock (BEGIN IMMEDIATE), on PostgreSQL
    row locks, so read-only services end it too.
    """
    try:
        async with session.begin_nested():
            yield
    except Exception:
        await _end_after_error(session)
        raise
    await session.commit()


async def _end_after_error(session: AsyncSession) -> None:
    try:
        await session.commit()  # the savepoint is gone: this writes nothing of the failed work
    except Exception:  # the connection itself is broken: give up the whole transaction
        await session.rollback()


def dialect_name(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


async def insert_ignoring_conflict(
    session: AsyncSession,
    model: type[SQLModel],
    values: Mapping[str, Any],
    index_elements: Sequence[str],
) -> None:
    """INSERT ... ON CONFLICT DO NOTHING, on SQLite and PostgreSQL alike (race-safe upsert)."""
    dialect = postgresql if dialect_name(session) == "postgresql" else sqlite
    table = model.__table__  # type: ignore[attr-defined]
    stmt = (
        dialect.insert(table)
        .values(**values)
        .on_conflict_do_nothing(index_elements=list(index_elements))
    )
    await session.exec(stmt)


def parse_choice(enum: type[E], value: str | E, what: str) -> E:
    """Accept an enum member or its value in any case; otherwise explain the options."""
    if isinstance(value, enum):
        return value
    cleaned = str(value).strip().lower().replace(" ", "_").replace("-", "_")
    try:
        return enum(cleaned)
    except ValueError:
        options = ", ".join(member.value for member in enum)
        raise InvalidInput(f"Unknown {what} {value!r}. Choose one of: {options}.") from None


def log_desk_event(
    session: AsyncSession,
    *,
    customer_id: int | None,
    kind: InteractionKind,
    direction: Direction,
    text: str | None = None,
    details: dict[str, Any] | None = None,
    complaint_id: int | None = None,
    handoff_id: int | None = None,
    occurred_at: datetime | None = None,
    channel: str = Channel.telegram,
) -> None:
    """Put a desk event on the customer's timeline, inside the caller's transaction.

    Written with the model directly (not the interactions service) so that the event and the
    change it records commit or roll back together.
    """
    interaction = Interaction(
        customer_id=customer_id,
        channel=str(channel),
        direction=direction,
        kind=kind,
        text=text,
        details=details or {},
        complaint_id=complaint_id,
        handoff_id=handoff_id,
    )
    if occurred_at is not None:
        interaction.occurred_at = occurred_at
    session.add(interaction)


async def resolve_customer(session: AsyncSession, customer_id: int) -> Customer:
    """The customer, following merges to the survivor (a stale id still finds the person)."""
    customer = await session.get(Customer, customer_id)
    hops = 0
    while customer is not None and customer.merged_into_id is not None and hops < MAX_MERGE_HOPS:
        customer = await session.get(Customer, customer.merged_into_id)
        hops += 1
    if customer is None:
        raise CustomerNotFound(f"There is no customer #{customer_id}.")
    return customer
