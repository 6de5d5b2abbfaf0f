"""Rows for the desk tests, written with the models directly (no dependency on other services)."""

import asyncio
import contextlib
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine
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


class Rendezvous:
    """Makes concurrent units of work meet at one point before any of them goes on.

    Placed between a service's read and its write, it forces the interleaving that a missing
    lock would get wrong. Where the code under test does lock, the second unit cannot reach the
    point while the first holds the lock, so the first waits at most ``timeout`` and goes on.
    """

    def __init__(self, parties: int = 2, timeout: float = 0.5) -> None:
        self.parties = parties
        self.timeout = timeout
        self.arrived = 0
        self._all_here = asyncio.Event()
        self._waited = False

    async def meet(self) -> None:
        """Wait for the others once; later calls (e.g. from a loop) pass straight through."""
        self.arrived += 1
        if self.arrived >= self.parties:
            self._all_here.set()
        if self._waited:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._all_here.wait(), self.timeout)
        self._waited = True


async def warm_pool(engine: AsyncEngine, connections: int = 2) -> None:
    """Check out pooled connections up front (no transaction), so that concurrent tasks start
    without connect delays that would let one finish before the other begins."""
    opened = [await engine.connect() for _ in range(connections)]
    for connection in opened:
        await connection.close()
