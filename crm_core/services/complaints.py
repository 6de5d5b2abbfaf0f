"""Complaints: filing, lookup by reference, assignment, lifecycle, comments.

Lifecycle (what a serious desk allows)::

    from         may go to
    open         in_progress (and resolved, through in_progress)
    in_progress  resolved
    resolved     closed; reopened: in_progress, open
    closed       reopened: open

- The stored lifecycle is strict: ``open -> in_progress -> resolved -> closed``. An agent may
  still resolve an open complaint in one go (many are settled in the first answer); the move is
  then recorded as two steps, ``open -> in_progress -> resolved``, each with its event, so the
  history and the statistics only ever see the strict lifecycle.
- ``closed`` is reached only from ``resolved``: a complaint is closed once its resolution is
  confirmed (by the customer, an agent or the system after a quiet period), never skipped.
- Reopening: ``resolved -> in_progress`` (the same agent keeps working), ``resolved -> open``
  and ``closed -> open`` (back to the queue). Each reopen adds one to ``reopen_count`` and
  clears ``resolved_at``/``closed_at``/``resolution_note``, so that "time to resolution" and the
  SLA are measured on the final resolution; the earlier ones stay in the event history.
- ``in_progress -> open`` is not allowed: reassign instead of silently dropping work.
- Customers may only confirm (``resolved -> closed``) or reopen; agents and the system may make
  every allowed move.

``first_response_at`` is the first agent action that reaches the customer: a status change made
by an agent (the customer is notified of every status change), an agent comment marked
``visible_to_customer``, or an agent's reply in the customer's chat after filing (set by
``handoffs.record_agent_reply``). Assignment and internal notes are invisible to the customer, so
they do not count.

Concurrent changes to one complaint are serialised by a row lock (``SELECT ... FOR UPDATE`` on
PostgreSQL; SQLite's write transactions are serial anyway): the second agent sees the first
one's result and gets a clear InvalidTransition instead of overwriting it.
"""

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.clock import utcnow
from crm_core.errors import (
    AgentNotFound,
    ComplaintNotFound,
    InvalidInput,
    InvalidTransition,
)
from crm_core.models import (
    ActorType,
    Agent,
    Channel,
    Complaint,
    ComplaintCategory,
    ComplaintEvent,
    ComplaintStatus,
    Direction,
    InteractionKind,
    Severity,
)
from crm_core.services._desk import (
    FRESH,
    log_desk_event,
    parse_choice,
)
from crm_core.services._sql import resolve_customer, unit_of_work
from crm_core.services.references import next_reference, parse_reference
from crm_core.sla import SlaPolicy

MAX_DESCRIPTION_LENGTH = 4000
MAX_COMMENT_LENGTH = 4000
MAX_ATTACHMENTS = 20

S = ComplaintStatus
# Allowed moves; the ones into a "reopened" state count as reopens.
TRANSITIONS: dict[ComplaintStatus, frozenset[ComplaintStatus]] = {
    S.open: frozenset({S.in_progress}),
    S.in_progress: frozenset({S.resolved}),
    S.resolved: frozenset({S.closed, S.in_progress, S.open}),
    S.closed: frozenset({S.open}),
}
REOPENS: frozenset[tuple[ComplaintStatus, ComplaintStatus]] = frozenset(
    {(S.resolved, S.in_progress), (S.resolved, S.open), (S.closed, S.open)}
)
# Moves accepted in one command and recorded as the strict steps they stand for.
SHORTCUTS: dict[tuple[ComplaintStatus, ComplaintStatus], tuple[ComplaintStatus, ...]] = {
    (S.open, S.resolved): (S.in_progress, S.resolved),
}
CUSTOMER_MOVES: frozenset[tuple[ComplaintStatus, ComplaintStatus]] = frozenset(
    {(S.resolved, S.closed)} | REOPENS - {(S.resolved, S.in_progress)}
)


def _label(status: ComplaintStatus) -> str:
    return status.value.replace("_", " ")


def _options_text(reference: str, current: ComplaintStatus, *, already: bool = False) -> str:
    targets = TRANSITIONS[current] | {to for (src, to) in SHORTCUTS if src == current}
    forward = [_label(s) for s in ComplaintStatus if s in targets and (current, s) not in REOPENS]
    parts = []
    if forward:
        parts.append("go to " + " or ".join(forward))
    if any((current, s) in REOPENS for s in targets):
        parts.append("be reopened")
    state = f"already {_label(current)}" if already else _label(current)
    return f"{reference} is {state}; it can " + " or ".join(parts) + "."


# --------------------------------------------------------------------------------------------
# Filing and lookup
# --------------------------------------------------------------------------------------------


