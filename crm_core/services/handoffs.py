"""Handoffs: a customer waiting for a human agent, from the request to the rating.

    waiting --claim--> claimed --close--> closed --rate--> (score, comment)
       \\______________close______________/^

Everything that several bot instances could do at the same moment is a conditional UPDATE
whose WHERE clause states what the caller saw (``status = 'waiting'``, the reminder count...):
exactly one of two racing instances changes the row, the other learns it lost and why. The
reminder schedule lives in the row (``next_reminder_at``), not in in-memory jobs, so it survives
restarts and is shared by instances.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import and_, bindparam, exists, func, or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.clock import as_utc, utcnow
from crm_core.errors import (
    AgentNotFound,
    AlreadyClaimed,
    ComplaintNotFound,
    HandoffNotFound,
    InvalidInput,
    InvalidTransition,
)
from crm_core.models import (
    Agent,
    Complaint,
    Direction,
    GroupMessageLink,
    Handoff,
    HandoffStatus,
    Interaction,
    InteractionKind,
)
from crm_core.services._desk import FRESH, log_desk_event
from crm_core.services._sql import insert_ignoring_conflict, resolve_customer, unit_of_work

H = HandoffStatus
# Conditional UPDATEs refresh in-session objects only for the rows the database really changed
# (RETURNING), never from a possibly stale in-memory evaluation of the WHERE clause.
SYNC_MATCHED = "fetch"
MIN_SCORE, MAX_SCORE = 1, 5
MAX_TEXT_LENGTH = 2000
# How many recent claims the typical wait is the median of.
WAIT_SAMPLE = 25


@dataclass(frozen=True)
class HandoffOpened:
    handoff: Handoff
    created: bool


class ReminderKind(StrEnum):
    reannounce = "reannounce"
    escalate = "escalate"


@dataclass(frozen=True)
class DueReminder:
    """A waiting handoff whose reminder this sweeper won: announce it again, or escalate it."""

    handoff_id: int
    customer_id: int | None
    kind: ReminderKind
    reminders_sent: int
    requested_at: datetime
    chat_id: int | None
    topic_id: int | None
    card_message_id: int | None

    @property
    def escalate(self) -> bool:
        return self.kind is ReminderKind.escalate


# --------------------------------------------------------------------------------------------
# Opening and lookup
# --------------------------------------------------------------------------------------------


async def open_handoff(
    *,
    session: AsyncSession,
    customer_id: int,
    reason: str | None = None,
    complaint_id: int | None = None,
    reminder_after: timedelta,
    now: datetime | None = None,
) -> HandoffOpened:
    """Ask for a human. A customer already waiting or talking gets their current handoff back."""
    now = now or utcnow()
    reason = _clean_text(reason, "reason")
    async with unit_of_work(session):
        survivor = await resolve_customer(session, customer_id)  # follows merges
        assert survivor.id is not None
        customer_id = survivor.id
        if complaint_id is not None and await session.get(Complaint, complaint_id) is None:
            raise ComplaintNotFound(f"There is no complaint #{complaint_id}.")
        existing = await _open_for(session, customer_id)
        if existing is not None:
            if complaint_id is not None and existing.complaint_id is None:
                existing.complaint_id = complaint_id
            return HandoffOpened(existing, created=False)
        handoff = Handoff(
            customer_id=customer_id,
            complaint_id=complaint_id,
            reason=reason,
            requested_at=now,
            next_reminder_at=now + reminder_after,
        )
        try:
            async with session.begin_nested():
                session.add(handoff)
        except IntegrityError:
            # A concurrent request opened one first (the partial unique index): use theirs.
            winner = await _open_for(session, customer_id)
            if winner is None:
                raise
            return HandoffOpened(winner, created=False)
        _log(session, handoff, "opened", Direction.inbound, now, reason=reason)
    return HandoffOpened(handoff, created=True)


async def _open_for(session: AsyncSession, customer_id: int) -> Handoff | None:
    stmt = select(Handoff).where(Handoff.customer_id == customer_id, Handoff.status != H.closed)
    return (await session.exec(stmt.execution_options(populate_existing=True))).first()


async def get_open_handoff(*, session: AsyncSession, customer_id: int) -> Handoff | None:
    async with unit_of_work(session):
        return await _open_for(session, customer_id)


async def get_open_handoff_no_commit(session: AsyncSession, customer_id: int) -> Handoff | None:
    """:func:`get_open_handoff` inside the caller's transaction (read for every inbound
    message while there is an agents' group: one statement built once)."""
    result = await session.exec(_OPEN_FOR, params={"customer_id": customer_id})
    return result.first()


