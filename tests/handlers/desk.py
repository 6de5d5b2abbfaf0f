"""Shared steps of the end-to-end tests around the agents' group."""

from __future__ import annotations

from typing import Any

from sqlmodel import col, select

from crm_core.models import (
    Handoff,
    Interaction,
    InteractionKind,
)
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
