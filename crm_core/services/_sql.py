"""Small SQL helpers shared by the customer-side services (dialect-specific upserts)."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.errors import DomainError


def dialect_insert(session: AsyncSession, model: Any) -> Any:
    """``INSERT`` with ``on_conflict_do_nothing``/``on_conflict_do_update`` for this session's
    database (PostgreSQL and SQLite spell them the same way)."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(model)
    return sqlite.insert(model)


@asynccontextmanager
async def unit_of_work(session: AsyncSession) -> AsyncIterator[None]:
    """One service call = one transaction, committed at the end.

    Services check everything that can raise a :class:`DomainError` before they write, so on such
    an error the transaction is ended with a COMMIT of nothing: a ROLLBACK would expire every
    object the caller holds (reading one later would then fail outside an await). Any other
    exception rolls back.
    """
    try:
        yield
    except DomainError:
        if session.new or session.dirty or session.deleted:
            await session.rollback()
        else:
            await session.commit()
        raise
    except BaseException:
        await session.rollback()
        raise
    await session.commit()
