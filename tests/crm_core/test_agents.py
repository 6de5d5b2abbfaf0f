import asyncio

import pytest
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.clock import utcnow
from crm_core.db import SessionFactory
from crm_core.errors import AgentNotFound, InvalidInput
from crm_core.models import Agent, AgentRole, Handoff, HandoffStatus
from crm_core.services.agents import (
    ensure_agent,
    forget_membership_checks,
    get_agent,
    get_agent_by_telegram,
    list_agents,
    pick_agent,
    record_membership,
    set_agent_active,
    set_agent_available,
)
from crm_core.services.customers import identify_customer

ANNA = 5_000_000_001  # Telegram ids exceed 32 bits


async def test_ensure_creates_then_refreshes_the_name(session: AsyncSession) -> None:
    created = await ensure_agent(session=session, telegram_user_id=ANNA, display_name="Anna")
    assert (created.role, created.active) == (AgentRole.agent, True)
    renamed = await ensure_agent(
        session=session, telegram_user_id=ANNA, display_name="  Anna   Berg "
    )
    assert renamed.id == created.id and renamed.display_name == "Anna Berg"
    found = await get_agent_by_telegram(session=session, telegram_user_id=ANNA)
    assert found is not None and found.display_name == "Anna Berg"
    assert await get_agent_by_telegram(session=session, telegram_user_id=1) is None


async def test_role_is_kept_unless_told(session: AsyncSession) -> None:
    await ensure_agent(
        session=session, telegram_user_id=ANNA, display_name="Anna", role="supervisor"
    )
    kept = await ensure_agent(session=session, telegram_user_id=ANNA, display_name="Anna")
    assert kept.role == AgentRole.supervisor
    demoted = await ensure_agent(
        session=session, telegram_user_id=ANNA, display_name="Anna", role=AgentRole.agent
    )
    assert demoted.role == AgentRole.agent
    with pytest.raises(
        InvalidInput, match=r"Unknown role 'boss'\. Choose one of: agent, supervisor\."
    ):
        await ensure_agent(session=session, telegram_user_id=ANNA, display_name="A", role="boss")
    with pytest.raises(InvalidInput, match="display name"):
        await ensure_agent(session=session, telegram_user_id=ANNA, display_name="   ")


async def test_first_contact_from_two_updates_at_once_creates_one_agent(
    session: AsyncSession, session_factory: SessionFactory
) -> None:
    async def ensure() -> int | None:
        async with session_factory() as own:
            agent = await ensure_agent(session=own, telegram_user_id=ANNA, display_name="Anna")
            return agent.id

    ids = await asyncio.gather(*(ensure() for _ in range(5)))
    assert len(set(ids)) == 1
    assert len((await session.exec(select(Agent))).all()) == 1


async def test_deactivated_agents_leave_the_list_but_stay_known(session: AsyncSession) -> None:
    anna = await ensure_agent(session=session, telegram_user_id=ANNA, display_name="Anna")
    await ensure_agent(session=session, telegram_user_id=2, display_name="Ben")
    assert anna.id is not None
    await set_agent_active(session=session, agent_id=anna.id, active=False)

    assert [a.display_name for a in await list_agents(session=session)] == ["Ben"]
    everyone = await list_agents(session=session, include_inactive=True)
    assert [a.display_name for a in everyone] == ["Anna", "Ben"]
    assert (await get_agent(session=session, agent_id=anna.id)).active is False
    back = await set_agent_active(session=session, agent_id=anna.id, active=True)
    assert back.active
    with pytest.raises(AgentNotFound):
        await set_agent_active(session=session, agent_id=999, active=True)
    with pytest.raises(AgentNotFound):
        await get_agent(session=session, agent_id=999)


async def test_membership_is_remembered_and_a_refusal_makes_nobody_an_agent(
    session: AsyncSession,
) -> None:
    now = utcnow()
    stranger = await record_membership(
        session=session, telegram_user_id=7, display_name="Eve", is_member=False, checked_at=now
    )
    assert (
        stranger is None
        and await get_agent_by_telegram(session=session, telegram_user_id=7) is None
    )

    joined = await record_membership(
        session=session, telegram_user_id=ANNA, display_name="Anna", is_member=True, checked_at=now
    )
    assert joined is not None and joined.in_agent_group and joined.role == AgentRole.agent
    await ensure_agent(
        session=session, telegram_user_id=ANNA, display_name="Anna", role=AgentRole.supervisor
    )
    left = await record_membership(
        session=session, telegram_user_id=ANNA, display_name="Anna", is_member=False, checked_at=now
    )
    assert left is not None and left.in_agent_group is False
    assert left.role == AgentRole.supervisor  # membership does not touch the role

    assert await forget_membership_checks(session=session) == 1
    found = await get_agent_by_telegram(session=session, telegram_user_id=ANNA)
    assert found is not None and found.membership_checked_at is None


async def test_pick_agent_takes_the_least_busy_then_the_longest_unassigned(
    session: AsyncSession,
) -> None:
    now = utcnow()
    ids = []
    for n, name in enumerate(("Ann", "Ben", "Cy")):
        agent = await ensure_agent(session=session, telegram_user_id=100 + n, display_name=name)
        ids.append(agent.id)
    ann, ben, cy = ids
    assert ann and ben and cy
    await set_agent_available(session=session, agent_id=cy, available=False)  # /away

    first = await pick_agent(session=session, cap=1, now=now)
    second = await pick_agent(session=session, cap=1, now=now)
    assert first is not None and second is not None
    assert (first.id, second.id) == (ann, ben)  # round robin: Ann was picked, Ben is next

    one = await identify_customer(session=session, channel="telegram", external_id="c1")
    two = await identify_customer(session=session, channel="telegram", external_id="c2")
    session.add(Handoff(customer_id=one.id, status=HandoffStatus.claimed, agent_id=ann))
    await session.commit()
    third = await pick_agent(session=session, cap=1, now=now)
    assert third is not None and third.id == ben  # Ann is at the cap
    session.add(Handoff(customer_id=two.id, status=HandoffStatus.claimed, agent_id=ben))
    await session.commit()
    assert await pick_agent(session=session, cap=1, now=now) is None  # all busy or away
