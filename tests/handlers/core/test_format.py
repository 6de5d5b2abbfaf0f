"""How times, durations, money and labels are written."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from handlers.core.format import (
    button_label,
    format_hours,
    format_money,
    format_wait,
    format_when,
)


def test_format_wait_and_money() -> None:
    assert format_wait(timedelta(seconds=42)) == "42 s"
    assert format_wait(timedelta(minutes=12, seconds=59)) == "12 min"
    assert format_wait(timedelta(hours=3, minutes=5)) == "3 h 05 min"
    assert format_wait(timedelta(days=2, hours=4, minutes=1)) == "2 d 4 h"
    assert format_wait(timedelta(seconds=-5)) == "0 s"
    assert format_money(123456, "EUR") == "1,234.56 EUR"
    assert format_money(-5, "EUR") == "-0.05 EUR"


@pytest.mark.parametrize(
    ("hours", "text"),
    [(0.5, "30 minutes"), (1, "1 hour"), (2, "2 hours"), (24, "24 hours"), (1.5, "1.5 hours"),
     (72, "3 days"), (50, "50 hours")],
)  # fmt: skip
def test_format_hours(hours: float, text: str) -> None:
    assert format_hours(hours) == text


def test_format_when_is_utc_whatever_the_input() -> None:
    naive = datetime(2026, 11, 24, 14, 5)  # SQLite hands back naive UTC
    berlin = datetime(2026, 11, 24, 15, 5, tzinfo=timezone(timedelta(hours=1)))
    assert format_when(naive) == format_when(berlin) == "24 Nov 2026, 14:05 UTC"
    assert format_when(datetime(2026, 1, 1, tzinfo=UTC)) == "01 Jan 2026, 00:00 UTC"
    assert format_when(None) == "—"


def test_format_when_speaks_the_desks_time_zone_and_names_it() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    assert (
        format_when(datetime(2026, 11, 24, 14, 5, tzinfo=UTC), berlin) == "24 Nov 2026, 15:05 CET"
    )
    assert (
        format_when(datetime(2026, 7, 1, 22, 30, tzinfo=UTC), berlin) == "02 Jul 2026, 00:30 CEST"
    )


def test_button_label_is_short_and_single_line() -> None:
    assert button_label("  a\nb  ") == "a b"
    long = button_label("x" * 100)
    assert len(long) == 60 and long.endswith("…")
