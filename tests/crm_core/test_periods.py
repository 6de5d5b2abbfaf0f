from datetime import UTC, datetime, timedelta

import pytest

from crm_core.errors import InvalidInput
from crm_core.periods import ACCEPTED_FORMS, InvalidPeriod, Window, day_starts, parse_period

NOW = datetime(2026, 3, 10, 15, 30, tzinfo=UTC)
BERLIN = "Europe/Berlin"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_default_is_the_last_seven_days_against_the_seven_before() -> None:
    period = parse_period(None, now=NOW)
    assert period.label == "7d"
    assert period.current == Window(NOW - timedelta(days=7), NOW)
    assert period.previous == Window(NOW - timedelta(days=14), NOW - timedelta(days=7))


def test_thirty_days_is_accepted() -> None:
    period = parse_period("30d", now=NOW)
    assert period.current.length == timedelta(days=30)
    assert period.previous.end == period.current.start


def test_today_starts_at_local_midnight_and_compares_with_yesterday_up_to_the_same_time() -> None:
    # 15:30 UTC is 16:30 in Berlin (winter time, UTC+1): local midnight was 23:00 UTC.
    period = parse_period("today", now=NOW, time_zone=BERLIN)
    assert period.current == Window(utc(2026, 3, 9, 23), NOW)
    assert period.previous == Window(utc(2026, 3, 8, 23), NOW - timedelta(days=1))


def test_today_just_after_local_midnight_is_already_the_next_day() -> None:
    # 23:30 UTC on the 9th is 00:30 on the 10th in Berlin.
    now = utc(2026, 3, 9, 23, 30)
    assert parse_period("today", now=now, time_zone=BERLIN).start == utc(2026, 3, 9, 23)
    assert parse_period("today", now=now, time_zone="UTC").start == utc(2026, 3, 9)


def test_today_on_the_day_clocks_go_forward_has_23_hours_of_yesterday_to_compare() -> None:
    # 2026-03-29: Berlin goes from UTC+1 to UTC+2 at 01:00 UTC.
    now = utc(2026, 3, 29, 22, 30)  # 00:30 on the 30th, local
    period = parse_period("today", now=now, time_zone=BERLIN)
    assert period.start == utc(2026, 3, 29, 22)
    assert period.previous.start == utc(2026, 3, 28, 23)  # the 29th began in winter time
    assert period.previous.end == utc(2026, 3, 28, 23, 30)


def test_month_runs_from_the_first_and_compares_with_as_much_of_the_previous_month() -> None:
    period = parse_period("month", now=NOW, time_zone=BERLIN)
    assert period.label == "2026-03"
    assert period.start == utc(2026, 2, 28, 23)
    assert period.previous.start == utc(2026, 1, 31, 23)
    assert period.previous.length == period.current.length


def test_month_late_in_a_long_month_is_compared_with_at_most_the_whole_previous_month() -> None:
    now = utc(2026, 3, 31, 20)
    period = parse_period("month", now=now)
    assert period.previous == Window(utc(2026, 2, 1), utc(2026, 3, 1))


def test_a_date_range_includes_both_days_in_the_desk_time_zone() -> None:
    period = parse_period("2026-03-01..2026-03-07", time_zone=BERLIN, now=NOW)
    assert period.current == Window(utc(2026, 2, 28, 23), utc(2026, 3, 7, 23))
    assert period.previous == Window(utc(2026, 2, 21, 23), utc(2026, 2, 28, 23))


def test_a_one_day_range_over_the_clock_change_is_23_hours_long() -> None:
    period = parse_period("2026-03-29..2026-03-29", time_zone=BERLIN, now=NOW)
    assert period.current.length == timedelta(hours=23)


@pytest.mark.parametrize(
    "text",
    [
        "yesterday",
        "0d",
        "367d",
        "7 days",
        "2026-03-07..2026-03-01",
        "2026-02-30..2026-03-01",
        "2025-01-01..2026-03-01",
        "d",
    ],
)
def test_a_bad_period_is_refused_with_the_accepted_forms(text: str) -> None:
    with pytest.raises(InvalidPeriod) as info:
        parse_period(text, now=NOW)
    assert str(info.value).endswith(f"Use {ACCEPTED_FORMS}.")


def test_the_message_for_an_unknown_word_lists_every_form() -> None:
    with pytest.raises(InvalidPeriod, match="today, 7d, 30d"):
        parse_period("fortnight", now=NOW)
    assert "month" in ACCEPTED_FORMS


def test_an_unknown_time_zone_is_a_clear_error() -> None:
    with pytest.raises(InvalidInput, match="Unknown time zone"):
        parse_period("7d", time_zone="Mars/Olympus", now=NOW)


def test_words_are_read_regardless_of_case_and_spaces() -> None:
    assert parse_period("  30D ", now=NOW).label == "30d"
    assert parse_period("2026-03-01 .. 2026-03-02", now=NOW).current.length == timedelta(days=2)


def test_day_starts_are_local_midnights() -> None:
    window = Window(utc(2026, 3, 28, 12), utc(2026, 3, 30, 12))
    edges = day_starts(window, parse_period("7d", time_zone=BERLIN, now=NOW).zone)
    assert edges == [
        utc(2026, 3, 27, 23),
        utc(2026, 3, 28, 23),
        utc(2026, 3, 29, 22),
        utc(2026, 3, 30, 22),
    ]
