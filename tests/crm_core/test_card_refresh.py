"""Stale cards and the groups' edit budget, as two instances sharing a database see them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from crm_core.db import SessionFactory
from crm_core.services.card_refresh import (
    budget_used,
    finish_card,
    mark_card_stale,
    next_card_due,
    release_card,
    spend_edit_budget,
    take_due_cards,
)

T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
INTERVAL = timedelta(seconds=3)
CHAT = -1001000000001


async def test_a_burst_of_marks_is_one_refresh_and_a_mark_during_it_keeps_the_card_stale(
    session_factory: SessionFactory,
) -> None:
    async with session_factory() as session:
        for n in range(50):
            await mark_card_stale(
                session=session, kind="complaint", subject_id=7, now=T0 + timedelta(seconds=n / 100)
            )
        (card,) = await take_due_cards(session=session, interval=INTERVAL, now=T0)
        assert card.version == 50
        await mark_card_stale(session=session, kind="complaint", subject_id=7, now=T0)  # meanwhile
        await finish_card(session=session, card=card, edited=True, now=T0)

        # Still stale (it showed version 50 of 51), due once the interval has passed.
        assert await take_due_cards(session=session, interval=INTERVAL, now=T0) == []
        due = await next_card_due(session=session, interval=INTERVAL, now=T0)
        assert due == T0 + INTERVAL
        (again,) = await take_due_cards(session=session, interval=INTERVAL, now=due)
        await finish_card(session=session, card=again, edited=True, now=due)
        assert await next_card_due(session=session, interval=INTERVAL, now=due) is None


async def test_two_refreshers_never_take_the_same_card(session_factory: SessionFactory) -> None:
    async with session_factory() as session:
        for subject in range(10):
            await mark_card_stale(session=session, kind="complaint", subject_id=subject, now=T0)

    async def refresher() -> list[int]:
        async with session_factory() as session:
            taken = await take_due_cards(session=session, interval=INTERVAL, now=T0, limit=10)
            return [card.subject_id for card in taken]

    first, second = await asyncio.gather(refresher(), refresher())
    assert sorted(first + second) == list(range(10))
    assert not set(first) & set(second)

    # A released card is stale and free again; a lease left by a crash runs out.
    async with session_factory() as session:
        (card,) = await take_due_cards(
            session=session, interval=INTERVAL, now=T0 + timedelta(minutes=1), only=("complaint", 3)
        )
        await release_card(session=session, card=card)
        assert await take_due_cards(
            session=session, interval=INTERVAL, now=T0 + timedelta(minutes=1), only=("complaint", 3)
        )


async def test_the_groups_budget_holds_for_every_minute_across_instances(
    session_factory: SessionFactory,
) -> None:
    async def spend(now: datetime) -> datetime | None:
        async with session_factory() as session:
            return await spend_edit_budget(
                session=session, chat_id=CHAT, edits=2, per_minute=10, now=now
            )

    # Ten refreshers at once, each wanting two edits: only five get them.
    answers = await asyncio.gather(*(spend(T0) for _ in range(10)))
    assert sum(answer is None for answer in answers) == 5
    assert {answer for answer in answers if answer is not None} == {T0 + timedelta(minutes=1)}
    async with session_factory() as session:
        assert await budget_used(session=session, chat_id=CHAT, now=T0) == 10
        assert await budget_used(session=session, chat_id=-42, now=T0) == 0  # another group
    assert await spend(T0 + timedelta(seconds=59)) is not None
    assert await spend(T0 + timedelta(seconds=60)) is None  # the old edits left the window
