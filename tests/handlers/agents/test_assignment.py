"""Auto-assignment: waiting customers go to free agents, round robin, within the cap."""

from __future__ import annotations

from sqlmodel import col, select

from crm_core.models import Handoff, HandoffStatus
from crm_core.services.agents import get_agent_by_telegram
from tests.handlers.conftest import BOTH_DATABASES, Agent, Harness, HarnessFactory
from tests.handlers.desk import GROUP_ID, start


async def owners(harness: Harness) -> list[tuple[HandoffStatus, int | None]]:
    await harness.settle()
    async with harness.session_factory() as session:
        rows = await session.exec(select(Handoff).order_by(col(Handoff.id)))
        return [(h.status, h.agent_id) for h in rows]


async def agent_ids(harness: Harness, *agents: Agent) -> list[int | None]:

    async with harness.session_factory() as session:
        found = [
            await get_agent_by_telegram(session=session, telegram_user_id=a.id) for a in agents
        ]
    return [a.id if a else None for a in found]


@BOTH_DATABASES
async def test_waiting_customers_go_round_robin_within_the_cap_and_away_agents_get_none(
    harness_factory: HarnessFactory,
) -> None:
    harness, group = await start(harness_factory, auto_assign=True, agent_cap=1)
    sam, tom = harness.agent("Sam", group=group), harness.agent("Tom", group=group)
    for agent, name in ((sam, "Sam"), (tom, "Tom")):
        await agent.send("/back")
        await agent.expect(f"Welcome back, {name}")
    sam_id, tom_id = await agent_ids(harness, sam, tom)
    alice, bob, carol = (
        harness.customer("Alice"),
        harness.customer("Bob"),
        harness.customer("Carol"),
    )

    await alice.send("/human")
    await alice.expect("Sam")  # "Sam has joined"
    await bob.send("/human")
    await bob.expect("Tom")
    await carol.ask("/human", contains="next in line")
    assert await owners(harness) == [
        (HandoffStatus.claimed, sam_id),
        (HandoffStatus.claimed, tom_id),
        (HandoffStatus.waiting, None),  # both at the cap: Carol waits
    ]

    await tom.send("/away")
    await tom.expect("is away")
    sam_card = next(m for m in harness.fake.sent_to(GROUP_ID) if "Handoff H-1" in m.text)
    await sam.send("/resolve", thread_id=sam_card.thread_id)
    await carol.expect("Sam")  # Sam's place came free: Carol is his now
    assert (await owners(harness))[2] == (HandoffStatus.claimed, sam_id)
