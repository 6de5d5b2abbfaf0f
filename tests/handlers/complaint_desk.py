"""Shared steps of the tests around complaints in the agents' group: a ``/filetest`` command
files a delivery complaint for its sender and announces it."""

from __future__ import annotations

from typing import Any, NamedTuple

from sqlmodel import select
from telegram import Update
from telegram.ext import CommandHandler

from crm_core.models import Complaint
from crm_core.services.complaints import file_complaint
from handlers.agents.announce import announce_complaint
from handlers.core.context import DeskContext
from tests.fakes.bot_api import StoredMessage
from tests.handlers.conftest import Agent, Customer, Harness, HarnessFactory
from tests.handlers.desk import GROUP_ID


async def file_test_complaint(update: Update, context: DeskContext) -> None:
    """/filetest <text>: file a delivery complaint for the sender and announce it."""
    assert context.customer_id is not None
    complaint = await file_complaint(
        session=context.session,
        customer_id=context.customer_id,
        category="delivery",
        severity="high",
        description=" ".join(context.args or []) or "Parcel lost",
    )
    assert complaint.id is not None
    await announce_complaint(context, complaint_id=complaint.id)


async def start_with_complaints(
    harness_factory: HarnessFactory, *, forum: bool = True, **settings: Any
) -> Harness:
    harness = await harness_factory(
        agent_chat_id=GROUP_ID,
        extra_handlers=[CommandHandler("filetest", file_test_complaint)],
        **settings,
    )
    harness.agents_group(GROUP_ID, forum=forum)
    return harness


class Announced(NamedTuple):
    harness: Harness
    sam: Agent
    alice: Customer
    card: StoredMessage


async def file_and_announce(
    harness_factory: HarnessFactory,
    text: str = "The parcel arrived empty",
    *,
    forum: bool = True,
    **settings: Any,
) -> Announced:
    """Sam in the agents' group, Alice files a complaint, and the card Sam sees announce it."""
    harness = await start_with_complaints(harness_factory, forum=forum, **settings)
    sam = harness.agent("Sam", group=harness.fake.chats[GROUP_ID])
    alice = harness.customer("Alice")
    await alice.send(f"/filetest {text}")
    card = await sam.expect("Complaint C-")
    return Announced(harness, sam, alice, card)


async def complaint_row(harness: Harness) -> Complaint:
    await harness.settle()
    async with harness.session_factory() as session:
        return (await session.exec(select(Complaint))).one()
