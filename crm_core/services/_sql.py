"""Plumbing every service shares: its unit of work, portable upserts, and merge-following.

One place, so that all services end their transactions the same way: on SQLite an open
transaction holds the write lock (``BEGIN IMMEDIATE``, see ``crm_core.db``) and on PostgreSQL
its row locks, so even read-only services end theirs.
"""

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.errors import CustomerNotFound
from crm_core.models import Customer

# A chain of merges longer than this is a bug, not data: stop rather than loop.
MAX_MERGE_HOPS = 32


@asynccontextmanager
async def unit_of_work(session: AsyncSession) -> AsyncIterator[None]:
    """One service call = one transaction: commit on success; on any error discard everything
    the work wrote, and re-raise.

    The work runs in a SAVEPOINT so that a failure rolls back only that work: a full rollback
    would expire every object the caller holds, and reading one afterwards (e.g. to word the
    error for the user) would then try lazy IO and fail under asyncio (``MissingGreenlet``).
    The outer transaction is ended either way, to release its locks. A fresh session (no
    transaction, nothing loaded) needs no savepoint: a rollback there loses nothing.
    """
    if not session.in_transaction() and not session.identity_map and not session.new:
        # A fresh session (the first work of an update): nothing is held that a rollback
        # could expire, so the savepoint's two round trips buy nothing.
        try:
            yield
        except BaseException:
            await session.rollback()
            raise
        await session.commit()
        return
    try:
        async with session.begin_nested():
            yield
    except BaseException:
        await _end_after_error(session)
        raise
    await session.commit()


@asynccontextmanager
async def single_write(session: AsyncSession) -> AsyncIterator[None]:
    """:func:`unit_of_work` for a work that fails only when the database does (an idempotent
    INSERT): outside a transaction it needs no savepoint. On failure the session lets go of
    the objects the caller holds (they stay readable, detached) instead of expiring them."""
    if session.in_transaction() or session.new or session.dirty or session.deleted:
        async with unit_of_work(session):
            yield
        return
    try:
        yield
    except BaseException:
        session.expunge_all()
        await session.rollback()
        raise
    await session.commit()


async def _end_after_error(session: AsyncSession) -> None:
    try:
        await session.commit()  # the savepoint is gone: this writes nothing of the failed work
    except Exception:  # the connection itself is broken: give up the whole transaction
        await session.rollback()


def dialect_insert(session: AsyncSession, model: Any) -> Any:
    """``INSERT`` with ``on_conflict_do_nothing``/``on_conflict_do_update`` for this session's
    database (PostgreSQL and SQLite spell them the same way)."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(model)
    return sqlite.insert(model)


async def insert_ignoring_conflict(
    session: AsyncSession,
    model: type[SQLModel],
    values: Mapping[str, Any],
    index_elements: Sequence[str],
) -> None:
    """INSERT ... ON CONFLICT DO NOTHING (a race-safe "create unless present")."""
    stmt = (
        dialect_insert(session, model)
        .values(**values)
        .on_conflict_do_nothing(index_elements=list(index_elements))
    )
    await session.exec(stmt)


async def resolve_customer(session: AsyncSession, customer_id: int) -> Customer:
    """Load a customer, following merge tombstones to the survivor, so that a stale id (an old
    button, an in-flight update) still finds the person (no commit)."""
    customer = await session.get(Customer, customer_id)
    hops = 0
    while customer is not None and customer.merged_into_id is not None and hops < MAX_MERGE_HOPS:
        customer = await session.get(Customer, customer.merged_into_id)
        hops += 1
    if customer is None:
        raise CustomerNotFound(f"There is no customer #{customer_id}.")
    return customer
