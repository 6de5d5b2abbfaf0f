"""Human-friendly references (``C-000123``) allocated from the ``reference_counter`` table.

The number is taken with ``UPDATE ... SET value = value + 1 RETURNING value`` inside the caller's
transaction: the row lock (PostgreSQL) or the write lock (SQLite, BEGIN IMMEDIATE) makes
concurrent filers queue, and a rolled-back filing gives its number back, so references are
distinct and gap-free.
"""

import re

from sqlalchemy import update
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.errors import ComplaintNotFound
from crm_core.models import ReferenceCounter
from crm_core.services._sql import insert_ignoring_conflict

COMPLAINT_PREFIX = "C-"
REFERENCE_DIGITS = 6

# "C-000123", "c-123", "C123", "c 123", "#123", "123" (a letter prefix other than ours is not ours).
_REFERENCE_RE = re.compile(r"^#?\s*(?:(?P<letters>[A-Z]+)\s*[-_ ]?\s*)?(?P<number>\d{1,12})$")


def format_reference(number: int, prefix: str = COMPLAINT_PREFIX) -> str:
    """``C-000123``; numbers past 999999 simply grow (``C-1234567``)."""
    return f"{prefix}{number:0{REFERENCE_DIGITS}d}"


def parse_reference(text: str, prefix: str = COMPLAINT_PREFIX) -> str:
    """Normalise what a person typed into the canonical reference, or raise ComplaintNotFound.

    Tolerant of case, a missing dash, missing zero padding and a bare number.
    """
    cleaned = text.strip().upper()
    match = _REFERENCE_RE.match(cleaned)
    letters = prefix.rstrip("-_ ").upper()
    if match is None or (match["letters"] is not None and match["letters"] != letters):
        raise ComplaintNotFound(
            f"{text.strip()!r} is not a complaint reference; references look like "
            f"{format_reference(123, prefix)}."
        )
    number = int(match["number"])
    if number == 0:
        raise ComplaintNotFound(f"There is no complaint {text.strip()!r}.")
    return format_reference(number, prefix)


async def next_reference(
    *, session: AsyncSession, name: str = "complaint", prefix: str = COMPLAINT_PREFIX
) -> str:
    """Allocate the next reference inside the caller's transaction (does not commit)."""
    number = await _increment(session, name)
    if number is None:
        # First use: create the counter; ON CONFLICT DO NOTHING makes two first users safe.
        await insert_ignoring_conflict(
            session, ReferenceCounter, {"name": name, "value": 0}, index_elements=["name"]
        )
        number = await _increment(session, name)
        assert number is not None
    return format_reference(number, prefix)


async def _increment(session: AsyncSession, name: str) -> int | None:
    stmt = (
        update(ReferenceCounter)
        .where(col(ReferenceCounter.name) == name)
        .values(value=col(ReferenceCounter.value) + 1)
        .returning(col(ReferenceCounter.value))
    )
    value = (await session.exec(stmt)).scalar_one_or_none()
    return None if value is None else int(value)
