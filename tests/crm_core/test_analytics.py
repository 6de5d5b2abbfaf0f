"""The supervisors' figures against hand-computed expectations (both databases)."""

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.models import (
    Agent,
    Complaint,
    Customer,
    Direction,
    Handoff,
    Interaction,
    InteractionKind,
)
from crm_core.periods import Period, Window, parse_period
from crm_core.services.analytics import (
    FIGURES,
    agent_figures,
    daily_series,
    desk_figures,
    desk_report,
    refresh_bot_outcomes,
    sla_watchlist,
)
from crm_core.services.complaints import file_complaint, get_complaint, transition_complaint
from crm_core.services.handoffs import open_handoff, record_agent_reply
from tests.crm_core.desk_factories import T0, aid, cid, make_agent, make_customer

K = InteractionKind
WEEK = timedelta(days=7)
DAY = timedelta(hours=24)
W = Window(T0, T0 + WEEK)
PERIOD = Period("7d", W, Window(T0 - WEEK, T0))
NOW = T0 + WEEK


def h(hours: float) -> timedelta:
    return timedelta(hours=hours)


def minutes(value: float) -> timedelta:
    return timedelta(minutes=value)


class Desk:
    """Builds rows with the models directly; customers by letter."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.customers: dict[str, int] = {}
        self.agents: dict[str, int] = {}
        self.count = 0

    async def customer(self, name: str) -> int:
        if name not in self.customers:
            row = Customer(name=name)
            self.session.add(row)
            await self.session.flush()
            assert row.id is not None
            self.customers[name] = row.id
        return self.customers[name]

    async def agent(self, name: str) -> int:
        row = Agent(telegram_user_id=1000 + len(self.agents), display_name=name)
        self.session.add(row)
        await self.session.flush()
        assert row.id is not None
        self.agents[name] = row.id
        return row.id

    async def complaint(
        self,
        who: str,
        created: datetime,
        category: str = "other",
        severity: str = "medium",
        status: str = "open",
        *,
        first: timedelta | None = None,
        resolved: timedelta | None = None,
        due: timedelta = DAY,
        reopens: int = 0,
        agent: str | None = None,
    ) -> Complaint:
        self.count += 1
        row = Complaint(
            reference=f"C-{self.count:06d}",
            customer_id=await self.customer(who),
            category=category,
            severity=severity,
            status=status,
            description="broken",
            created_at=created,
            sla_due_at=created + due,
            first_response_at=created + first if first is not None else None,
            resolved_at=created + resolved if resolved is not None else None,
            reopen_count=reopens,
            assignee_id=self.agents[agent] if agent else None,
        )
        self.session.add(row)
        await self.session.flush()
        return row

    async def handoff(
        self,
        who: str,
        requested: datetime,
        *,
        claimed: timedelta | None = None,
        score: int | None = None,
        agent: str | None = None,
    ) -> None:
        self.session.add(
            Handoff(
                customer_id=await self.customer(who),
                status="closed" if claimed is not None or score is not None else "waiting",
                requested_at=requested,
                claimed_at=requested + claimed if claimed is not None else None,
                closed_at=requested + h(1) if claimed is not None else None,
                csat_score=score,
                agent_id=self.agents[agent] if agent else None,
            )
        )
        await self.session.flush()

    async def say(
        self, who: str, kind: InteractionKind, at: datetime, details: dict[str, Any] | None = None
    ) -> None:
        direction = Direction.inbound if kind in (K.kb_feedback, K.message) else Direction.outbound
        self.session.add(
            Interaction(
                customer_id=await self.customer(who),
                channel="telegram",
                direction=direction,
                kind=kind,
                details=details or {},
                occurred_at=at,
            )
        )
        await self.session.flush()


async def build_desk(session: AsyncSession) -> Desk:
    desk = Desk(session)
    await desk.agent("Anna")
    await desk.agent("Bob")
    # Complaints of the week (A files twice; D's is from the week before).
    # First responses as the services keep them: A's first was a reply in the chat.
    await desk.complaint(
        "A", T0 + h(1), "delivery", "high", first=minutes(30), due=h(8), agent="Anna"
    )
    await desk.complaint(
        "B",
        T0 + h(2),
        "billing",
        "low",
        "resolved",
        first=h(2),
        resolved=h(8),
        due=h(72),
        agent="Bob",
    )
    await desk.complaint(
        "C",
        T0 + h(3),
        "billing",
        "critical",
        "closed",
        first=minutes(15),  # a reply in the chat, before the first status change
        resolved=h(6),
        due=h(2),
        reopens=1,
        agent="Anna",
    )
    await desk.complaint("A", T0 + h(5), "price", "medium", "in_progress", first=h(4), agent="Bob")
    await desk.complaint(
        "D", T0 - h(48), "product", "medium", "resolved", first=h(1), resolved=h(2), agent="Anna"
    )
    # Handoffs.
    await desk.handoff("B", T0 + h(20), claimed=minutes(10), score=5, agent="Anna")
    await desk.handoff("E", T0 + h(30), claimed=minutes(20), score=2, agent="Bob")
    await desk.handoff("F", T0 + h(40))
    await desk.handoff("G", T0 + h(50), claimed=minutes(30), score=4, agent="Anna")
    await desk.handoff("D", T0 - h(24), claimed=minutes(5), score=3, agent="Anna")
    # The bot.
    await desk.say("B", K.kb_answer, T0 + h(19))  # then B asked for a person (h1)
    await desk.say("H", K.kb_answer, T0 + h(24))  # nothing after: verified
    await desk.say("I", K.kb_answer, T0 + h(48))
    await desk.say("I", K.kb_feedback, T0 + h(48) + minutes(1), {"helpful": False})
    await desk.say("J", K.kb_answer, T0 + h(72))
    await desk.say("J", K.kb_feedback, T0 + h(72) + minutes(1), {"helpful": True})
    await desk.say("J", K.kb_none, T0 + h(74))  # a new question: not verified
    await desk.say("K", K.kb_answer, T0 + h(120))  # under 72 h old at NOW: not yet verifiable
    await desk.say("L", K.kb_suggest, T0 + h(1))
    await session.commit()
    return desk


async def test_the_weeks_complaint_figures(session: AsyncSession) -> None:
    await build_desk(session)
    report = await desk_report(session=session, period=PERIOD, now=NOW)
    now = report.current
    assert (now.opened, now.resolved, now.open_at_end) == (4, 2, 2)
    assert {k: v for k, v in now.by_category.items() if v} == {
        "delivery": 1,
        "billing": 2,
        "price": 1,
    }
    assert now.by_status == {"open": 1, "in_progress": 1, "resolved": 1, "closed": 1}
    assert now.by_severity == {"low": 1, "medium": 1, "high": 1, "critical": 1}
    # First responses 30 min, 2 h, 15 min, 4 h.
    assert now.first_response.count == 4
    assert now.first_response.median == timedelta(seconds=4500)  # between 30 min and 2 h
    assert now.first_response.p90 == timedelta(seconds=12240)  # 2 h + 0.7 x 2 h
    assert now.resolution.count == 2
    assert now.resolution.median == h(7)
    assert now.resolution.p90 == timedelta(seconds=21600 + 0.9 * 7200)
    # Breached: A's open one (due +8 h), C's resolved late, A's second in progress past due.
    assert now.sla_breached == 3
    assert now.reopened == 1


async def test_the_weeks_handoffs_and_satisfaction(session: AsyncSession) -> None:
    await build_desk(session)
    now = (await desk_report(session=session, period=PERIOD, now=NOW)).current
    assert (now.handoffs_requested, now.handoffs_claimed) == (4, 3)
    assert now.handoff_wait.median == minutes(20)
    assert now.handoff_wait.p90 == timedelta(seconds=1680)
    assert now.csat_count == 3
    assert now.csat_average == pytest.approx(11 / 3)
    assert now.csat_share_satisfied == pytest.approx(2 / 3)


async def test_the_bots_own_figures(session: AsyncSession) -> None:
    await build_desk(session)
    bot = (await desk_report(session=session, period=PERIOD, now=NOW)).current.bot
    assert (bot.answered, bot.suggested, bot.unanswered) == (5, 1, 1)
    assert (bot.helpful, bot.unhelpful) == (1, 1)
    assert bot.handoffs_after_answer == 1
    # Four answers are at least 72 h old; only H's was followed by nothing at all.
    assert (bot.matured, bot.verified) == (4, 1)
    assert bot.verified_rate == 0.25


async def test_every_figure_is_compared_with_the_previous_period(session: AsyncSession) -> None:
    await build_desk(session)
    report = await desk_report(session=session, period=PERIOD, now=NOW)
    before = report.previous
    assert (before.opened, before.resolved, before.open_at_end) == (1, 1, 0)
    assert before.first_response.median == h(1)
    assert before.handoffs_requested == 1 and before.csat_share_satisfied == 0.0
    changes = report.changes()
    assert set(changes) == set(FIGURES)
    assert changes["opened"].delta == 3 and changes["opened"].relative == 3.0
    assert changes["first_response_median"].delta == 4500 - 3600
    assert changes["csat_average"].delta == pytest.approx(11 / 3 - 3)
    # Nothing from the bot the week before: a rate has no previous value to compare with.
    assert changes["bot_verified_rate"].previous is None
    assert changes["bot_verified_rate"].delta is None
    assert changes["bot_answered"].relative is None  # previous 0: no relative change


async def test_an_empty_period_has_zeros_and_no_durations(session: AsyncSession) -> None:
    report = await desk_report(session=session, period=PERIOD, now=NOW)
    for figures in (report.current, report.previous):
        assert figures.opened == figures.resolved == figures.open_at_end == 0
        assert figures.first_response.count == 0 and figures.first_response.median is None
        assert figures.resolution.p90 is None
        assert figures.csat_average is None and figures.csat_share_satisfied is None
        assert figures.bot.verified_rate is None
    assert report.change("resolution_median").delta is None


async def test_one_complaint_is_its_own_median_and_p90(session: AsyncSession) -> None:
    desk = Desk(session)
    await desk.complaint("A", T0 + h(1), first=minutes(45), resolved=h(3), status="resolved")
    await session.commit()
    figures = await desk_figures(session=session, window=W, now=NOW)
    assert figures.opened == 1
    assert figures.first_response.median == figures.first_response.p90 == minutes(45)
    assert figures.resolution.median == figures.resolution.p90 == h(3)


async def test_today_in_the_desk_time_zone_starts_at_local_midnight(session: AsyncSession) -> None:
    desk = Desk(session)
    # Berlin is UTC+1 in winter: local midnight of 3 March is 23:00 UTC on the 2nd.
    await desk.complaint("A", datetime(2026, 3, 2, 22, 0, tzinfo=UTC))  # 23:00 on the 2nd
    await desk.complaint("B", datetime(2026, 3, 2, 23, 1, tzinfo=UTC))  # 00:01 on the 3rd
    await session.commit()
    now = datetime(2026, 3, 3, 22, 30, tzinfo=UTC)  # 23:30 in Berlin
    berlin = await desk_report(
        session=session, period=parse_period("today", time_zone="Europe/Berlin", now=now), now=now
    )
    assert (berlin.current.opened, berlin.previous.opened) == (1, 1)
    # In UTC both were filed yesterday, and only A before yesterday's 22:30.
    utc = await desk_report(session=session, period=parse_period("today", now=now), now=now)
    assert (utc.current.opened, utc.previous.opened) == (0, 1)


async def test_the_daily_series_for_the_chart(session: AsyncSession) -> None:
    await build_desk(session)
    series = await daily_series(session=session, window=W)
    assert series.days == [date(2026, 3, d) for d in range(2, 10)]
    assert series.complaints_by_category["billing"] == [2, 0, 0, 0, 0, 0, 0, 0]
    assert series.complaints_by_category["delivery"][0] == 1
    assert sum(sum(v) for v in series.complaints_by_category.values()) == 4
    assert series.resolution_hours[0] == 7.0 and series.resolution_hours[1] is None
    assert series.bot_answered == [0, 2, 1, 1, 0, 1, 0, 0]
    assert series.handoffs_requested == [0, 2, 2, 0, 0, 0, 0, 0]
    assert series.self_service_rate[:4] == [None, 0.5, 1 / 3, 1.0]


async def test_the_daily_series_follows_the_desk_time_zone(session: AsyncSession) -> None:
    desk = Desk(session)
    await desk.complaint("A", datetime(2026, 3, 2, 23, 30, tzinfo=UTC))  # the 3rd in Berlin
    await session.commit()
    window = Window(datetime(2026, 3, 1, 23, tzinfo=UTC), datetime(2026, 3, 3, 23, tzinfo=UTC))
    berlin = await daily_series(session=session, window=window, time_zone="Europe/Berlin")
    assert berlin.days == [date(2026, 3, 2), date(2026, 3, 3)]
    assert berlin.complaints_by_category["other"] == [0, 1]
    plain = await daily_series(session=session, window=window)
    assert plain.days == [date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 3)]
    assert plain.complaints_by_category["other"] == [0, 1, 0]


async def test_the_sla_watch_list_is_most_urgent_first(session: AsyncSession) -> None:
    await build_desk(session)
    early = await sla_watchlist(session=session, now=T0 + h(8), within=h(4))
    assert (early.breached, early.breaching) == (0, 1)
    [item] = early.items
    assert item.reference == "C-000001" and item.assignee_name == "Anna"
    assert item.age == h(7) and item.overdue == -h(1) and not item.breached
    late = await sla_watchlist(session=session, now=T0 + h(30))
    assert [i.reference for i in late.items] == ["C-000001", "C-000004"]
    assert [i.overdue for i in late.items] == [h(21), h(1)]
    assert (late.breached, late.breaching) == (2, 0)
    assert [
        i.reference for i in (await sla_watchlist(session=session, now=NOW, limit=1)).items
    ] == ["C-000001"]


async def test_per_agent_figures(session: AsyncSession) -> None:
    await build_desk(session)
    anna, bob = await agent_figures(session=session, window=W)
    assert (anna.name, anna.handoffs_claimed, anna.complaints_resolved) == ("Anna", 2, 1)
    assert anna.first_response.median == timedelta(seconds=1350)  # 30 min and 15 min
    assert (anna.rating_average, anna.rating_count) == (4.5, 2)
    assert (bob.name, bob.handoffs_claimed, bob.complaints_resolved) == ("Bob", 1, 1)
    assert bob.first_response.median == h(3)  # 2 h and 4 h
    assert (bob.rating_average, bob.rating_count) == (2.0, 1)


async def test_agents_without_activity_are_listed_with_zeros(session: AsyncSession) -> None:
    desk = Desk(session)
    await desk.agent("Cleo")
    await session.commit()
    [cleo] = await agent_figures(session=session, window=W)
    assert (cleo.handoffs_claimed, cleo.complaints_resolved, cleo.rating_count) == (0, 0, 0)
    assert cleo.first_response.median is None


async def test_an_agents_chat_reply_is_the_first_response_to_complaints_waiting_for_one(
    session: AsyncSession,
) -> None:
    customer, agent = await make_customer(session), await make_agent(session)

    async def file(at: datetime) -> str:
        complaint = await file_complaint(
            session=session, customer_id=cid(customer), category="billing", description="x", now=at
        )
        return complaint.reference

    answered = await file(T0)
    await transition_complaint(
        session=session,
        reference=answered,
        to_status="in_progress",
        actor_type="agent",
        actor_id=aid(agent),
        now=T0 + h(1),
    )
    waiting = await file(T0 + h(2))
    opened = await open_handoff(
        session=session, customer_id=cid(customer), reminder_after=h(1), now=T0 + h(2)
    )
    assert opened.handoff.id is not None
    await record_agent_reply(
        session=session, handoff_id=opened.handoff.id, agent_id=aid(agent), now=T0 + h(3)
    )
    later = await file(T0 + h(4))
    firsts = [
        (await get_complaint(session=session, reference=ref)).first_response_at
        for ref in (answered, waiting, later)
    ]
    assert firsts == [T0 + h(1), T0 + h(3), None]
    figures = await desk_figures(session=session, window=W, now=NOW)
    assert figures.first_response.count == 2 and figures.first_response.median == h(1)


async def test_recorded_bot_outcomes_give_the_same_figures(session: AsyncSession) -> None:
    await build_desk(session)
    live = (await desk_report(session=session, period=PERIOD, now=NOW)).current.bot
    # Part way: only the answers up to T0 + 25 h are 72 h old at T0 + 97 h.
    assert await refresh_bot_outcomes(session=session, now=T0 + h(97)) == 2
    partly = (await desk_report(session=session, period=PERIOD, now=NOW)).current.bot
    assert await refresh_bot_outcomes(session=session, now=NOW) == 2  # the next two
    assert await refresh_bot_outcomes(session=session, now=NOW) == 0  # nothing new
    recorded = (await desk_report(session=session, period=PERIOD, now=NOW)).current.bot
    assert (live.matured, live.verified) == (4, 1)
    assert partly == recorded == live


async def test_bot_outcomes_with_no_answers_at_all(session: AsyncSession) -> None:
    assert await refresh_bot_outcomes(session=session, now=NOW) == 0
    assert (await desk_figures(session=session, window=W, now=NOW)).bot.verified_rate is None
