"""Who may act as an agent: members only, checked on every action."""

from __future__ import annotations

from sqlmodel import select

from crm_core.models import Agent as AgentRow
from crm_core.models import (
    HandoffStatus,
    InteractionKind,
)
from crm_core.services.agents import set_agent_active
from tests.handlers.conftest import HarnessFactory
from tests.handlers.desk import GROUP_ID, drain, interactions, latest_handoff, open_handoff, start


async def test_non_member_gets_no_agent_powers(harness_factory: HarnessFactory) -> None:
    harness, group = await start(harness_factory)
    sam = harness.agent("Sam", group=group)
    eve = harness.agent("Eve", group=group, status="left")
    alice = harness.customer("Alice")
    card = await open_handoff(harness, alice, sam)
    await drain(harness, alice, sam)

    query_id = await eve.press("Claim", card)
    await eve.send("I am not an agent", thread_id=card.thread_id)
    await eve.send("/resolve", thread_id=card.thread_id)

    await eve.expect("Only members of the agents' group")
    await alice.expect_silence()
    answer = harness.fake.answered_callbacks[query_id]
    assert answer["show_alert"] and "Only members" in answer["text"]
    handoff = await latest_handoff(harness)
    assert handoff.status == HandoffStatus.waiting and handoff.agent_id is None


async def test_an_agent_removed_from_the_group_loses_powers_after_the_cache(
    harness_factory: HarnessFactory,
) -> None:
    harness, group = await start(harness_factory, membership_cache_seconds=0)
    sam = harness.agent("Sam", group=group)
    alice = harness.customer("Alice")
    card = await open_handoff(harness, alice, sam)
    await sam.send("First answer", thread_id=card.thread_id)
    await alice.expect("First answer")

    harness.fake.set_member(GROUP_ID, sam.id, "kicked")
    await sam.send("Second answer", thread_id=card.thread_id)

    await sam.expect("Only members of the agents' group", thread_id=card.thread_id)
    await alice.expect_silence()
    replies = await interactions(harness, InteractionKind.agent_reply)
    assert [r.text for r in replies] == ["Sam (support team): First answer"]


async def test_a_deactivated_agent_is_refused_before_anything_reaches_the_customer(
    harness_factory: HarnessFactory,
) -> None:
    harness, group = await start(harness_factory)
    sam = harness.agent("Sam", group=group)
    alice = harness.customer("Alice")
    card = await open_handoff(harness, alice, sam)
    await sam.send("! first note creates my agent row", thread_id=card.thread_id)
    await harness.settle()
    async with harness.session_factory() as session:
        agent = (await session.exec(select(AgentRow))).one()
        assert agent.id is not None
        await set_agent_active(session=session, agent_id=agent.id, active=False)
    await drain(harness, alice)

    await sam.send("Hello Alice", thread_id=card.thread_id)

    await sam.expect("deactivated", thread_id=card.thread_id)
    await alice.expect_silence()


async def test_an_agent_removed_from_the_group_is_refused_at_once_and_nothing_is_revealed(
    harness_factory: HarnessFactory,
) -> None:
    # The default cache: Sam's membership was just confirmed, yet Telegram's chat_member
    # update (an admin removed him) must end his powers before the cache would.
    harness, group = await start(harness_factory, membership_cache_seconds=3600)
    sam = harness.agent("Sam", group=group)
    alice = harness.customer("Alice")
    card = await open_handoff(harness, alice, sam)
    await sam.send("/queue", thread_id=card.thread_id)  # a member: confirmed and remembered
    await sam.expect("Waiting")
    await drain(harness, alice, sam)

    harness.fake.change_member(GROUP_ID, sam.id, "kicked")
    await harness.settle()
    query_id = await sam.press("Claim", card)
    await sam.send("/customer Alice", thread_id=card.thread_id)
    await sam.send("/status C-000001 resolved", thread_id=card.thread_id)
    await sam.send("Hello Alice", thread_id=card.thread_id)
    await harness.settle()

    answer = harness.fake.answered_callbacks[query_id]
    assert answer["show_alert"] and "Only members" in answer["text"]
    said = [m.text for m in harness.fake.messages[sam.cursor :] if m.from_bot]
    assert said == ["Only members of the agents' group can do this."] * 3, said
    await alice.expect_silence()
    handoff = await latest_handoff(harness)
    assert handoff.status == HandoffStatus.waiting and handoff.agent_id is None
    async with harness.session_factory() as session:
        row = (
            await session.exec(select(AgentRow).where(AgentRow.telegram_user_id == sam.id))
        ).one()
    assert row.in_agent_group is False


async def test_an_agent_added_back_regains_powers(harness_factory: HarnessFactory) -> None:
    harness, group = await start(harness_factory, membership_cache_seconds=3600)
    sam = harness.agent("Sam", group=group)
    alice = harness.customer("Alice")
    card = await open_handoff(harness, alice, sam)
    harness.fake.change_member(GROUP_ID, sam.id, "left")
    harness.fake.change_member(GROUP_ID, sam.id, "member")
    await drain(harness, alice, sam)

    await sam.press("Claim", card)

    await alice.expect("joined")
    handoff = await latest_handoff(harness)
    assert handoff.status == HandoffStatus.claimed
