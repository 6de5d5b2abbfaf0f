import asyncio
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.db import SessionFactory
from crm_core.errors import (
    AgentNotFound,
    AlreadyClaimed,
    ComplaintNotFound,
    CustomerNotFound,
    HandoffNotFound,
    InvalidInput,
    InvalidTransition,
)
from crm_core.models import (
    Complaint,
    ComplaintCategory,
    Customer,
    GroupMessageLink,
    Handoff,
    HandoffStatus,
    Interaction,
    InteractionKind,
)
from crm_core.services import handoffs as handoffs_service
from crm_core.services.complaints import file_complaint, set_complaint_group_location
from crm_core.services.handoffs import (
    DueReminder,
    ReminderKind,
    claim_due_reminders,
    claim_handoff,
    close_handoff,
    find_by_group_message,
    find_handoff_by_topic,
    get_handoff,
    get_open_handoff,
    link_group_message,
    list_waiting_handoffs,
    mark_unreachable,
    move_handoff_chat,
    open_handoff,
    rate_handoff,
    record_agent_reply,
    set_handoff_location,
)
from tests.crm_core.desk_factories import (
    T0,
    Rendezvous,
    aid,
    cid,
    make_agent,
    make_customer,
    warm_pool,
)

REMIND = timedelta(minutes=10)
H = HandoffStatus


async def _open(session: AsyncSession, customer: Customer, **kwargs: object) -> Handoff:
    params: dict[str, object] = {"reminder_after": REMIND, "now": T0}
    params.update(kwargs)
    opened = await open_handoff(session=session, customer_id=cid(customer), **params)  # type: ignore[arg-type]
    return opened.handoff


def hid(handoff: Handoff) -> int:
    assert handoff.id is not None
    return handoff.id


async def _events(session: AsyncSession, kind: InteractionKind) -> list[Interaction]:
    stmt = select(Interaction).where(Interaction.kind == kind).order_by(Interaction.id)  # type: ignore[arg-type]
    return list((await session.exec(stmt)).all())


# --------------------------------------------------------------------------------------------
# Opening
# --------------------------------------------------------------------------------------------


async def test_opening_schedules_a_reminder_and_logs_the_request(session: AsyncSession) -> None:
    customer = await make_customer(session)
    opened = await open_handoff(
        session=session,
        customer_id=cid(customer),
        reason=" Wrong invoice ",
        reminder_after=REMIND,
        now=T0,
    )
    assert opened.created
    handoff = opened.handoff
    assert (handoff.status, handoff.reason, handoff.requested_at) == (
        H.waiting,
        "Wrong invoice",
        T0,
    )
    assert handoff.next_reminder_at == T0 + REMIND
    [event] = await _events(session, InteractionKind.handoff_event)
    assert (event.customer_id, event.handoff_id, event.details["action"]) == (
        customer.id,
        handoff.id,
        "opened",
    )


async def test_asking_again_returns_the_current_handoff(session: AsyncSession) -> None:
    customer = await make_customer(session)
    first = await _open(session, customer)
    again = await open_handoff(session=session, customer_id=cid(customer), reminder_after=REMIND)
    assert not again.created and again.handoff.id == first.id
    assert len(await _events(session, InteractionKind.handoff_event)) == 1


async def test_a_merged_customer_gets_the_survivors_handoff(session: AsyncSession) -> None:
    survivor = await make_customer(session, "Survivor")
    absorbed = Customer(name="Old", merged_into_id=survivor.id)
    session.add(absorbed)
    await session.commit()
    current = await _open(session, survivor)
    via_old_id = await _open(session, absorbed)
    assert via_old_id.id == current.id and via_old_id.customer_id == survivor.id


async def test_after_closing_a_new_handoff_can_be_opened(session: AsyncSession) -> None:
    customer = await make_customer(session)
    first = await _open(session, customer)
    await close_handoff(session=session, handoff_id=hid(first))
    second = await open_handoff(session=session, customer_id=cid(customer), reminder_after=REMIND)
    assert second.created and second.handoff.id != first.id


