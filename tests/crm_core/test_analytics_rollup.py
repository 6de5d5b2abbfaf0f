"""The hourly timeline rollup gives exactly the figures the timeline gives (both databases):
/stats' bot figures and the chart's series, for windows that cut hours in the middle, before the
job ran, part way through and after it, and for entries logged after it ran."""

from datetime import timedelta

from sqlmodel import func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.models import InteractionHour
from crm_core.periods import Window
from crm_core.services.analytics import daily_series, desk_figures
from crm_core.services.interaction_hours import refresh_interaction_hours, rolled_until
from tests.crm_core.test_analytics import NOW, T0, Desk, K, build_desk, h

# Windows that start and end inside an hour, and a whole-hours one.
WINDOWS = [
    Window(T0 - h(30) + timedelta(minutes=17), NOW - timedelta(minutes=41)),
    Window(T0 + h(47) + timedelta(seconds=30), T0 + h(73) + timedelta(minutes=2)),
    Window(T0 - h(48), NOW + h(24)),
]


async def _more_timeline(desk: Desk) -> None:
    """Votes and questions at odd minutes, some on the windows' edges."""
    for minute, helpful in ((3, True), (16, False), (17, True), (59, False)):
        await desk.say(
            "M", K.kb_feedback, T0 - h(30) + timedelta(minutes=minute), {"helpful": helpful}
        )
    await desk.say("M", K.kb_feedback, T0 + h(30), {})  # a vote without a verdict
    await desk.say("N", K.kb_none, T0 + h(47) + timedelta(seconds=29))
    await desk.say("N", K.kb_none, T0 + h(47) + timedelta(seconds=30))
    await desk.say("N", K.kb_answer, T0 + h(73) + timedelta(minutes=1, seconds=59))
    await desk.say("N", K.kb_answer, T0 + h(73) + timedelta(minutes=2))
    await desk.say("P", K.kb_suggest, NOW - timedelta(minutes=42))
    await desk.say("P", K.message, NOW - timedelta(minutes=50))
    await desk.session.commit()


async def _figures(session: AsyncSession) -> list[object]:
    results: list[object] = []
    for window in WINDOWS:
        results.append(await desk_figures(session=session, window=window, now=NOW))
        for zone in ("UTC", "Europe/Berlin", "Asia/Kolkata"):  # Kolkata: half-hour edges
            results.append(await daily_series(session=session, window=window, time_zone=zone))
    return results


async def test_rolled_up_hours_give_the_timelines_figures(session: AsyncSession) -> None:
    desk = await build_desk(session)
    await _more_timeline(desk)
    direct = await _figures(session)

    # Part way (the hours up to T0 + 40 h), then everything.
    assert await refresh_interaction_hours(session=session, now=T0 + h(41)) > 0
    assert await rolled_until(session) == T0 + h(40)
    partly = await _figures(session)
    assert await refresh_interaction_hours(session=session, now=NOW + h(48)) > 0
    assert await refresh_interaction_hours(session=session, now=NOW + h(48)) == 0
    rows = (await session.exec(select(func.count()).select_from(InteractionHour))).one()
    assert rows > 0
    rolled = await _figures(session)

    assert partly == direct
    assert rolled == direct
    bot = direct[0].bot  # type: ignore[attr-defined]
    assert (bot.helpful, bot.unhelpful) == (2, 2)  # M's votes from minute 17 on, I's, J's


async def test_entries_after_the_rolled_up_hours_are_counted_from_the_timeline(
    session: AsyncSession,
) -> None:
    desk = await build_desk(session)
    await refresh_interaction_hours(session=session, now=T0 + h(60))
    before = await desk_figures(session=session, window=WINDOWS[2], now=NOW)
    await desk.say("Q", K.kb_answer, T0 + h(59) + timedelta(minutes=5))  # not rolled up yet
    await session.commit()
    after = await desk_figures(session=session, window=WINDOWS[2], now=NOW)
    assert after.bot.answered == before.bot.answered + 1


async def test_an_empty_timeline_rolls_up_nothing(session: AsyncSession) -> None:
    assert await refresh_interaction_hours(session=session, now=NOW) == 0
    figures = await desk_figures(session=session, window=WINDOWS[0], now=NOW)
    assert figures.bot.questions == 0
