from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crm_core.business_hours import BusinessHoursError, parse_business_hours
from crm_core.models import ComplaintCategory, Severity
from crm_core.sla import SlaPolicy

OFFICE = parse_business_hours("mon-fri 09:00-17:00", "2026-12-24, 2026-12-25", "Europe/Berlin")
FRI_1630_BERLIN = datetime(2026, 11, 27, 15, 30, tzinfo=UTC)  # 16:30 CET


def test_open_closed_and_the_next_opening() -> None:
    assert OFFICE.is_open(FRI_1630_BERLIN)
    saturday = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    assert not OFFICE.is_open(saturday)
    assert OFFICE.next_open(saturday) == datetime(2026, 11, 30, 8, 0, tzinfo=UTC)  # Mon 09:00
    christmas_eve = datetime(2026, 12, 24, 10, 0, tzinfo=UTC)  # a Thursday, but a holiday
    assert OFFICE.next_open(christmas_eve) == datetime(2026, 12, 28, 8, 0, tzinfo=UTC)


def test_an_sla_clock_pauses_while_the_desk_is_closed() -> None:
    # 2 h from Friday 16:30: half an hour on Friday, 1.5 h on Monday -> Monday 10:30 CET.
    assert OFFICE.add(FRI_1630_BERLIN, timedelta(hours=2)) == datetime(
        2026, 11, 30, 9, 30, tzinfo=UTC
    )
    policy = SlaPolicy.from_mapping({"critical": 2}, business_hours=OFFICE)
    due = policy.due_at(ComplaintCategory.billing, Severity.critical, FRI_1630_BERLIN)
    assert due == datetime(2026, 11, 30, 9, 30, tzinfo=UTC)
    # Without opening hours the clock is the calendar's.
    always = SlaPolicy.from_mapping({"critical": 2})
    assert always.due_at(ComplaintCategory.billing, Severity.critical, FRI_1630_BERLIN) == (
        FRI_1630_BERLIN + timedelta(hours=2)
    )


def test_days_wrap_and_several_intervals_and_midnight() -> None:
    hours = parse_business_hours("fri-mon 10:00-12:00; fri-mon 13:00-24:00", "", "UTC")
    sunday = datetime(2026, 11, 29, 12, 30, tzinfo=UTC)
    assert not hours.is_open(sunday) and hours.next_open(sunday) == sunday.replace(
        hour=13, minute=0
    )
    assert hours.is_open(sunday.replace(hour=23, minute=59))
    assert not hours.is_open(datetime(2026, 11, 25, 11, 0, tzinfo=UTC))  # a Wednesday


@pytest.mark.parametrize(
    ("spec", "holidays", "problem"),
    [
        ("weekdays 9-5", "", "cannot read"),
        ("mon-fri 17:00-09:00", "", "end must come after"),
        ("mon-fry 09:00-17:00", "", "unknown day 'fry'"),
        ("mon 25:00-26:00", "", "not a time of day"),
        ("mon-fri 09:00-17:00", "christmas", "not a date"),
    ],
)
def test_unreadable_hours_are_refused_with_the_way_to_write_them(
    spec: str, holidays: str, problem: str
) -> None:
    with pytest.raises(BusinessHoursError, match=problem):
        parse_business_hours(spec, holidays, "UTC")


@given(
    start=st.datetimes(
        min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
    ),
    minutes=st.integers(min_value=1, max_value=60 * 200),
)
def test_open_time_added_lands_in_open_time_and_never_earlier(
    start: datetime, minutes: int
) -> None:
    due = OFFICE.add(start, timedelta(minutes=minutes))
    assert due > start
    assert OFFICE.is_open(due - timedelta(seconds=1))  # the last second counted was open
    assert due - start >= timedelta(minutes=minutes)