_OPEN_FOR = (
    select(Handoff)
    .where(col(Handoff.customer_id) == bindparam("customer_id"), col(Handoff.status) != H.closed)
    .execution_options(populate_existing=True)
)


async def get_handoff(*, session: AsyncSession, handoff_id: int) -> Handoff:
    async with unit_of_work(session):
        return await _get(session, handoff_id)


async def _get(session: AsyncSession, handoff_id: int, *, lock: bool = False) -> Handoff:
    handoff = await session.get(Handoff, handoff_id, populate_existing=True, with_for_update=lock)
    if handoff is None:
        raise HandoffNotFound(f"There is no conversation #{handoff_id}.")
    return handoff


async def list_waiting_handoffs(*, session: AsyncSession) -> list[Handoff]:
    """Customers still waiting for an agent, longest waiting first."""
    stmt = (
        select(Handoff)
        .where(Handoff.status == H.waiting)
        .order_by(col(Handoff.requested_at), col(Handoff.id))
    )
    async with unit_of_work(session):
        return list((await session.exec(stmt, execution_options=FRESH)).all())


@dataclass(frozen=True)
class WaitEstimate:
    """Where a waiting customer stands: their place in line (1 = next), and how long the last
    customers waited for a person (the median), when there is any history."""

    position: int
    typical_wait: timedelta | None