async def file_complaint(
    *,
    session: AsyncSession,
    customer_id: int,
    category: ComplaintCategory | str,
    description: str,
    severity: Severity | str = Severity.medium,
    attachments: Iterable[str] = (),
    sla: SlaPolicy | None = None,
    now: datetime | None = None,
    channel: str = Channel.telegram,
    idempotency_key: str | None = None,
) -> Complaint:
    """File a complaint for a customer, with its reference, SLA due date and first event.

    With ``idempotency_key`` (kept on the filing's timeline event) a second filing under the
    same key raises IntegrityError and writes nothing (see ``services.intake``)."""
    category = parse_choice(ComplaintCategory, category, "category")
    severity = parse_choice(Severity, severity, "severity")
    text = _clean_description(description)
    files = _clean_attachments(attachments)
    now = now or utcnow()
    policy = sla or SlaPolicy()
    async with unit_of_work(session):
        customer = await resolve_customer(session, customer_id)
        complaint = Complaint(
            reference=await next_reference(session=session),
            customer_id=customer.id,
            category=category,
            severity=severity,
            description=text,
            attachments=files,
            sla_due_at=policy.due_at(category, severity, now),
            created_at=now,
            updated_at=now,
        )
        session.add(complaint)
        await session.flush()
        assert complaint.id is not None
        _add_event(
            session, complaint, "filed", ActorType.customer, customer.id, to_status=S.open, now=now
        )
        log_desk_event(
            session,
            customer_id=customer.id,
            kind=InteractionKind.complaint_event,
            direction=Direction.inbound,
            text=text,
            details={
                "action": "filed",
                "reference": complaint.reference,
                "category": category.value,
                "severity": severity.value,
            },
            complaint_id=complaint.id,
            occurred_at=now,
            channel=channel,
            idempotency_key=idempotency_key,
        )
    return complaint


def _clean_description(description: str) -> str:
    text = (description or "").strip()
    if not text:
        raise InvalidInput("Please describe the problem; the description cannot be empty.")
    if len(text) > MAX_DESCRIPTION_LENGTH:
        raise InvalidInput(
            f"The description is too long ({len(text)} characters); "
            f"please keep it under {MAX_DESCRIPTION_LENGTH}."
        )
    return text


def _clean_attachments(attachments: Iterable[str]) -> list[str]:
    files = [a.strip() for a in attachments if a and a.strip()]
    if len(files) > MAX_ATTACHMENTS:
        raise InvalidInput(f"At most {MAX_ATTACHMENTS} attachments per complaint, please.")
    return files


async def get_complaint(*, session: AsyncSession, reference: str) -> Complaint:
    """Find a complaint by what a person typed ("c-123", "C123", "123" all mean C-000123)."""
    async with unit_of_work(session):
        return await _load(session, reference)


async def _load(session: AsyncSession, reference: str, *, lock: bool = False) -> Complaint:
    canonical = parse_reference(reference)
    stmt = select(Complaint).where(Complaint.reference == canonical)
    if lock:
        stmt = stmt.with_for_update()
    result = await session.exec(stmt.execution_options(populate_existing=True))
    complaint = result.first()
    if complaint is None:
        raise ComplaintNotFound(f"There is no complaint {canonical}. Please check the reference.")
    return complaint


async def list_customer_complaints(
    *, session: AsyncSession, customer_id: int, include_closed: bool = True
) -> list[Complaint]:
    """The customer's complaints, newest first."""
    stmt = select(Complaint).where(Complaint.customer_id == customer_id)
    if not include_closed:
        stmt = stmt.where(Complaint.status != S.closed)
    stmt = stmt.order_by(col(Complaint.created_at).desc(), col(Complaint.id).desc())
    async with unit_of_work(session):
        return list((await session.exec(stmt, execution_options=FRESH)).all())


async def list_open_complaints(*, session: AsyncSession, limit: int = 50) -> list[Complaint]:
    """The agents' queue: complaints not yet resolved, oldest first."""
    stmt = (
        select(Complaint)
        .where(col(Complaint.status).in_([S.open, S.in_progress]))
        .order_by(col(Complaint.created_at), col(Complaint.id))
        .limit(limit)
    )
    async with unit_of_work(session):
        return list((await session.exec(stmt, execution_options=FRESH)).all())


async def complaint_history(*, session: AsyncSession, reference: str) -> list[ComplaintEvent]:
    """Everything that happened to a complaint, oldest first."""
    async with unit_of_work(session):
        complaint = await _load(session, reference)
        stmt = (
            select(ComplaintEvent)
            .where(ComplaintEvent.complaint_id == complaint.id)
            .order_by(col(ComplaintEvent.created_at), col(ComplaintEvent.id))
        )
        return list((await session.exec(stmt, execution_options=FRESH)).all())


