"""Rows for the desk tests, written with the models directly (no dependency on other services)."""

from datetime import UTC, datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.models import Agent, AgentRole, Customer

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


async def make_customer(session: AsyncSession, name: str = "Carla") -> Customer:
    customer = Customer(name=name)
    session.add(customer)
    await session.commit()
    return customer


async def make_agent(
    session: AsyncSession,
    name: str = "Anna",
    telegram_user_id: int = 1001,
    role: AgentRole = AgentRole.agent,
) -> Agent:
    agent = Agent(telegram_user_id=telegram_user_id, display_name=name, role=role)
    session.add(agent)
    await session.commit()
    return agent


def cid(customer: Customer) -> int:
    assert customer.id is not None
    return customer.id


def aid(agent: Agent) -> int:
    assert agent.id is not None
    return agent.id
