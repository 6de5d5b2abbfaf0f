import asyncio
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.db import SessionFactory
from crm_core.errors import (
    AgentNotFound,
    ComplaintNotFound,
    CustomerNotFound,
    InvalidInput,
    InvalidTransition,
)
from crm_core.models import (
    ActorType,
    Agent,
    Complaint,
    ComplaintCategory,
    ComplaintStatus,
    Customer,
    Interaction,
    InteractionKind,
    Severity,
)
from crm_core.services import complaints as complaints_service
from crm_core.services.complaints import (
    SHORTCUTS,
    assign_complaint,
    comment_complaint,
    complaint_history,
    file_complaint,
    get_complaint,
    list_customer_complaints,
    list_open_complaints,
    set_complaint_group_location,
    set_complaint_severity,
    transition_complaint,
)
from crm_core.sla import SlaPolicy
from tests.crm_core.desk_factories import (
    T0,
    Rendezvous,
    aid,
    cid,
    make_agent,
    make_customer,
    warm_pool,
)

S = ComplaintStatus


async def _file(session: AsyncSession, customer: Customer, **kwargs: object) -> Complaint:
    params: dict[str, object] = {
        "category": ComplaintCategory.delivery,
        "description": "Parcel never arrived",
        "now": T0,
    }
    params.update(kwargs)
    return await file_complaint(session=session, customer_id=cid(customer), **params)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Filing
# --------------------------------------------------------------------------------------------


async def test_filing_gives_a_reference_a_due_date_an_event_and_a_timeline_entry(
    session: AsyncSession,
) -> None:
    customer = await make_customer(session)
    complaint = await _file(
        session,
        customer,
        severity="High",
        description="  Parcel never arrived \n",
        attachments=["photo-1", " "],
    )

    assert complaint.reference == "C-000001"
    assert complaint.status == S.open
    assert complaint.severity == Severity.high
    assert complaint.description == "Parcel never arrived"
    assert complaint.attachments == ["photo-1"]
    assert complaint.sla_due_at == T0 + timedelta(hours=8)  # the default SLA for high severity
    history = await complaint_history(session=session, reference="C-000001")
    assert [(e.action, e.actor_type, e.to_status) for e in history] == [
        ("filed", ActorType.customer, S.open)
    ]
    timeline = (await session.exec(select(Interaction))).all()
    assert [(i.kind, i.complaint_id, i.details["reference"]) for i in timeline] == [
        (InteractionKind.complaint_event, complaint.id, "C-000001")
    ]


async def test_filing_uses_the_given_sla_policy(session: AsyncSession) -> None:
    customer = await make_customer(session)
    policy = SlaPolicy.from_mapping({"categories": {"billing": {"critical": 2}}})
    complaint = await _file(
        session, customer, category="billing", severity=Severity.critical, sla=policy
    )
    assert complaint.sla_due_at == T0 + timedelta(hours=2)


BAD_INPUT = [
    ({"description": "   "}, "cannot be empty"),
    ({"description": "x" * 4001}, "too long (4001 characters)"),
    ({"category": "weather"}, "Unknown category 'weather'. Choose one of: price, product"),
    ({"severity": "urgent"}, "Unknown severity 'urgent'. Choose one of: low, medium, high"),
]


async def test_bad_input_is_refused_clearly_and_writes_nothing(session: AsyncSession) -> None:
    customer = await make_customer(session)
    for kwargs, message in BAD_INPUT:
        with pytest.raises(InvalidInput) as info:
            await _file(session, customer, **kwargs)
        assert message in str(info.value)
    assert (await session.exec(select(Complaint))).all() == []
    assert (await session.exec(select(Interaction))).all() == []
    # The refused filings did not consume references.
    assert (await _file(session, customer)).reference == "C-000001"


async def test_unknown_customer_is_refused_and_gives_its_reference_back(
    session: AsyncSession,
) -> None:
    with pytest.raises(CustomerNotFound):
        await file_complaint(
            session=session, customer_id=999, category="price", description="Too expensive"
        )
    customer = await make_customer(session)
    assert (await _file(session, customer)).reference == "C-000001"


