"""Helpers of the desk services (complaints, handoffs, agents): fresh reads, enum choices from
user input, and writing desk events onto the customer's timeline. Transactions and upserts
are in ``crm_core.services._sql``, shared with every service."""

from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar

from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.errors import InvalidInput
from crm_core.models import Channel, Direction, Interaction, InteractionKind

E = TypeVar("E", bound=StrEnum)

# Reads overwrite objects already in the session: another session or instance may have changed
# the rows since they were loaded, and services must act on what the database says now.
FRESH: dict[str, Any] = {"populate_existing": True}


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
    idempotency_key: str | None = None,
) -> None:
    """Put a desk event on the customer's timeline, inside the caller's transaction.

    Written with the model directly (not the interactions service) so that the event and the
    change it records commit or roll back together (with ``idempotency_key``, a second event
    under the same key fails the whole transaction on the key's unique constraint).
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
        idempotency_key=idempotency_key,
    )
    if occurred_at is not None:
        interaction.occurred_at = occurred_at
    session.add(interaction)
