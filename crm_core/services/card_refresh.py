"""Cards that must show a new state, and the per-group budget their edits spend.

A change marks its card stale (:func:`mark_card_stale`); a refresher takes the cards that are
due (:func:`take_due_cards`: stale, not refreshed within the interval, not leased by another
instance), renders them from the database, spends the group's budget for the edits
(:func:`spend_edit_budget`) and reports back (:func:`finish_card`, or :func:`release_card`
to try again later). Everything lives in the database: a restart loses no stale mark, and two
instances neither render the same card at once (the lease) nor overspend a group's budget
(its row is locked while it is counted).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, update
from sqlmodel import col, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.clock import as_utc, utcnow
from crm_core.models import CardRefresh, GroupEditBudget
from crm_core.services._sql import dialect_insert, insert_ignoring_conflict, unit_of_work

WINDOW = timedelta(minutes=1)
# A refresher that died mid-card (a crash) gives it up after this long.
LEASE = timedelta(seconds=30)


@dataclass(frozen=True)
class DueCard:
    """A stale card a refresher has taken (leased) to render."""

    id: int
    kind: str
    subject_id: int
    version: int
    label: dict[str, Any] | None


async def mark_card_stale(
    *,
    session: AsyncSession,
    kind: str,
    subject_id: int,
    label: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> None:
    """The card of ``kind`` ``subject_id`` no longer shows its state (``label``: what a
    closed handoff's button should say from now on)."""
    now = now or utcnow()
    changes: dict[str, Any] = {
        "version": CardRefresh.version + 1,
        "stale_since": _coalesce_stale_since(now),
    }
    values: dict[str, Any] = {
        "kind": kind,
        "subject_id": subject_id,
        "version": 1,
        "stale_since": now,
        "label": label,
    }
    if label is not None:
        changes["label"] = label
    stmt = (
        dialect_insert(session, CardRefresh)
        .values(**values)
        .on_conflict_do_update(index_elements=["kind", "subject_id"], set_=changes)
    )
    async with unit_of_work(session):
        await session.exec(stmt)


def _coalesce_stale_since(now: datetime) -> Any:
    return func.coalesce(col(CardRefresh.stale_since), now)


def _due_filter(now: datetime, interval: timedelta) -> list[Any]:
    return [
        col(CardRefresh.stale_since).is_not(None),
        or_(
            col(CardRefresh.refreshed_at).is_(None),
            col(CardRefresh.refreshed_at) <= now - interval,
        ),
        or_(col(CardRefresh.leased_until).is_(None), col(CardRefresh.leased_until) <= now),
    ]


async def take_due_cards(
    *,
    session: AsyncSession,
    interval: timedelta,
    now: datetime | None = None,
    only: tuple[str, int] | None = None,
    limit: int = 20,
) -> list[DueCard]:
    """Lease the stale cards that may be refreshed now (not refreshed within ``interval``),
    longest stale first; ``only``: just this (kind, subject id), if it is due. A card another
    refresher holds is skipped: each lease is a conditional UPDATE only one refresher wins."""
    now = now or utcnow()
    stmt = select(CardRefresh).where(*_due_filter(now, interval))
    if only is not None:
        stmt = stmt.where(CardRefresh.kind == only[0], CardRefresh.subject_id == only[1])
    stmt = stmt.order_by(col(CardRefresh.stale_since), col(CardRefresh.id)).limit(limit)
    taken: list[DueCard] = []
    async with unit_of_work(session):
        rows = (await session.exec(stmt.execution_options(populate_existing=True))).all()
        for row in rows:
            assert row.id is not None
            won = await session.exec(
                update(CardRefresh)
                .where(col(CardRefresh.id) == row.id, *_due_filter(now, interval))
                .values(leased_until=now + LEASE)
            )
            if won.rowcount == 1:
                taken.append(DueCard(row.id, row.kind, row.subject_id, row.version, row.label))
    return taken


async def finish_card(
    *, session: AsyncSession, card: DueCard, edited: bool, now: datetime | None = None
) -> None:
    """The card shows version ``card.version`` now; it stays stale if a change came since.
    ``edited``: something was sent (the interval then starts again; a refresh that found
    nothing to change leaves the next change free to show at once)."""
    now = now or utcnow()
    changes: dict[str, Any] = {"leased_until": None}
    if edited:
        changes["refreshed_at"] = now
    async with unit_of_work(session):
        await session.exec(
            update(CardRefresh).where(col(CardRefresh.id) == card.id).values(**changes)
        )
        await session.exec(
            update(CardRefresh)
            .where(col(CardRefresh.id) == card.id, col(CardRefresh.version) == card.version)
            .values(stale_since=None)
        )


async def release_card(*, session: AsyncSession, card: DueCard) -> None:
    """Give the card back, still stale (no budget now, Telegram said "later")."""
    async with unit_of_work(session):
        await session.exec(
            update(CardRefresh).where(col(CardRefresh.id) == card.id).values(leased_until=None)
        )


async def next_card_due(
    *, session: AsyncSession, interval: timedelta, now: datetime | None = None
) -> datetime | None:
    """When the next stale card may be refreshed (None: every card is up to date)."""
    now = now or utcnow()
    stmt = select(CardRefresh.refreshed_at, CardRefresh.leased_until).where(
        col(CardRefresh.stale_since).is_not(None)
    )
    async with unit_of_work(session):
        rows = (await session.exec(stmt)).all()
    moments = [
        max(
            [now]
            + ([as_utc(refreshed) + interval] if refreshed else [])
            + ([as_utc(leased)] if leased else [])
        )
        for refreshed, leased in rows
    ]
    return min(moments, default=None)


async def spend_edit_budget(
    *,
    session: AsyncSession,
    chat_id: int,
    edits: int,
    per_minute: int,
    now: datetime | None = None,
) -> datetime | None:
    """Spend ``edits`` of the group's ``per_minute`` budget (any 60 s hold at most that many).
    None when spent; otherwise nothing is spent and the answer is when there will be room.
    The group's row is locked while counting (PostgreSQL), so two instances never both take
    the last slot; SQLite's writers take turns anyway."""
    now = now or utcnow()
    moment = now.timestamp()
    async with unit_of_work(session):
        await insert_ignoring_conflict(
            session, GroupEditBudget, {"chat_id": chat_id, "sent": []}, ["chat_id"]
        )
        stmt = select(GroupEditBudget).where(GroupEditBudget.chat_id == chat_id)
        row = (
            await session.exec(stmt.with_for_update().execution_options(populate_existing=True))
        ).one()
        window = WINDOW.total_seconds()
        recent = [t for t in row.sent if moment - t < window]
        if len(recent) + edits > per_minute:
            # Room comes when enough of the oldest edits have left the window.
            index = min(len(recent) - 1, len(recent) + edits - per_minute - 1)
            free_at = recent[max(index, 0)] + window if recent else moment
            row.sent = recent
            session.add(row)
            return datetime.fromtimestamp(free_at, tz=now.tzinfo)
        row.sent = recent + [moment] * edits
        session.add(row)
    return None


async def budget_used(*, session: AsyncSession, chat_id: int, now: datetime | None = None) -> int:
    """How many edits the group's last minute holds (for tests and the curious)."""
    moment = (now or utcnow()).timestamp()
    async with unit_of_work(session):
        row = await session.get(GroupEditBudget, chat_id, populate_existing=True)
    if row is None:
        return 0
    return sum(1 for t in row.sent if moment - t < WINDOW.total_seconds())
