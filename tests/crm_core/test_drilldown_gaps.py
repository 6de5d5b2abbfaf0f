"""The lists behind the /stats figures, and the knowledge-base gaps."""

from datetime import timedelta

import pytest
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.errors import InvalidInput
from crm_core.models import Customer, Direction, Interaction, InteractionKind
from crm_core.periods import Window
from crm_core.services.analytics import desk_figures
from crm_core.services.drilldown import behind_figure
from crm_core.services.gaps import knowledge_gaps
from tests.crm_core.desk_factories import T0
from tests.crm_core.test_analytics import NOW, W, build_desk

K = InteractionKind


async def test_each_list_holds_what_its_figure_counts(session: AsyncSession) -> None:
    await build_desk(session)
    figures = await desk_figures(session=session, window=W, now=NOW)
    expected = {
        "opened": figures.opened,
        "resolved": figures.resolved,
        "open": figures.open_at_end,
        "sla_breached": figures.sla_breached,
        "reopened": figures.reopened,
        "category:billing": figures.by_category["billing"],
        "status:open": figures.by_status["open"],
        "severity:critical": figures.by_severity["critical"],
        "handoffs_requested": figures.handoffs_requested,
        "handoffs_unclaimed": figures.handoffs_requested - figures.handoffs_claimed,
        "bot_unhelpful": figures.bot.unhelpful,
        "bot_unanswered": figures.bot.unanswered,
    }
    for name, count in expected.items():
        behind = await behind_figure(session=session, figure=name, window=W, now=NOW, limit=50)
        assert behind.total == len(behind.items) == count, name


async def test_a_list_is_newest_first_with_who_and_what(session: AsyncSession) -> None:
    await build_desk(session)
    breached = await behind_figure(session=session, figure="sla_breached", window=W, now=NOW)
    assert [i.label for i in breached.items] == ["C-000004", "C-000003", "C-000001"]
    first = breached.items[-1]
    assert (first.status, first.assignee, first.detail) == ("open", "Anna", "delivery, high")
    low = await behind_figure(session=session, figure="csat_low", window=W, now=NOW)
    assert low.total == 1 and low.items[0].assignee == "Bob"
    assert low.items[0].detail == "rated 2/5"


async def test_lists_are_paged_but_count_everything(session: AsyncSession) -> None:
    await build_desk(session)
    page = await behind_figure(
        session=session, figure="opened", window=W, now=NOW, limit=2, offset=2
    )
    assert page.total == 4 and [i.label for i in page.items] == ["C-000002", "C-000001"]


@pytest.mark.parametrize("figure", ["nonsense", "category:weather", "status:"])
async def test_an_unknown_figure_is_refused_with_the_known_ones(
    session: AsyncSession, figure: str
) -> None:
    with pytest.raises(InvalidInput, match="Known figures: opened"):
        await behind_figure(session=session, figure=figure, window=W, now=NOW)


async def say(
    session: AsyncSession, customer: int, kind: InteractionKind, minutes: float, text: str = ""
) -> None:
    inbound = kind == K.message
    session.add(
        Interaction(
            customer_id=customer,
            channel="telegram",
            direction=Direction.inbound if inbound else Direction.outbound,
            kind=kind,
            text=text or None,
            occurred_at=T0 + timedelta(minutes=minutes),
        )
    )


async def test_gaps_group_similar_unanswered_questions_with_agent_answers(
    session: AsyncSession,
) -> None:
    people = [Customer(name=f"P{i}") for i in range(4)]
    session.add_all(people)
    await session.flush()
    ids = [p.id for p in people]
    assert all(i is not None for i in ids)
    a, b, c, d = (int(i) for i in ids if i is not None)
    await say(session, a, K.message, 0, "Do you ship to Norway?")
    await say(session, a, K.kb_none, 0.1)
    await say(session, a, K.agent_reply, 30, "Yes, within 5 days.")
    await say(session, b, K.message, 10, "do you ship to norway")
    await say(session, b, K.kb_none, 10.1)
    await say(session, c, K.message, 20, "Can I pay with PayPal?")
    await say(session, c, K.kb_none, 20.1)
    await say(session, c, K.agent_reply, 60 * 80, "too late to count")  # after 72 h
    await say(session, d, K.message, 30, "Do you ship to Norway please?")
    await say(session, d, K.kb_answer, 30.1)  # answered: not a gap
    await session.commit()
    report = await knowledge_gaps(session=session, window=W)
    assert report.unanswered == 3
    ship, pay = report.groups
    assert ship.count == 2
    assert set(ship.examples) == {"Do you ship to Norway?", "do you ship to norway"}
    assert ship.agent_answers == ["Yes, within 5 days."]
    assert (pay.count, pay.examples, pay.agent_answers) == (1, ["Can I pay with PayPal?"], [])


async def test_no_gaps_in_an_empty_window(session: AsyncSession) -> None:
    report = await knowledge_gaps(session=session, window=Window(T0, T0 + timedelta(days=1)))
    assert report.unanswered == 0 and report.groups == []