async def test_a_merged_customer_files_under_the_survivor(session: AsyncSession) -> None:
    survivor = await make_customer(session, "Survivor")
    absorbed = Customer(name="Old", merged_into_id=survivor.id)
    session.add(absorbed)
    await session.commit()
    complaint = await _file(session, absorbed)
    assert complaint.customer_id == survivor.id


async def test_fifty_concurrent_filings_get_fifty_gap_free_references(
    session: AsyncSession, session_factory: SessionFactory
) -> None:
    customer = await make_customer(session)

    async def file_one(i: int) -> str:
        async with session_factory() as own:
            complaint = await file_complaint(
                session=own,
                customer_id=cid(customer),
                category="product",
                description=f"Broken item #{i}",
            )
            return complaint.reference

    references = await asyncio.gather(*(file_one(i) for i in range(50)))
    assert sorted(references) == [f"C-{n:06d}" for n in range(1, 51)]


# --------------------------------------------------------------------------------------------
# Lookup
# --------------------------------------------------------------------------------------------


async def test_get_complaint_understands_loose_references(session: AsyncSession) -> None:
    customer = await make_customer(session)
    await _file(session, customer)
    for typed in ["C-000001", "c-1", "C1", "1", "c-000001", " c 1 "]:
        assert (await get_complaint(session=session, reference=typed)).reference == "C-000001"


async def test_unknown_reference_names_the_reference(session: AsyncSession) -> None:
    with pytest.raises(ComplaintNotFound, match="There is no complaint C-000042"):
        await get_complaint(session=session, reference="c42")


async def test_customer_complaints_newest_first_and_closed_ones_optional(
    session: AsyncSession,
) -> None:
    customer = await make_customer(session)
    other = await make_customer(session, "Other")
    first = await _file(session, customer, now=T0)
    second = await _file(session, customer, now=T0 + timedelta(hours=1))
    await _file(session, other)
    await _move(session, first.reference, S.resolved, S.closed)

    everything = await list_customer_complaints(session=session, customer_id=cid(customer))
    assert [c.reference for c in everything] == [second.reference, first.reference]
    live = await list_customer_complaints(
        session=session, customer_id=cid(customer), include_closed=False
    )
    assert [c.reference for c in live] == [second.reference]


async def test_open_queue_is_oldest_first_without_resolved_ones(session: AsyncSession) -> None:
    customer = await make_customer(session)
    late = await _file(session, customer, now=T0 + timedelta(hours=2))
    early = await _file(session, customer, now=T0)
    done = await _file(session, customer, now=T0 + timedelta(hours=1))
    await _move(session, done.reference, S.resolved)
    await _move(session, late.reference, S.in_progress)

    queue = await list_open_complaints(session=session)
    assert [c.reference for c in queue] == [early.reference, late.reference]
    assert len(await list_open_complaints(session=session, limit=1)) == 1


async def test_group_location_is_remembered(session: AsyncSession) -> None:
    customer = await make_customer(session)
    complaint = await _file(session, customer)
    assert complaint.id is not None
    await set_complaint_group_location(
        session=session,
        complaint_id=complaint.id,
        chat_id=-1001234567890123,
        topic_id=7,
        message_id=42,
    )
    again = await get_complaint(session=session, reference=complaint.reference)
    assert (again.group_chat_id, again.group_topic_id, again.group_message_id) == (
        -1001234567890123,
        7,
        42,
    )
    with pytest.raises(ComplaintNotFound):
        await set_complaint_group_location(
            session=session, complaint_id=999, chat_id=1, topic_id=None, message_id=None
        )


# --------------------------------------------------------------------------------------------
# Assignment and comments
# --------------------------------------------------------------------------------------------