# --------------------------------------------------------------------------------------------
# Work on a complaint
# --------------------------------------------------------------------------------------------


async def assign_complaint(
    *, session: AsyncSession, reference: str, agent_id: int, now: datetime | None = None
) -> Complaint:
    """Give a complaint to an agent. Internal: it does not count as a first response."""
    now = now or utcnow()
    async with unit_of_work(session):
        complaint = await _load(session, reference, lock=True)
        agent = await _active_agent(session, agent_id)
        if complaint.status == S.closed:
            raise InvalidTransition(
                f"{complaint.reference} is closed; reopen it before assigning it."
            )
        if complaint.assignee_id == agent.id:
            return complaint
        complaint.assignee_id = agent.id
        complaint.updated_at = now
        _add_event(
            session,
            complaint,
            "assigned",
            ActorType.agent,
            agent.id,
            note=agent.display_name,
            now=now,
        )
        _log(session, complaint, "assigned", Direction.internal, now, agent_id=agent.id)
    return complaint


async def transition_complaint(
    *,
    session: AsyncSession,
    reference: str,
    to_status: ComplaintStatus | str,
    actor_type: ActorType | str,
    actor_id: int | None = None,
    note: str | None = None,
    now: datetime | None = None,
) -> Complaint:
    """Move a complaint along its lifecycle (see the module docstring for the rules)."""
    target = parse_choice(ComplaintStatus, to_status, "status")
    actor = parse_choice(ActorType, actor_type, "actor")
    note = (note or "").strip() or None
    if note is not None and len(note) > MAX_COMMENT_LENGTH:
        raise InvalidInput(f"The note is too long; please keep it under {MAX_COMMENT_LENGTH}.")
    now = now or utcnow()
    async with unit_of_work(session):
        complaint = await _load(session, reference, lock=True)
        if actor is ActorType.agent:
            await _active_agent(session, actor_id)
        _check_move(complaint.reference, complaint.status, target, actor)
        for step in SHORTCUTS.get((complaint.status, target), (target,)):
            # The note belongs to the final step (e.g. the resolution), not the passage.
            _record_move(
                session, complaint, step, actor, actor_id, note if step == target else None, now
            )
    return complaint


def _record_move(
    session: AsyncSession,
    complaint: Complaint,
    target: ComplaintStatus,
    actor: ActorType,
    actor_id: int | None,
    note: str | None,
    now: datetime,
) -> None:
    current = complaint.status
    _apply_move(complaint, current, target, actor, note, now)
    _add_event(
        session,
        complaint,
        "status_changed",
        actor,
        actor_id,
        from_status=current,
        to_status=target,
        note=note,
        now=now,
    )
    _log(
        session,
        complaint,
        "status_changed",
        _direction(actor),
        now,
        from_status=current.value,
        to_status=target.value,
        note=note,
    )


def _check_move(
    reference: str, current: ComplaintStatus, target: ComplaintStatus, actor: ActorType
) -> None:
    if current == target:
        raise InvalidTransition(_options_text(reference, current, already=True))
    if target not in TRANSITIONS[current] and (current, target) not in SHORTCUTS:
        raise InvalidTransition(_options_text(reference, current))
    if actor is ActorType.customer and (current, target) not in CUSTOMER_MOVES:
        raise InvalidTransition(
            f"{reference} is {_label(current)}; only an agent can move it to {_label(target)}."
        )


def _apply_move(
    complaint: Complaint,
    current: ComplaintStatus,
    target: ComplaintStatus,
    actor: ActorType,
    note: str | None,
    now: datetime,
) -> None:
    if (current, target) in REOPENS:
        complaint.reopen_count += 1
        complaint.resolved_at = None
        complaint.closed_at = None
        complaint.resolution_note = None
    if target == S.resolved:
        complaint.resolved_at = now
        complaint.resolution_note = note
    if target == S.closed:
        complaint.closed_at = now
    if actor is ActorType.agent and complaint.first_response_at is None:
        complaint.first_response_at = now
    complaint.status = target
    complaint.updated_at = now