async def estimate_wait(
    *, session: AsyncSession, handoff_id: int, sample: int = WAIT_SAMPLE
) -> WaitEstimate:
    """The waiting handoff's place in line and the typical wait of the last ``sample`` claims."""
    async with unit_of_work(session):
        handoff = await _get(session, handoff_id)
        ahead = select(func.count()).where(
            Handoff.status == H.waiting,
            or_(
                col(Handoff.requested_at) < handoff.requested_at,
                and_(
                    col(Handoff.requested_at) == handoff.requested_at,
                    col(Handoff.id) < handoff.id,
                ),
            ),
        )
        position = int((await session.exec(ahead)).one()) + 1
        recent = (
            await session.exec(
                select(Handoff.requested_at, Handoff.claimed_at)
                .where(col(Handoff.claimed_at).is_not(None))
                .order_by(col(Handoff.claimed_at).desc())
                .limit(sample)
            )
        ).all()
    waits = sorted(as_utc(claimed) - as_utc(requested) for requested, claimed in recent if claimed)
    typical = waits[len(waits) // 2] if waits else None
    return WaitEstimate(position=position, typical_wait=typical)


# --------------------------------------------------------------------------------------------
# Where the handoff lives in the agents' group
# --------------------------------------------------------------------------------------------


async def list_announced_handoffs(*, session: AsyncSession, customer_id: int) -> list[Handoff]:
    """The customer's handoffs that have a place in the agents' group, newest first."""
    stmt = (
        select(Handoff)
        .where(Handoff.customer_id == customer_id, col(Handoff.chat_id).is_not(None))
        .order_by(col(Handoff.id).desc())
    )
    async with unit_of_work(session):
        return list((await session.exec(stmt, execution_options=FRESH)).all())


async def set_handoff_location(
    *,
    session: AsyncSession,
    handoff_id: int,
    chat_id: int,
    topic_id: int | None,
    card_message_id: int | None,
) -> Handoff:
    async with unit_of_work(session):
        handoff = await _get(session, handoff_id, lock=True)
        handoff.chat_id = chat_id
        handoff.topic_id = topic_id
        handoff.card_message_id = card_message_id
    return handoff


async def link_group_message(
    *,
    session: AsyncSession,
    chat_id: int,
    message_id: int,
    handoff_id: int | None = None,
    complaint_id: int | None = None,
) -> GroupMessageLink:
    """Remember which conversation a group message belongs to. Linking twice keeps the first."""
    if handoff_id is None and complaint_id is None:
        raise InvalidInput("A group message must be linked to a handoff or a complaint.")
    values = {
        "chat_id": chat_id,
        "message_id": message_id,
        "handoff_id": handoff_id,
        "complaint_id": complaint_id,
        "created_at": utcnow(),
    }
    async with unit_of_work(session):
        await insert_ignoring_conflict(
            session, GroupMessageLink, values, index_elements=["chat_id", "message_id"]
        )
        link = await _link(session, chat_id, message_id)
        assert link is not None
    return link


async def _link(session: AsyncSession, chat_id: int, message_id: int) -> GroupMessageLink | None:
    stmt = select(GroupMessageLink).where(
        GroupMessageLink.chat_id == chat_id, GroupMessageLink.message_id == message_id
    )
    return (await session.exec(stmt.execution_options(populate_existing=True))).first()


async def shown_digest(*, session: AsyncSession, chat_id: int, message_id: int) -> str | None:
    """What the bot last showed in this group message (see ``GroupMessageLink.shown_digest``)."""
    link = await find_by_group_message(session=session, chat_id=chat_id, message_id=message_id)
    return link.shown_digest if link is not None else None


async def set_shown_digest(
    *, session: AsyncSession, chat_id: int, message_id: int, digest: str
) -> None:
    """Remember what the bot now shows in this (linked) group message."""
    async with unit_of_work(session):
        await session.exec(
            update(GroupMessageLink)
            .where(col(GroupMessageLink.chat_id) == chat_id)
            .where(col(GroupMessageLink.message_id) == message_id)
            .values(shown_digest=digest)
        )


async def find_by_group_message(
    *, session: AsyncSession, chat_id: int, message_id: int
) -> GroupMessageLink | None:
    async with unit_of_work(session):
        return await _link(session, chat_id, message_id)


async def find_handoff_by_topic(
    *, session: AsyncSession, chat_id: int, topic_id: int
) -> Handoff | None:
    """The live (not closed) handoff shown in this forum topic, if any."""
    stmt = (
        select(Handoff)
        .where(Handoff.chat_id == chat_id, Handoff.topic_id == topic_id)
        .where(Handoff.status != H.closed)
        .order_by(col(Handoff.id).desc())
    )
    async with unit_of_work(session):
        return (await session.exec(stmt, execution_options=FRESH)).first()


async def move_handoff_chat(*, session: AsyncSession, old_chat_id: int, new_chat_id: int) -> int:
    """Telegram migrated the agents' group to a supergroup: follow it. Returns rows updated."""
    async with unit_of_work(session):
        moved = 0
        for model, column in (
            (Handoff, Handoff.chat_id),
            (Complaint, Complaint.group_chat_id),
        ):
            result = await session.exec(
                update(model).where(col(column) == old_chat_id).values({column: new_chat_id})
            )
            moved += result.rowcount
        # ORM-enabled UPDATEs also refresh the matching objects already loaded in the session.
        moved += await _move_links(session, old_chat_id, new_chat_id)
    return moved


async def _move_links(session: AsyncSession, old_chat_id: int, new_chat_id: int) -> int:
    # A link whose message id is already known in the new chat stays behind (it could only be
    # ambiguous there); everything else follows.
    other = aliased(GroupMessageLink)
    clash = exists().where(
        and_(
            col(other.chat_id) == new_chat_id,
            col(other.message_id) == col(GroupMessageLink.message_id),
        )
    )
    result = await session.exec(
        update(GroupMessageLink)
        .where(col(GroupMessageLink.chat_id) == old_chat_id, ~clash)
        .values(chat_id=new_chat_id)
    )
    return result.rowcount


# --------------------------------------------------------------------------------------------
# Agents at work
# --------------------------------------------------------------------------------------------


async def claim_handoff(
    *, session: AsyncSession, handoff_id: int, agent_id: int, now: datetime | None = None
) -> Handoff:
    """Take a waiting customer. Of two agents pressing at once exactly one wins; the other
    gets AlreadyClaimed naming the winner. Claiming one's own claimed handoff changes nothing."""
    now = now or utcnow()
    async with unit_of_work(session):
        agent = await _active_agent(session, agent_id)
        result = await session.exec(
            update(Handoff)
            .where(col(Handoff.id) == handoff_id, col(Handoff.status) == H.waiting)
            .values(status=H.claimed, agent_id=agent_id, claimed_at=now, next_reminder_at=None)
            .execution_options(synchronize_session=SYNC_MATCHED)
        )
        handoff = await _get(session, handoff_id)
        if result.rowcount == 1:
            _log(session, handoff, "claimed", Direction.internal, now, agent=agent.display_name)
            return handoff
        if handoff.status == H.closed:
            raise InvalidTransition("This conversation is already closed.")
        if handoff.agent_id == agent_id:
            return handoff
        winner = await session.get(Agent, handoff.agent_id) if handoff.agent_id else None
        name = winner.display_name if winner else "another agent"
        raise AlreadyClaimed(f"Already taken by {name}.", agent_name=name)


async def record_agent_reply(
    *, session: AsyncSession, handoff_id: int, agent_id: int, now: datetime | None = None
) -> Handoff:
    """Note the first time an agent answered the customer (kept once, for the statistics), on
    the handoff and on the customer's complaints that had no response yet.

    An agent who answers a customer still waiting has taken them: the handoff is claimed for
    that agent (so reminders stop), exactly as ``claim_handoff`` would, unless someone else
    claimed it in the meantime.
    """
    now = now or utcnow()
    async with unit_of_work(session):
        agent = await _active_agent(session, agent_id)
        claimed = await session.exec(
            update(Handoff)
            .where(col(Handoff.id) == handoff_id, col(Handoff.status) == H.waiting)
            .values(status=H.claimed, agent_id=agent_id, claimed_at=now, next_reminder_at=None)
            .execution_options(synchronize_session=SYNC_MATCHED)
        )
        await session.exec(
            update(Handoff)
            .where(col(Handoff.id) == handoff_id, col(Handoff.first_agent_reply_at).is_(None))
            .values(first_agent_reply_at=now)
            .execution_options(synchronize_session=SYNC_MATCHED)
        )
        handoff = await _get(session, handoff_id)
        await _first_response_by_reply(session, handoff.customer_id, now)
        if claimed.rowcount == 1:
            _log(session, handoff, "claimed", Direction.internal, now, agent=agent.display_name)
        return handoff


async def _first_response_by_reply(
    session: AsyncSession, customer_id: int | None, now: datetime
) -> None:
    """An agent's reply in the chat is the first response to every complaint of that customer
    still waiting for one (a status change by an agent would otherwise be the first): kept on
    the complaint, so that the statistics read one column instead of searching the timeline."""
    if customer_id is None:
        return
    await session.exec(
        update(Complaint)
        .where(
            col(Complaint.customer_id) == customer_id,
            col(Complaint.first_response_at).is_(None),
            col(Complaint.created_at) <= now,
        )
        .values(first_response_at=now)
        .execution_options(synchronize_session=SYNC_MATCHED)
    )


async def close_handoff(
    *,
    session: AsyncSession,
    handoff_id: int,
    agent_id: int | None = None,
    summary: str | None = None,
    now: datetime | None = None,
) -> Handoff:
    """End the conversation (by an agent, or by the customer/system when ``agent_id`` is None)."""
    now = now or utcnow()
    summary = _clean_text(summary, "summary")
    async with unit_of_work(session):
        if agent_id is not None:
            await _active_agent(session, agent_id)
        handoff = await _get(session, handoff_id, lock=True)
        if handoff.status == H.closed:
            raise InvalidTransition("This conversation is already closed.")
        if handoff.agent_id is None:
            handoff.agent_id = agent_id
        handoff.status = H.closed
        handoff.closed_at = now
        handoff.next_reminder_at = None
        if summary is not None:
            handoff.summary = summary
        _log(session, handoff, "closed", Direction.internal, now, agent_id=agent_id)
    return handoff


async def idle_handoffs(
    *, session: AsyncSession, idle_for: timedelta, now: datetime | None = None, limit: int = 50
) -> list[Handoff]:
    """Claimed conversations in which nothing was said (by the customer, the agent or the
    bot) for ``idle_for``: candidates for closing automatically."""
    now = now or utcnow()
    since = now - idle_for
    recent = exists().where(
        col(Interaction.customer_id) == col(Handoff.customer_id),
        col(Interaction.occurred_at) >= since,
    )
    stmt = (
        select(Handoff)
        .where(Handoff.status == H.claimed, col(Handoff.claimed_at) < since, ~recent)
        .order_by(col(Handoff.claimed_at))
        .limit(limit)
    )
    async with unit_of_work(session):
        return list((await session.exec(stmt, execution_options=FRESH)).all())


async def recently_closed_handoff(
    *, session: AsyncSession, customer_id: int, within: timedelta, now: datetime | None = None
) -> Handoff | None:
    """The customer's conversation an agent closed less than ``within`` ago, if any (a
    withdrawn request does not count: nobody was talking)."""
    now = now or utcnow()
    stmt = (
        select(Handoff)
        .where(Handoff.customer_id == customer_id, Handoff.status == H.closed)
        .where(col(Handoff.closed_at) >= now - within, col(Handoff.claimed_at).is_not(None))
        .order_by(col(Handoff.closed_at).desc())
        .limit(1)
    )
    async with unit_of_work(session):
        return (await session.exec(stmt, execution_options=FRESH)).first()


async def reopen_handoff(
    *, session: AsyncSession, handoff_id: int, now: datetime | None = None
) -> Handoff:
    """The customer wrote again soon after the conversation closed: it is theirs and their
    agent's again (claimed by the same agent). Raises HandoffAlreadyOpen when the customer
    has another open one meanwhile (one open handoff per customer)."""
    now = now or utcnow()
    async with unit_of_work(session):
        handoff = await _get(session, handoff_id, lock=True)
        if handoff.status != H.closed:
            return handoff
        if await _open_for(session, handoff.customer_id) is not None:  # type: ignore[arg-type]
            raise InvalidTransition("The customer has another open conversation.")
        handoff.status = H.claimed if handoff.agent_id is not None else H.waiting
        handoff.closed_at = None
        _log(session, handoff, "reopened", Direction.internal, now)
    return handoff


async def rate_handoff(
    *,
    session: AsyncSession,
    handoff_id: int,
    score: int,
    comment: str | None = None,
    now: datetime | None = None,
) -> Handoff:
    """The customer's satisfaction rating, after the conversation closed. Rating again changes
    the score; a comment sent later is added without losing the score."""
    if isinstance(score, bool) or not isinstance(score, int) or not MIN_SCORE <= score <= MAX_SCORE:
        raise InvalidInput(f"Please rate from {MIN_SCORE} to {MAX_SCORE}.")
    comment = _clean_text(comment, "comment")
    now = now or utcnow()
    async with unit_of_work(session):
        handoff = await _get(session, handoff_id, lock=True)
        if handoff.status != H.closed:
            raise InvalidTransition("A conversation can be rated once it is closed.")
        handoff.csat_score = score
        if comment is not None:
            handoff.csat_comment = comment
        log_desk_event(
            session,
            customer_id=handoff.customer_id,
            kind=InteractionKind.csat,
            direction=Direction.inbound,
            text=comment,
            details={"score": score},
            handoff_id=handoff.id,
            occurred_at=now,
        )
    return handoff


async def mark_unreachable(
    *, session: AsyncSession, handoff_id: int, now: datetime | None = None
) -> Handoff:
    """The customer cannot be messaged any more (blocked the bot); agents should know."""
    now = now or utcnow()
    async with unit_of_work(session):
        handoff = await _get(session, handoff_id, lock=True)
        if not handoff.unreachable:
            handoff.unreachable = True
            _log(session, handoff, "unreachable", Direction.internal, now)
    return handoff


# --------------------------------------------------------------------------------------------
# Reminders
# --------------------------------------------------------------------------------------------


async def claim_due_reminders(
    *,
    session: AsyncSession,
    now: datetime,
    reminder_after: timedelta,
    escalate_after_reminders: int = 1,
    limit: int = 100,
) -> list[DueReminder]:
    """Take the waiting handoffs whose reminder is due and advance their schedule.

    After ``escalate_after_reminders`` re-announcements the next due reminder escalates (to
    the supervisors) and the schedule stops. Safe with several sweepers: each row is advanced by
    a conditional UPDATE on the reminder count it was read with, so exactly one sweeper takes it;
    on PostgreSQL, ``FOR UPDATE SKIP LOCKED`` also keeps sweepers off each other's rows.
    """
    candidates = (
        select(Handoff)
        .where(
            Handoff.status == H.waiting,
            col(Handoff.next_reminder_at) <= now,
            col(Handoff.escalated_at).is_(None),
        )
        .order_by(col(Handoff.next_reminder_at), col(Handoff.id))
        .limit(limit)
        # PostgreSQL: skip rows another sweeper is working on instead of waiting for it.
        .with_for_update(skip_locked=True)
    )
    taken: list[DueReminder] = []
    async with unit_of_work(session):
        rows = (await session.exec(candidates.execution_options(populate_existing=True))).all()
        # One UPDATE per reminder count (not per row): the count decides what happens next.
        by_count: dict[int, list[Handoff]] = {}
        for handoff in rows:
            by_count.setdefault(handoff.reminders_sent, []).append(handoff)
        for seen, group in sorted(by_count.items()):
            taken += await _advance_group(
                session, group, seen, now, reminder_after, escalate_after_reminders
            )
    return taken


async def _advance_group(
    session: AsyncSession,
    group: list[Handoff],
    seen: int,
    now: datetime,
    reminder_after: timedelta,
    escalate_after_reminders: int,
) -> list[DueReminder]:
    """Advance handoffs read with ``seen`` reminders; returns those this sweeper won."""
    escalate = seen >= escalate_after_reminders
    changes: dict[str, object] = (
        {"escalated_at": now, "next_reminder_at": None}
        if escalate
        else {"reminders_sent": seen + 1, "next_reminder_at": now + reminder_after}
    )
    result = await session.exec(
        update(Handoff)
        .where(
            col(Handoff.id).in_([h.id for h in group]),
            col(Handoff.status) == H.waiting,
            col(Handoff.reminders_sent) == seen,
            col(Handoff.escalated_at).is_(None),
            col(Handoff.next_reminder_at) <= now,
        )
        .values(changes)
        .returning(col(Handoff.id))
        .execution_options(synchronize_session=SYNC_MATCHED)
    )
    # Rows missing from RETURNING were taken by another sweeper (or claimed) meanwhile.
    won = set(result.scalars().all())
    kind = ReminderKind.escalate if escalate else ReminderKind.reannounce
    reminders: list[DueReminder] = []
    for handoff in group:
        if handoff.id is None or handoff.id not in won:
            continue
        _log(session, handoff, f"reminder_{kind.value}", Direction.internal, now)
        reminders.append(
            DueReminder(
                handoff_id=handoff.id,
                customer_id=handoff.customer_id,
                kind=kind,
                reminders_sent=seen if escalate else seen + 1,
                requested_at=handoff.requested_at,
                chat_id=handoff.chat_id,
                topic_id=handoff.topic_id,
                card_message_id=handoff.card_message_id,
            )
        )
    return reminders


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


async def _active_agent(session: AsyncSession, agent_id: int) -> Agent:
    agent = await session.get(Agent, agent_id)
    if agent is None:
        raise AgentNotFound(f"There is no agent #{agent_id}.")
    if not agent.active:
        raise AgentNotFound(f"{agent.display_name} is no longer an active agent.")
    return agent


def _clean_text(value: str | None, what: str) -> str | None:
    text = (value or "").strip()
    if not text:
        return None
    if len(text) > MAX_TEXT_LENGTH:
        raise InvalidInput(f"The {what} is too long; please keep it under {MAX_TEXT_LENGTH}.")
    return text


def _log(
    session: AsyncSession,
    handoff: Handoff,
    action: str,
    direction: Direction,
    now: datetime,
    **details: object,
) -> None:
    log_desk_event(
        session,
        customer_id=handoff.customer_id,
        kind=InteractionKind.handoff_event,
        direction=direction,
        details={"action": action, **details},
        handoff_id=handoff.id,
        complaint_id=handoff.complaint_id,
        occurred_at=now,
    )