async def test_assignment_is_recorded_but_is_not_a_first_response(session: AsyncSession) -> None:
    customer = await make_customer(session)
    agent = await make_agent(session)
    complaint = await _file(session, customer)

    assigned = await assign_complaint(
        session=session, reference="c1", agent_id=aid(agent), now=T0 + timedelta(minutes=5)
    )
    assert assigned.assignee_id == agent.id
    assert assigned.first_response_at is None
    history = await complaint_history(session=session, reference=complaint.reference)
    assert [e.action for e in history] == ["filed", "assigned"]
    with pytest.raises(AgentNotFound):
        await assign_complaint(session=session, reference="c1", agent_id=999)


async def test_closed_complaints_cannot_be_assigned(session: AsyncSession) -> None:
    customer = await make_customer(session)
    agent = await make_agent(session)
    complaint = await _file(session, customer)
    await _move(session, complaint.reference, S.resolved, S.closed)
    with pytest.raises(InvalidTransition, match="C-000001 is closed; reopen it"):
        await assign_complaint(session=session, reference="C1", agent_id=aid(agent))


async def test_internal_note_is_not_a_response_but_a_visible_comment_is(
    session: AsyncSession,
) -> None:
    customer = await make_customer(session)
    agent = await make_agent(session)
    complaint = await _file(session, customer)

    note = await comment_complaint(
        session=session,
        reference=complaint.reference,
        actor_type="agent",
        actor_id=aid(agent),
        text="Checking with the carrier",
        now=T0 + timedelta(minutes=1),
    )
    assert note.action == "comment" and note.note == "Checking with the carrier"
    assert (await get_complaint(session=session, reference="1")).first_response_at is None

    await comment_complaint(
        session=session,
        reference=complaint.reference,
        actor_type=ActorType.agent,
        actor_id=aid(agent),
        text="We are on it",
        visible_to_customer=True,
        now=T0 + timedelta(minutes=2),
    )
    reloaded = await get_complaint(session=session, reference="1")
    assert reloaded.first_response_at == T0 + timedelta(minutes=2)
    with pytest.raises(InvalidInput, match="empty"):
        await comment_complaint(
            session=session, reference="1", actor_type="customer", actor_id=None, text=" "
        )


# --------------------------------------------------------------------------------------------
# Lifecycle
# --------------------------------------------------------------------------------------------

# How to bring a fresh complaint into each status through allowed moves.
PATH_TO = {
    S.open: [],
    S.in_progress: [S.in_progress],
    S.resolved: [S.resolved],
    S.closed: [S.resolved, S.closed],
}
VALID = {
    (S.open, S.in_progress),
    (S.open, S.resolved),
    (S.in_progress, S.resolved),
    (S.resolved, S.closed),
    (S.resolved, S.in_progress),
    (S.resolved, S.open),
    (S.closed, S.open),
}
REOPEN = {(S.resolved, S.in_progress), (S.resolved, S.open), (S.closed, S.open)}


async def _move(session: AsyncSession, reference: str, *statuses: ComplaintStatus) -> Complaint:
    complaint = None
    for minutes, status in enumerate(statuses, start=1):
        complaint = await transition_complaint(
            session=session,
            reference=reference,
            to_status=status,
            actor_type=ActorType.system,
            now=T0 + timedelta(hours=1, minutes=minutes),
        )
    assert complaint is not None
    return complaint


# What an agent is told when a move from each status is refused.
OPTIONS = {
    S.open: "it can go to in progress or resolved.",
    S.in_progress: "it can go to resolved.",
    S.resolved: "it can go to closed or be reopened.",
    S.closed: "it can be reopened.",
}


@pytest.mark.parametrize("start", list(ComplaintStatus))
async def test_every_transition_is_allowed_or_refused_as_specified(
    session: AsyncSession, start: ComplaintStatus
) -> None:
    customer = await make_customer(session)
    agent = await make_agent(session)
    for target in ComplaintStatus:
        complaint = await _file(session, customer)
        if PATH_TO[start]:
            await _move(session, complaint.reference, *PATH_TO[start])
        if (start, target) in VALID:
            await _check_allowed(session, complaint.reference, start, target, aid(agent))
        else:
            await _check_refused(session, complaint.reference, start, target, aid(agent))