async def set_complaint_severity(
    *,
    session: AsyncSession,
    reference: str,
    severity: Severity | str,
    actor_type: ActorType | str,
    actor_id: int | None = None,
    sla: SlaPolicy | None = None,
    now: datetime | None = None,
) -> Complaint:
    """Triage: give a complaint the severity it deserves. Its SLA due time is recomputed from
    when it was filed, so a complaint made critical an hour in is due at filing + critical."""
    level = parse_choice(Severity, severity, "severity")
    actor = parse_choice(ActorType, actor_type, "actor")
    now = now or utcnow()
    async with unit_of_work(session):
        complaint = await _load(session, reference, lock=True)
        if actor is ActorType.agent:
            await _active_agent(session, actor_id)
        previous = complaint.severity
        if previous == level:
            raise InvalidInput(f"{complaint.reference} is already of {level.value} severity.")
        if complaint.status == S.closed:
            raise InvalidTransition(
                f"{complaint.reference} is closed; reopen it before changing its severity."
            )
        complaint.severity = level
        complaint.sla_due_at = (sla or SlaPolicy()).due_at(
            complaint.category, level, complaint.created_at
        )
        complaint.updated_at = now
        change = f"severity {previous.value} -> {level.value}"
        _add_event(session, complaint, "severity_changed", actor, actor_id, note=change, now=now)
        _log(
            session,
            complaint,
            "severity_changed",
            Direction.internal,
            now,
            from_severity=previous.value,
            to_severity=level.value,
        )
    return complaint


async def comment_complaint(
    *,
    session: AsyncSession,
    reference: str,
    actor_type: ActorType | str,
    actor_id: int | None,
    text: str,
    visible_to_customer: bool = False,
    now: datetime | None = None,
) -> ComplaintEvent:
    """Add a comment. Agent comments are internal notes unless ``visible_to_customer``."""
    actor = parse_choice(ActorType, actor_type, "actor")
    body = (text or "").strip()
    if not body:
        raise InvalidInput("The comment is empty.")
    if len(body) > MAX_COMMENT_LENGTH:
        raise InvalidInput(f"The comment is too long; please keep it under {MAX_COMMENT_LENGTH}.")
    now = now or utcnow()
    async with unit_of_work(session):
        complaint = await _load(session, reference, lock=True)
        if actor is ActorType.agent:
            await _active_agent(session, actor_id)
            if visible_to_customer and complaint.first_response_at is None:
                complaint.first_response_at = now
        complaint.updated_at = now
        event = _add_event(session, complaint, "comment", actor, actor_id, note=body, now=now)
        direction = _comment_direction(actor, visible_to_customer)
        _log(session, complaint, "comment", direction, now, note=body, visible=visible_to_customer)
    return event


async def set_complaint_group_location(
    *,
    session: AsyncSession,
    complaint_id: int,
    chat_id: int,
    topic_id: int | None,
    message_id: int | None,
) -> Complaint:
    """Remember where the complaint is announced in the agents' group."""
    async with unit_of_work(session):
        result = await session.exec(
            update(Complaint)
            .where(col(Complaint.id) == complaint_id)
            .values(group_chat_id=chat_id, group_topic_id=topic_id, group_message_id=message_id)
        )
        if result.rowcount == 0:
            raise ComplaintNotFound(f"There is no complaint #{complaint_id}.")
        complaint = await session.get(Complaint, complaint_id, populate_existing=True)
        assert complaint is not None
    return complaint


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


async def _active_agent(session: AsyncSession, agent_id: int | None) -> Agent:
    agent = await session.get(Agent, agent_id) if agent_id is not None else None
    if agent is None:
        raise AgentNotFound(f"There is no agent #{agent_id}.")
    if not agent.active:
        raise AgentNotFound(f"{agent.display_name} is no longer an active agent.")
    return agent


def _direction(actor: ActorType) -> Direction:
    return Direction.inbound if actor is ActorType.customer else Direction.outbound


def _comment_direction(actor: ActorType, visible_to_customer: bool) -> Direction:
    if actor is ActorType.customer:
        return Direction.inbound
    return Direction.outbound if visible_to_customer else Direction.internal


def _add_event(
    session: AsyncSession,
    complaint: Complaint,
    action: str,
    actor_type: ActorType,
    actor_id: int | None,
    *,
    from_status: ComplaintStatus | None = None,
    to_status: ComplaintStatus | None = None,
    note: str | None = None,
    now: datetime,
) -> ComplaintEvent:
    assert complaint.id is not None
    event = ComplaintEvent(
        complaint_id=complaint.id,
        action=action,
        actor_type=actor_type,
        actor_id=actor_id,
        from_status=from_status,
        to_status=to_status,
        note=note,
        created_at=now,
    )
    session.add(event)
    return event


def _log(
    session: AsyncSession,
    complaint: Complaint,
    action: str,
    direction: Direction,
    now: datetime,
    **details: object,
) -> None:
    log_desk_event(
        session,
        customer_id=complaint.customer_id,
        kind=InteractionKind.complaint_event,
        direction=direction,
        details={"action": action, "reference": complaint.reference, **details},
        complaint_id=complaint.id,
        occurred_at=now,
    )
