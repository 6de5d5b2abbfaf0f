"""The desk's human agents, known by their Telegram user id."""

from datetime import datetime

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.errors import AgentNotFound, InvalidInput
from crm_core.models import Agent, AgentRole, Handoff, HandoffStatus
from crm_core.services._desk import FRESH, parse_choice
from crm_core.services._sql import unit_of_work

MAX_NAME_LENGTH = 200


async def ensure_agent(
    *,
    session: AsyncSession,
    telegram_user_id: int,
    display_name: str,
    role: AgentRole | str | None = None,
) -> Agent:
    """Create the agent or refresh their name; safe when two updates race on first contact.

    ``role=None`` keeps the current role (new agents start as ``agent``); pass a role to set it,
    e.g. ``supervisor`` for the ids listed in the settings, ``agent`` to demote.
    """
    name = _clean_name(display_name)
    wanted = parse_choice(AgentRole, role, "role") if role is not None else None
    async with unit_of_work(session):
        agent = await _by_telegram(session, telegram_user_id)
        if agent is None:
            agent = await _insert(session, telegram_user_id, name, wanted or AgentRole.agent)
        if agent.display_name != name:
            agent.display_name = name
        if wanted is not None and agent.role != wanted:
            agent.role = wanted
    return agent


async def _insert(
    session: AsyncSession, telegram_user_id: int, name: str, role: AgentRole
) -> Agent:
    agent = Agent(telegram_user_id=telegram_user_id, display_name=name, role=role)
    try:
        async with session.begin_nested():
            session.add(agent)
    except IntegrityError:
        # Another update created the same agent in the meantime: use theirs.
        existing = await _by_telegram(session, telegram_user_id)
        assert existing is not None
        return existing
    return agent


def _clean_name(display_name: str) -> str:
    name = " ".join((display_name or "").split())
    if not name:
        raise InvalidInput("An agent needs a display name.")
    return name[:MAX_NAME_LENGTH]


async def _by_telegram(session: AsyncSession, telegram_user_id: int) -> Agent | None:
    stmt = select(Agent).where(Agent.telegram_user_id == telegram_user_id)
    result = await session.exec(stmt.execution_options(populate_existing=True))
    return result.first()


async def get_agent_by_telegram(*, session: AsyncSession, telegram_user_id: int) -> Agent | None:
    async with unit_of_work(session):
        return await _by_telegram(session, telegram_user_id)


async def get_agent(*, session: AsyncSession, agent_id: int) -> Agent:
    async with unit_of_work(session):
        agent = await session.get(Agent, agent_id)
        if agent is None:
            raise AgentNotFound(f"There is no agent #{agent_id}.")
        return agent


async def set_agent_active(*, session: AsyncSession, agent_id: int, active: bool) -> Agent:
    """Deactivate an agent who left (their history stays) or bring them back."""
    async with unit_of_work(session):
        agent = await session.get(Agent, agent_id, with_for_update=True)
        if agent is None:
            raise AgentNotFound(f"There is no agent #{agent_id}.")
        agent.active = active
    return agent


async def list_agents(*, session: AsyncSession, include_inactive: bool = False) -> list[Agent]:
    """Agents by name (active ones only unless told otherwise)."""
    stmt = select(Agent).order_by(col(Agent.display_name), col(Agent.id))
    if not include_inactive:
        stmt = stmt.where(col(Agent.active))
    async with unit_of_work(session):
        return list((await session.exec(stmt, execution_options=FRESH)).all())


async def record_membership(
    *,
    session: AsyncSession,
    telegram_user_id: int,
    display_name: str,
    is_member: bool,
    checked_at: datetime,
) -> Agent | None:
    """Remember what Telegram said of a person's membership of the agents' group. A member
    gets an agent row (as ``agent``, or keeping their role); a non-member without one gets
    none (None): being refused must not make anyone an agent."""
    async with unit_of_work(session):
        agent = await _by_telegram(session, telegram_user_id)
        if agent is None:
            if not is_member:
                return None
            name = _clean_name(display_name)
            agent = await _insert(session, telegram_user_id, name, AgentRole.agent)
        agent.in_agent_group = is_member
        agent.membership_checked_at = checked_at
    return agent


async def forget_membership_checks(*, session: AsyncSession) -> int:
    """Make every membership be asked of Telegram again (the group moved to a new id)."""
    async with unit_of_work(session):
        result = await session.exec(update(Agent).values(membership_checked_at=None))
    return int(result.rowcount)


async def set_agent_available(*, session: AsyncSession, agent_id: int, available: bool) -> Agent:
    """/away and /back."""
    async with unit_of_work(session):
        agent = await session.get(Agent, agent_id)
        if agent is None:
            raise AgentNotFound(f"There is no agent #{agent_id}.")
        agent.available = available
    return agent


async def pick_agent(*, session: AsyncSession, cap: int, now: datetime) -> Agent | None:
    """Auto-assignment, round robin: of the agents who are active, in the agents' group and
    not away, and who hold fewer than ``cap`` open conversations, the one with the fewest,
    and among those the one assigned longest ago. None when everyone is busy or away.

    The pick is remembered (``last_assigned_at``), so the next one goes to someone else."""
    open_count = (
        select(func.count())
        .where(Handoff.agent_id == Agent.id, Handoff.status == HandoffStatus.claimed)
        .correlate(Agent)
        .scalar_subquery()
    )
    stmt = (
        select(Agent)
        .where(col(Agent.active), col(Agent.in_agent_group), col(Agent.available))
        .where(open_count < cap)
        .order_by(open_count, col(Agent.last_assigned_at).asc().nulls_first(), col(Agent.id))
        .limit(1)
    )
    async with unit_of_work(session):
        agent = (await session.exec(stmt)).first()
        if agent is not None:
            agent.last_assigned_at = now
    return agent