async def test_concurrent_requests_open_exactly_one_handoff(
    session: AsyncSession, session_factory: SessionFactory
) -> None:
    customer = await make_customer(session)

    async def ask() -> tuple[int | None, bool]:
        async with session_factory() as own:
            opened = await open_handoff(
                session=own, customer_id=cid(customer), reminder_after=REMIND
            )
            return opened.handoff.id, opened.created

    results = await asyncio.gather(*(ask() for _ in range(8)))
    assert len({handoff_id for handoff_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert len((await session.exec(select(Handoff))).all()) == 1


async def test_opening_for_an_unknown_customer_or_complaint_is_refused(
    session: AsyncSession,
) -> None:
    with pytest.raises(CustomerNotFound):
        await open_handoff(session=session, customer_id=404, reminder_after=REMIND)
    customer = await make_customer(session)
    with pytest.raises(ComplaintNotFound, match="There is no complaint #77"):
        await open_handoff(
            session=session, customer_id=cid(customer), complaint_id=77, reminder_after=REMIND
        )
    assert (await session.exec(select(Handoff))).all() == []


async def test_a_complaint_is_attached_to_the_current_handoff(session: AsyncSession) -> None:
    customer = await make_customer(session)
    handoff = await _open(session, customer)
    complaint = await file_complaint(
        session=session,
        customer_id=cid(customer),
        category=ComplaintCategory.billing,
        description="Charged twice",
    )
    again = await open_handoff(
        session=session,
        customer_id=cid(customer),
        complaint_id=complaint.id,
        reminder_after=REMIND,
    )
    assert again.handoff.id == handoff.id
    assert (
        await get_handoff(session=session, handoff_id=hid(handoff))
    ).complaint_id == complaint.id


# --------------------------------------------------------------------------------------------
# Claiming
# --------------------------------------------------------------------------------------------


async def test_two_agents_claiming_at_once_exactly_one_wins(
    session: AsyncSession, session_factory: SessionFactory
) -> None:
    customer = await make_customer(session)
    anna = await make_agent(session, "Anna", 1)
    ben = await make_agent(session, "Ben", 2)
    handoff = await _open(session, customer)
    names = {anna.id: "Anna", ben.id: "Ben"}

    async def claim(agent_id: int) -> Handoff | AlreadyClaimed:
        async with session_factory() as own:
            try:
                return await claim_handoff(session=own, handoff_id=hid(handoff), agent_id=agent_id)
            except AlreadyClaimed as exc:
                return exc

    results = await asyncio.gather(claim(aid(anna)), claim(aid(ben)))
    winners = [r for r in results if isinstance(r, Handoff)]
    losers = [r for r in results if isinstance(r, AlreadyClaimed)]
    assert len(winners) == 1 and len(losers) == 1
    winner_name = names[winners[0].agent_id]
    assert str(losers[0]) == f"Already taken by {winner_name}."
    assert losers[0].agent_name == winner_name
    stored = await get_handoff(session=session, handoff_id=hid(handoff))
    assert (stored.status, stored.agent_id) == (H.claimed, winners[0].agent_id)
    assert stored.next_reminder_at is None  # nobody needs reminding any more
    claims = [
        e
        for e in await _events(session, InteractionKind.handoff_event)
        if e.details["action"] == "claimed"
    ]
    assert len(claims) == 1


async def test_claiming_ones_own_handoff_again_changes_nothing(session: AsyncSession) -> None:
    customer = await make_customer(session)
    anna = await make_agent(session)
    handoff = await _open(session, customer)
    first = await claim_handoff(
        session=session, handoff_id=hid(handoff), agent_id=aid(anna), now=T0 + REMIND
    )
    again = await claim_handoff(
        session=session, handoff_id=hid(handoff), agent_id=aid(anna), now=T0 + 2 * REMIND
    )
    assert again.claimed_at == first.claimed_at == T0 + REMIND


async def test_claim_refusals(session: AsyncSession) -> None:
    customer = await make_customer(session)
    anna = await make_agent(session)
    handoff = await _open(session, customer)
    with pytest.raises(AgentNotFound):
        await claim_handoff(session=session, handoff_id=hid(handoff), agent_id=999)
    with pytest.raises(HandoffNotFound):
        await claim_handoff(session=session, handoff_id=999, agent_id=aid(anna))
    await close_handoff(session=session, handoff_id=hid(handoff))
    with pytest.raises(InvalidTransition, match="already closed"):
        await claim_handoff(session=session, handoff_id=hid(handoff), agent_id=aid(anna))


async def test_first_agent_reply_is_kept_once_and_claims_a_waiting_customer(
    session: AsyncSession,
) -> None:
    customer = await make_customer(session)
    anna = await make_agent(session)
    handoff = await _open(session, customer)
    for minutes in (3, 9):
        replied = await record_agent_reply(
            session=session,
            handoff_id=hid(handoff),
            agent_id=aid(anna),
            now=T0 + timedelta(minutes=minutes),
        )
    assert replied.first_agent_reply_at == T0 + timedelta(minutes=3)
    assert (replied.status, replied.agent_id, replied.claimed_at) == (
        H.claimed,
        anna.id,
        T0 + timedelta(minutes=3),
    )
    assert replied.next_reminder_at is None


async def test_a_reply_does_not_take_a_customer_from_a_colleague(session: AsyncSession) -> None:
    customer = await make_customer(session)
    anna = await make_agent(session, "Anna", 1)
    ben = await make_agent(session, "Ben", 2)
    handoff = await _open(session, customer)
    await claim_handoff(session=session, handoff_id=hid(handoff), agent_id=aid(anna))
    replied = await record_agent_reply(session=session, handoff_id=hid(handoff), agent_id=aid(ben))
    assert replied.agent_id == anna.id and replied.first_agent_reply_at is not None


async def test_inactive_agents_cannot_claim(session: AsyncSession) -> None:
    customer = await make_customer(session)
    gone = await make_agent(session, "Gone", 3)
    gone.active = False
    await session.commit()
    handoff = await _open(session, customer)
    with pytest.raises(AgentNotFound, match="Gone is no longer an active agent"):
        await claim_handoff(session=session, handoff_id=hid(handoff), agent_id=aid(gone))
    assert (await get_handoff(session=session, handoff_id=hid(handoff))).status == H.waiting


# --------------------------------------------------------------------------------------------
# Closing and rating
# --------------------------------------------------------------------------------------------


async def test_closing_records_who_when_and_why_and_only_once(session: AsyncSession) -> None:
    customer = await make_customer(session)
    anna = await make_agent(session)
    handoff = await _open(session, customer)
    await claim_handoff(session=session, handoff_id=hid(handoff), agent_id=aid(anna))
    closed = await close_handoff(
        session=session,
        handoff_id=hid(handoff),
        agent_id=aid(anna),
        summary="Refund sent",
        now=T0 + timedelta(hours=1),
    )
    assert (closed.status, closed.closed_at, closed.summary) == (
        H.closed,
        T0 + timedelta(hours=1),
        "Refund sent",
    )
    assert await get_open_handoff(session=session, customer_id=cid(customer)) is None
    with pytest.raises(InvalidTransition, match=r"^This conversation is already closed\.$"):
        await close_handoff(session=session, handoff_id=hid(handoff), agent_id=aid(anna))


async def test_rating_must_be_one_to_five(session: AsyncSession) -> None:
    customer = await make_customer(session)
    handoff = await _open(session, customer)
    await close_handoff(session=session, handoff_id=hid(handoff))
    for score in (0, 6, -1, True, 2.5):
        with pytest.raises(InvalidInput, match=r"^Please rate from 1 to 5\.$"):
            await rate_handoff(
                session=session,
                handoff_id=hid(handoff),
                score=score,  # type: ignore[arg-type]
            )
    assert (await get_handoff(session=session, handoff_id=hid(handoff))).csat_score is None
    assert await _events(session, InteractionKind.csat) == []


async def test_only_closed_conversations_can_be_rated(session: AsyncSession) -> None:
    customer = await make_customer(session)
    handoff = await _open(session, customer)
    with pytest.raises(InvalidTransition, match="once it is closed"):
        await rate_handoff(session=session, handoff_id=hid(handoff), score=5)


async def test_a_comment_can_follow_the_score(session: AsyncSession) -> None:
    customer = await make_customer(session)
    handoff = await _open(session, customer)
    await close_handoff(session=session, handoff_id=hid(handoff))
    await rate_handoff(session=session, handoff_id=hid(handoff), score=4)
    rated = await rate_handoff(
        session=session, handoff_id=hid(handoff), score=4, comment="Quick and kind"
    )
    assert (rated.csat_score, rated.csat_comment) == (4, "Quick and kind")
    csat = await _events(session, InteractionKind.csat)
    assert [(e.details["score"], e.text) for e in csat] == [(4, None), (4, "Quick and kind")]


async def test_unreachable_customers_are_flagged_once(session: AsyncSession) -> None:
    customer = await make_customer(session)
    handoff = await _open(session, customer)
    await mark_unreachable(session=session, handoff_id=hid(handoff))
    flagged = await mark_unreachable(session=session, handoff_id=hid(handoff))
    assert flagged.unreachable
    actions = [e.details["action"] for e in await _events(session, InteractionKind.handoff_event)]
    assert actions == ["opened", "unreachable"]


# --------------------------------------------------------------------------------------------
# The agents' group
# --------------------------------------------------------------------------------------------

GROUP = -1001987654321012
SUPERGROUP = -1002222222222222


async def test_topic_and_message_lookups(session: AsyncSession) -> None:
    customer = await make_customer(session)
    handoff = await _open(session, customer)
    await set_handoff_location(
        session=session, handoff_id=hid(handoff), chat_id=GROUP, topic_id=55, card_message_id=56
    )
    found = await find_handoff_by_topic(session=session, chat_id=GROUP, topic_id=55)
    assert found is not None and found.id == handoff.id
    assert await find_handoff_by_topic(session=session, chat_id=GROUP, topic_id=99) is None

    link = await link_group_message(
        session=session, chat_id=GROUP, message_id=56, handoff_id=hid(handoff)
    )
    again = await link_group_message(
        session=session, chat_id=GROUP, message_id=56, handoff_id=hid(handoff)
    )
    assert again.id == link.id
    hit = await find_by_group_message(session=session, chat_id=GROUP, message_id=56)
    assert hit is not None and hit.handoff_id == handoff.id
    assert await find_by_group_message(session=session, chat_id=GROUP, message_id=57) is None

    await close_handoff(session=session, handoff_id=hid(handoff))
    assert await find_handoff_by_topic(session=session, chat_id=GROUP, topic_id=55) is None


async def test_a_link_needs_a_target(session: AsyncSession) -> None:
    with pytest.raises(InvalidInput):
        await link_group_message(session=session, chat_id=GROUP, message_id=1)


async def test_moving_the_group_to_a_supergroup_follows_everything(session: AsyncSession) -> None:
    customer = await make_customer(session)
    other = await make_customer(session, "Other")
    handoff = await _open(session, customer)
    elsewhere = await _open(session, other)
    complaint = await file_complaint(
        session=session, customer_id=cid(customer), category="service", description="Rude"
    )
    assert complaint.id is not None
    await set_handoff_location(
        session=session, handoff_id=hid(handoff), chat_id=GROUP, topic_id=None, card_message_id=10
    )
    await set_handoff_location(
        session=session, handoff_id=hid(elsewhere), chat_id=123, topic_id=None, card_message_id=5
    )
    await set_complaint_group_location(
        session=session, complaint_id=complaint.id, chat_id=GROUP, topic_id=None, message_id=11
    )
    for message_id in (10, 11):
        await link_group_message(
            session=session, chat_id=GROUP, message_id=message_id, handoff_id=hid(handoff)
        )

    moved = await move_handoff_chat(session=session, old_chat_id=GROUP, new_chat_id=SUPERGROUP)

    assert moved == 4  # one handoff, one complaint, two message links
    assert (await get_handoff(session=session, handoff_id=hid(handoff))).chat_id == SUPERGROUP
    assert (await get_handoff(session=session, handoff_id=hid(elsewhere))).chat_id == 123
    stored = await session.get(Complaint, complaint.id)
    assert stored is not None and stored.group_chat_id == SUPERGROUP
    link = await find_by_group_message(session=session, chat_id=SUPERGROUP, message_id=11)
    assert link is not None and link.handoff_id == handoff.id
    assert (
        await session.exec(select(GroupMessageLink).where(GroupMessageLink.chat_id == GROUP))
    ).all() == []
    assert await move_handoff_chat(session=session, old_chat_id=GROUP, new_chat_id=SUPERGROUP) == 0


# --------------------------------------------------------------------------------------------
# Reminders
# --------------------------------------------------------------------------------------------


async def test_waiting_list_is_longest_waiting_first(session: AsyncSession) -> None:
    late = await _open(session, await make_customer(session, "Late"), now=T0 + REMIND)
    early = await _open(session, await make_customer(session, "Early"), now=T0)
    claimed = await _open(session, await make_customer(session, "Served"), now=T0)
    agent = await make_agent(session)
    await claim_handoff(session=session, handoff_id=hid(claimed), agent_id=aid(agent))
    waiting = await list_waiting_handoffs(session=session)
    assert [h.id for h in waiting] == [early.id, late.id]


async def _sweep(session: AsyncSession, at: timedelta) -> list[DueReminder]:
    return await claim_due_reminders(session=session, now=T0 + at, reminder_after=REMIND)


async def test_reannounce_then_escalate_then_silence(session: AsyncSession) -> None:
    customer = await make_customer(session)
    handoff = await _open(session, customer)

    assert await _sweep(session, REMIND - timedelta(seconds=1)) == []
    [first] = await _sweep(session, REMIND)
    assert (first.handoff_id, first.kind, first.reminders_sent) == (
        handoff.id,
        ReminderKind.reannounce,
        1,
    )
    assert await _sweep(session, REMIND + timedelta(minutes=5)) == []
    [second] = await _sweep(session, 2 * REMIND)
    assert second.kind is ReminderKind.escalate and second.escalate
    stored = await get_handoff(session=session, handoff_id=hid(handoff))
    assert stored.escalated_at == T0 + 2 * REMIND
    assert stored.next_reminder_at is None
    assert await _sweep(session, 10 * REMIND) == []
    actions = [e.details["action"] for e in await _events(session, InteractionKind.handoff_event)]
    assert actions == ["opened", "reminder_reannounce", "reminder_escalate"]


async def test_more_reannouncements_before_escalating(session: AsyncSession) -> None:
    customer = await make_customer(session)
    await _open(session, customer)
    kinds = []
    for n in range(1, 5):
        due = await claim_due_reminders(
            session=session,
            now=T0 + n * REMIND,
            reminder_after=REMIND,
            escalate_after_reminders=2,
        )
        kinds.append([d.kind for d in due])
    assert kinds == [
        [ReminderKind.reannounce],
        [ReminderKind.reannounce],
        [ReminderKind.escalate],
        [],
    ]


async def test_claimed_or_closed_handoffs_are_not_reminded(session: AsyncSession) -> None:
    agent = await make_agent(session)
    claimed = await _open(session, await make_customer(session, "A"))
    closed = await _open(session, await make_customer(session, "B"))
    await claim_handoff(session=session, handoff_id=hid(claimed), agent_id=aid(agent))
    await close_handoff(session=session, handoff_id=hid(closed))
    assert await _sweep(session, 5 * REMIND) == []


async def test_two_sweepers_take_each_due_handoff_exactly_once(
    session: AsyncSession,
    session_factory: SessionFactory,
    engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    handoffs = [await _open(session, await make_customer(session, f"C{i}")) for i in range(30)]
    # Both sweepers have selected their candidates before either advances one (where the
    # database lets them: SQLite serialises the sweeps, PostgreSQL skips locked rows).
    rendezvous = Rendezvous()
    advance = handoffs_service._advance_group

    async def selected_then_meet(*args: Any) -> list[DueReminder]:
        await rendezvous.meet()
        return await advance(*args)

    monkeypatch.setattr(handoffs_service, "_advance_group", selected_then_meet)
    await warm_pool(engine)

    async def sweep() -> list[DueReminder]:
        async with session_factory() as own:
            return await _sweep(own, REMIND)

    first, second = await asyncio.gather(sweep(), sweep())
    taken = [r.handoff_id for r in first + second]
    assert sorted(taken) == sorted(hid(h) for h in handoffs)
    assert all(r.kind is ReminderKind.reannounce for r in first + second)
    for handoff in handoffs:
        stored = await get_handoff(session=session, handoff_id=hid(handoff))
        assert stored.reminders_sent == 1