async def _agent_move(
    session: AsyncSession, reference: str, target: ComplaintStatus, agent_id: int
) -> Complaint:
    return await transition_complaint(
        session=session,
        reference=reference,
        to_status=target,
        actor_type=ActorType.agent,
        actor_id=agent_id,
        note="done",
        now=T0 + timedelta(hours=5),
    )


async def _check_refused(
    session: AsyncSession,
    reference: str,
    start: ComplaintStatus,
    target: ComplaintStatus,
    agent_id: int,
) -> None:
    events_before = len(await complaint_history(session=session, reference=reference))
    timeline_before = len((await session.exec(select(Interaction))).all())
    with pytest.raises(InvalidTransition) as info:
        await _agent_move(session, reference, target, agent_id)
    state = f"already {start.value}" if start == target else start.value
    assert str(info.value) == f"{reference} is {state.replace('_', ' ')}; {OPTIONS[start]}"
    after = await get_complaint(session=session, reference=reference)
    assert after.status == start
    assert len(await complaint_history(session=session, reference=reference)) == events_before
    assert len((await session.exec(select(Interaction))).all()) == timeline_before


async def _check_allowed(
    session: AsyncSession,
    reference: str,
    start: ComplaintStatus,
    target: ComplaintStatus,
    agent_id: int,
) -> None:
    reopens_before = (await get_complaint(session=session, reference=reference)).reopen_count
    moved = await _agent_move(session, reference, target, agent_id)
    assert moved.status == target
    assert moved.reopen_count == reopens_before + ((start, target) in REOPEN)
    assert moved.first_response_at is not None
    if target == S.resolved:
        assert moved.resolved_at == T0 + timedelta(hours=5)
        assert moved.resolution_note == "done"
    if target == S.closed:
        assert moved.closed_at == T0 + timedelta(hours=5)
        assert moved.resolved_at is not None
    if (start, target) in REOPEN:
        assert moved.resolved_at is None and moved.closed_at is None
        assert moved.resolution_note is None
    # A shortcut (open -> resolved) is recorded as the strict steps it stands for.
    steps = SHORTCUTS.get((start, target), (target,))
    history = await complaint_history(session=session, reference=reference)
    recorded = history[-len(steps) :]
    moves = list(zip((start, *steps[:-1]), steps, strict=True))
    assert [(e.action, e.from_status, e.to_status, e.actor_id) for e in recorded] == [
        ("status_changed", source, step, agent_id) for source, step in moves
    ]
    assert recorded[-1].note == "done"


async def test_customer_may_only_confirm_or_reopen(session: AsyncSession) -> None:
    customer = await make_customer(session)
    await _file(session, customer)
    with pytest.raises(InvalidTransition, match="only an agent can move it to resolved"):
        await transition_complaint(
            session=session, reference="1", to_status="resolved", actor_type="customer"
        )
    await _move(session, "1", S.resolved)
    reopened = await transition_complaint(
        session=session, reference="1", to_status="open", actor_type="customer"
    )
    assert reopened.reopen_count == 1
    assert reopened.first_response_at is None  # nobody at the desk has answered yet
    await _move(session, "1", S.resolved)
    closed = await transition_complaint(
        session=session, reference="1", to_status="closed", actor_type="customer"
    )
    assert closed.status == S.closed


async def test_first_response_is_the_first_agent_move_only(session: AsyncSession) -> None:
    customer = await make_customer(session)
    agent = await make_agent(session)
    await _file(session, customer)
    for minutes, status in ((10, S.in_progress), (20, S.resolved)):
        complaint = await transition_complaint(
            session=session,
            reference="1",
            to_status=status,
            actor_type="agent",
            actor_id=aid(agent),
            now=T0 + timedelta(minutes=minutes),
        )
    assert complaint.first_response_at == T0 + timedelta(minutes=10)
    assert complaint.resolved_at == T0 + timedelta(minutes=20)


