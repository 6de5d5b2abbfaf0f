"""Retention: interactions older than N days lose what a person said or can be recognised by,
or go altogether.

What counts is the ``interaction`` table only (the customers' timeline: messages, answers,
events, notes, ratings). Complaints (their description, attachments and events), handoffs,
purchases and the customers themselves are kept: they are business records, erased per person
by ``privacy.forget_customer``.

- ``anonymise`` (the default): the row stays with its kind, direction, channel, time and its
  links (customer, handoff, complaint), so every count, rate and time of the supervisors'
  figures stays as it was. Its ``text`` goes, and of its ``details`` only the keys in
  :data:`KEPT_DETAILS` stay (verdicts, votes, scores, article ids, statuses...); anything else
  goes, including Telegram chat and message ids, attachments' file ids, names and the agents'
  texts. ``anonymized_at`` marks the row, so a sweep never reads it again.
- ``delete``: the rows are deleted; figures over periods older than N days then count less.

Work is done in batches of ``batch_size`` rows, one transaction each, so SQLite's write lock is
never held for longer than one batch; ``max_batches`` bounds one call (a sweeper's share).
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import bindparam, delete, func, select, update
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.clock import utcnow
from crm_core.models import Interaction
from crm_core.services._sql import unit_of_work

BATCH_SIZE = 1000

# Details that say what happened, never who or what was said: what the figures and the
# timeline's labels read.
KEPT_DETAILS = frozenset(
    {
        "action",
        "article_id",
        "candidates",  # the articles offered: ids, titles, confidences
        "category",
        "confidence",
        "content",  # "text", "photo", "media"...: the type, not the content
        "event",
        "from_status",
        "helpful",
        "reference",
        "score",
        "severity",
        "small_talk",
        "status",
        "template",
        "title",  # an article's title
        "to_status",
        "type",
        "verdict",
        "via",
    }
)
_KEPT_IN_CANDIDATES = frozenset({"article_id", "title", "confidence"})


class RetentionMode(StrEnum):
    anonymise = "anonymise"
    delete = "delete"


@dataclass(frozen=True)
class RetentionReport:
    mode: RetentionMode
    before: datetime  # rows that occurred before this were (or would be) touched
    touched: int  # rows anonymised or deleted (with dry_run: that would be)
    finished: bool  # False when max_batches ended the call with old rows left


def retention_cutoff(days: int, now: datetime | None = None) -> datetime:
    return (now or utcnow()) - timedelta(days=days)


def anonymised_details(details: dict[str, Any] | None) -> dict[str, Any]:
    """``details`` with only the keys that identify nobody."""
    kept = {key: value for key, value in (details or {}).items() if key in KEPT_DETAILS}
    if isinstance(kept.get("candidates"), list):
        kept["candidates"] = [
            {key: value for key, value in entry.items() if key in _KEPT_IN_CANDIDATES}
            for entry in kept["candidates"]
            if isinstance(entry, dict)
        ]
    return kept


async def apply_retention(
    *,
    session: AsyncSession,
    before: datetime,
    mode: RetentionMode = RetentionMode.anonymise,
    dry_run: bool = False,
    batch_size: int = BATCH_SIZE,
    max_batches: int | None = None,
) -> RetentionReport:
    """Anonymise or delete the interactions that occurred before ``before`` (see the module
    docstring); with ``dry_run`` only count them."""
    if dry_run:
        async with unit_of_work(session):
            stmt: Any = select(func.count()).select_from(Interaction).where(*_due(mode, before))
            count = (await session.exec(stmt)).one()
        return RetentionReport(mode, before, int(count[0]), finished=True)
    step = _anonymise_batch if mode is RetentionMode.anonymise else _delete_batch
    touched, batches = 0, 0
    while max_batches is None or batches < max_batches:
        done = await step(session, before, batch_size)
        touched += done
        batches += 1
        if done < batch_size:
            return RetentionReport(mode, before, touched, finished=True)
    return RetentionReport(mode, before, touched, finished=False)


def _due(mode: RetentionMode, before: datetime) -> list[Any]:
    old = col(Interaction.occurred_at) < before
    if mode is RetentionMode.anonymise:
        return [_NOT_ANONYMISED, old]
    return [old]


# With ``occurred_at < before``: a range of ix_interaction_retention, however many anonymised
# rows lie before it.
_NOT_ANONYMISED = col(Interaction.anonymized_at).is_(None)
_RETENTION_ORDER = (col(Interaction.anonymized_at), col(Interaction.occurred_at))


async def _anonymise_batch(session: AsyncSession, before: datetime, size: int) -> int:
    now = utcnow()
    async with unit_of_work(session):
        stmt: Any = (
            select(col(Interaction.id), col(Interaction.details))
            .where(_NOT_ANONYMISED, col(Interaction.occurred_at) < before)
            .order_by(*_RETENTION_ORDER)
            .limit(size)
        )
        rows = (await session.exec(stmt)).all()
        if rows:
            table: Any = Interaction.__table__  # type: ignore[attr-defined]
            # One executemany: each row keeps its own harmless details.
            await session.exec(
                update(table)
                .where(table.c.id == bindparam("row_id"))
                .values(text=None, details=bindparam("kept"), anonymized_at=now),
                params=[
                    {"row_id": row_id, "kept": anonymised_details(details)}
                    for row_id, details in rows
                ],
            )
    return len(rows)


async def _delete_batch(session: AsyncSession, before: datetime, size: int) -> int:
    old = col(Interaction.occurred_at) < before
    async with unit_of_work(session):
        # The rows never anonymised first (an index range), then those that were.
        ids = await _ids(session, [_NOT_ANONYMISED, old], size)
        if len(ids) < size:
            ids += await _ids(
                session, [col(Interaction.anonymized_at).is_not(None), old], size - len(ids)
            )
        if ids:
            await session.exec(delete(Interaction).where(col(Interaction.id).in_(ids)))
    return len(ids)


async def _ids(session: AsyncSession, where: list[Any], size: int) -> list[int]:
    stmt: Any = select(col(Interaction.id)).where(*where).order_by(*_RETENTION_ORDER).limit(size)
    return [row[0] for row in (await session.exec(stmt)).all()]
