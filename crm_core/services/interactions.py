"""The customer's timeline: every message, answer, event and note, exactly once."""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.clock import utcnow
from crm_core.models import Direction, Interaction, InteractionKind
from crm_core.services._sql import dialect_insert, single_write, unit_of_work
from crm_core.services.customers import resolve_customer


@dataclass
class LoggedInteraction:
    interaction: Interaction
    created: bool


async def log_interaction(
    *,
    session: AsyncSession,
    customer_id: int | None,
    channel: str,
    direction: Direction,
    kind: InteractionKind,
    text: str | None = None,
    details: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
    handoff_id: int | None = None,
    complaint_id: int | None = None,
    occurred_at: datetime | None = None,
) -> LoggedInteraction:
    """Append to the timeline (of the merge survivor, if ``customer_id`` was absorbed).

    With an ``idempotency_key`` (e.g. ``"tg:update:<update_id>"``) a redelivered event writes
    nothing and returns the row already stored (``created=False``), also when two deliveries
    race: the insert is ``ON CONFLICT DO NOTHING`` on the key's unique constraint.
    """
    async with single_write(session):
        return await add_interaction_no_commit(
            session,
            customer_id=customer_id,
            channel=channel,
            direction=direction,
            kind=kind,
            text=text,
            details=details,
            idempotency_key=idempotency_key,
            handoff_id=handoff_id,
            complaint_id=complaint_id,
            occurred_at=occurred_at,
        )


async def add_interaction_no_commit(
    session: AsyncSession,
    *,
    customer_id: int | None,
    channel: str,
    direction: Direction,
    kind: InteractionKind,
    text: str | None = None,
    details: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
    handoff_id: int | None = None,
    complaint_id: int | None = None,
    occurred_at: datetime | None = None,
) -> LoggedInteraction:
    """:func:`log_interaction` inside the caller's transaction."""
    if customer_id is not None:
        customer_id = (await resolve_customer(session, customer_id)).id
    row = Interaction(
        customer_id=customer_id,
        channel=channel,
        direction=direction,
        kind=kind,
        text=text,
        details=dict(details or {}),
        idempotency_key=idempotency_key,
        handoff_id=handoff_id,
        complaint_id=complaint_id,
        occurred_at=occurred_at or utcnow(),
    )
    if idempotency_key is None:
        session.add(row)
        await session.flush()
        return LoggedInteraction(interaction=row, created=True)
    values = row.model_dump(exclude={"id"})
    stmt = _insert_once(session)
    new_id = (await session.exec(stmt, params=values)).scalar_one_or_none()
    if new_id is not None:
        # Everything stored is what we just wrote: no need to read it back.
        row.id = new_id
        return LoggedInteraction(interaction=row, created=True)
    existing = (
        await session.exec(
            select(Interaction).where(Interaction.idempotency_key == idempotency_key)
        )
    ).one()
    return LoggedInteraction(interaction=existing, created=False)


# One statement per dialect, built once: the values come as parameters (this runs for every
# message in and out, and building an INSERT construct costs more than executing it).
_INSERT_ONCE: dict[str, Any] = {}


def _insert_once(session: AsyncSession) -> Any:
    dialect = session.get_bind().dialect.name
    stmt = _INSERT_ONCE.get(dialect)
    if stmt is None:
        # The table, not the model: a plain INSERT, not the ORM's bulk-insert machinery.
        table = Interaction.__table__  # type: ignore[attr-defined]
        stmt = _INSERT_ONCE[dialect] = (
            dialect_insert(session, table)
            .on_conflict_do_nothing(index_elements=["idempotency_key"])
            .returning(table.c.id)
        )
    return stmt


async def recent_interactions(
    *,
    session: AsyncSession,
    customer_id: int,
    limit: int = 20,
    kinds: Iterable[InteractionKind] | None = None,
) -> list[Interaction]:
    """The customer's last ``limit`` interactions, oldest first (newest last)."""
    async with unit_of_work(session):
        customer = await resolve_customer(session, customer_id)
        return await recent_interactions_no_commit(session, customer.id, limit=limit, kinds=kinds)


async def recent_interactions_no_commit(
    session: AsyncSession,
    customer_id: int | None,
    *,
    limit: int = 20,
    kinds: Iterable[InteractionKind] | None = None,
) -> list[Interaction]:
    stmt = select(Interaction).where(Interaction.customer_id == customer_id)
    if kinds is not None:
        stmt = stmt.where(col(Interaction.kind).in_(list(kinds)))
    stmt = stmt.order_by(col(Interaction.occurred_at).desc(), col(Interaction.id).desc())
    rows = list((await session.exec(stmt.limit(limit))).all())
    rows.reverse()
    return rows