async def test_an_agent_move_needs_a_known_agent(session: AsyncSession) -> None:
    customer = await make_customer(session)
    await _file(session, customer)
    with pytest.raises(AgentNotFound):
        await transition_complaint(
            session=session,
            reference="1",
            to_status="in_progress",
            actor_type="agent",
            actor_id=None,
        )


async def test_two_agents_moving_the_same_complaint_at_once_do_not_both_win(
    session: AsyncSession,
    session_factory: SessionFactory,
    engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    customer = await make_customer(session)
    anna = await make_agent(session, "Anna", 1)
    ben = await make_agent(session, "Ben", 2)
    await _file(session, customer)
    await _move(session, "1", S.resolved)
    # Both agents have read the complaint before either writes, unless the first holds a lock.
    rendezvous = Rendezvous()
    check_agent = complaints_service._active_agent

    async def read_then_meet(session: AsyncSession, agent_id: int | None) -> Agent:
        await rendezvous.meet()
        return await check_agent(session, agent_id)

    monkeypatch.setattr(complaints_service, "_active_agent", read_then_meet)
    await warm_pool(engine)

    async def move(agent_id: int, status: ComplaintStatus) -> Complaint | Exception:
        async with session_factory() as own:
            try:
                return await transition_complaint(
                    session=own,
                    reference="1",
                    to_status=status,
                    actor_type="agent",
                    actor_id=agent_id,
                )
            except InvalidTransition as exc:
                return exc

    # Closing and reopening exclude each other in either order; only a race could allow both.
    results = await asyncio.gather(move(aid(anna), S.closed), move(aid(ben), S.in_progress))
    winners = [r for r in results if isinstance(r, Complaint)]
    losers = [r for r in results if isinstance(r, InvalidTransition)]
    assert len(winners) == 1 and len(losers) == 1
    final = await get_complaint(session=session, reference="1")
    assert final.status == winners[0].status
    assert final.reopen_count == (1 if final.status == S.in_progress else 0)
    changes = [
        e
        for e in await complaint_history(session=session, reference="1")
        if e.action == "status_changed"
    ]
    # The setup's resolve (recorded as open -> in_progress -> resolved), then one winning move.
    assert len(changes) == 3


async def test_severity_triage_recomputes_the_due_time_from_filing(session: AsyncSession) -> None:
    customer = await make_customer(session)
    agent = await make_agent(session)
    complaint = await _file(session, customer, severity="low")
    policy = SlaPolicy.from_mapping({"critical": 2, "low": 72})

    triaged = await set_complaint_severity(
        session=session,
        reference=complaint.reference,
        severity="Critical",
        actor_type="agent",
        actor_id=aid(agent),
        sla=policy,
        now=T0 + timedelta(hours=1),
    )
    assert triaged.severity == Severity.critical
    assert triaged.sla_due_at == T0 + timedelta(hours=2)
    history = await complaint_history(session=session, reference=complaint.reference)
    assert (history[-1].action, history[-1].note) == (
        "severity_changed",
        "severity low -> critical",
    )

    with pytest.raises(InvalidInput, match="already of critical severity"):
        await set_complaint_severity(
            session=session, reference="c1", severity="critical", actor_type="agent",
            actor_id=aid(agent),
        )  # fmt: skip
    with pytest.raises(InvalidInput, match="Choose one of: low, medium, high, critical"):
        await set_complaint_severity(
            session=session, reference="c1", severity="urgent", actor_type="agent",
            actor_id=aid(agent),
        )  # fmt: skip
    await _agent_move(session, "c1", S.resolved, aid(agent))
    await _agent_move(session, "c1", S.closed, aid(agent))
    with pytest.raises(InvalidTransition, match="closed; reopen it"):
        await set_complaint_severity(
            session=session, reference="c1", severity="low", actor_type="agent",
            actor_id=aid(agent),
        )  # fmt: skip
    assert len(await complaint_history(session=session, reference="c1")) == len(history) + 3
