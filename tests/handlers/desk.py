"""Shared steps of the end-to-end tests around the agents' group."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from sqlalchemy import update
from sqlmodel import col, select

from crm_core.clock import utcnow
from crm_core.models import (
    CardRefresh,
    GroupEditBudget,
    Handoff,
    Interaction,
    InteractionKind,
)
from handlers.agents import live_cards
from tests.fakes.bot_api import FakeChat, StoredMessage
from tests.handlers.conftest import Agent, Customer, Harness, HarnessFactory

GROUP_ID = -1001000000001


async def start(
    harness_factory: HarnessFactory, *, forum: bool = True, **settings: Any
) -> tuple[Harness, FakeChat]:
    harness = await harness_factory(agent_chat_id=GROUP_ID, **settings)
    group = harness.agents_group(GROUP_ID, forum=forum)
    return harness, group


async def drain(harness: Harness, *people: Customer | Agent) -> None:
    """Let everything pending finish and mark it read."""
    await harness.settle()
    for person in people:
        person.cursor = len(harness.fake.messages)


async def card_shows(
    harness: Harness,
    card: StoredMessage,
    *,
    text: str | None = None,
    buttons: list[str] | None = None,
    timeout: float = 5,  # noqa: ASYNC109
) -> StoredMessage:
    """The card as the group sees it once it shows ``text`` and exactly ``buttons`` (a card is
    edited at most once per ``card_refresh_seconds``: a quick second change shows later)."""

    def shown() -> StoredMessage | None:
        now = harness.fake.message(card.chat_id, card.message_id)
        labels = [button["text"] for button in now.inline_buttons()]
        if text is not None and text not in now.text:
            return None
        return now if buttons is None or labels == buttons else None

    return await harness.fake.wait_for(shown, timeout, what=f"card showing {text!r} {buttons}")


async def topic_named(harness: Harness, group: FakeChat, topic_id: int, name: str) -> None:
    """Until the forum topic ``topic_id`` is called ``name`` (renames are paced like cards)."""
    await harness.fake.wait_for(
        lambda: group.topics[topic_id].name == name, what=f"topic named {name!r}"
    )


async def cards_idle(harness: Harness, timeout: float = 5) -> None:  # noqa: ASYNC109
    """Until every update is processed and no refresher is half-way through a card (the
    group may show its edit a moment before the refresher records it)."""
    await harness.settle()
    while True:
        finished = live_cards.next_pass(harness.app)  # taken first: a pass ending now sets it
        async with harness.session_factory() as session:
            leased = await session.exec(
                select(CardRefresh.id).where(col(CardRefresh.leased_until).is_not(None))
            )
            if not leased.all():
                return
        await asyncio.wait_for(finished.wait(), timeout)


async def a_minute_later(harness: Harness, *, after_restart: bool = False) -> None:
    """As if a minute had passed for the cards: none was edited recently (each may be edited
    at once again), no refresher holds one, and every group's edit budget is unspent.
    ``after_restart``: a lease the stopped instance left is not waited for (it would run out)."""
    if after_restart:  # drop the lease the stopped instance left, then let this one finish
        await harness.settle()
        async with harness.session_factory() as session:
            await session.exec(update(CardRefresh).values(leased_until=None))
            await session.commit()
    await cards_idle(harness)  # a refresh finishing after the rewind would spend the budget
    past = utcnow() - timedelta(minutes=1)
    async with harness.session_factory() as session:
        await session.exec(
            update(CardRefresh)
            .where(col(CardRefresh.refreshed_at).is_not(None))
            .values(refreshed_at=past, leased_until=None)
        )
        await session.exec(update(CardRefresh).values(leased_until=None))
        for budget in (await session.exec(select(GroupEditBudget))).all():
            budget.sent = [moment - 60 for moment in budget.sent]
            session.add(budget)
        await session.commit()


async def stale_cards(harness: Harness) -> list[tuple[str, int]]:
    """The cards still marked as not showing their state (kind, subject id)."""
    await cards_idle(harness)
    async with harness.session_factory() as session:
        rows = await session.exec(
            select(CardRefresh).where(col(CardRefresh.stale_since).is_not(None))
        )
        return [(row.kind, row.subject_id) for row in rows.all()]


async def latest_handoff(harness: Harness) -> Handoff:
    await harness.settle()
    async with harness.session_factory() as session:
        row = (await session.exec(select(Handoff).order_by(col(Handoff.id).desc()))).first()
    assert row is not None
    return row


async def interactions(harness: Harness, kind: InteractionKind) -> list[Interaction]:
    await harness.settle()
    async with harness.session_factory() as session:
        rows = await session.exec(
            select(Interaction).where(Interaction.kind == kind).order_by(col(Interaction.id))
        )
        return list(rows.all())


async def open_handoff(harness: Harness, customer: Customer, agent: Agent) -> StoredMessage:
    """The customer asks something, then for a person; returns the card agents see."""
    await customer.send("My parcel never arrived")
    await drain(harness, customer)
    await customer.ask("/human", contains="person")
    card = await agent.expect("Handoff H-")
    # The card is visible a moment before the commit that links its topic to the handoff:
    # an agent writing there at once could beat it (their message would find no handoff).
    await harness.settle()
    return card


def agent_photo(caption: str) -> dict[str, Any]:
    photo = [{"file_id": "agentphoto1", "file_unique_id": "uap1", "width": 90, "height": 90}]
    return {"photo": photo, "caption": caption}
