"""When the desk is staffed: weekly opening hours plus holidays, in the desk's time zone.

Written as the operator would say it (``DESKBOT_BUSINESS_HOURS``)::

    mon-fri 09:00-17:30; sat 10:00-14:00        # ";" or "," between day groups
    daily 08:00-20:00
    mon 09:00-12:00; mon 13:00-17:00             # several intervals a day

and ``DESKBOT_HOLIDAYS`` as ISO dates (``2026-12-24, 2026-12-25``), closed all day. An empty
spec means always open (the default: the bot answers around the clock).

Used for the out-of-hours answer ("a person will reply from Mon 09:00") and for SLA clocks,
which run only while the desk is open (:meth:`BusinessHours.add`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_GROUP = re.compile(
    r"(?P<days>daily|[a-z]{3}(?:-[a-z]{3})?)\s+(?P<start>\d{1,2}:\d{2})-(?P<end>\d{1,2}:\d{2})"
)
# Far enough to cross any holiday season; a calendar without any opening is refused up front.
SEARCH_DAYS = 400

Interval = tuple[time, time | None]  # end None: until midnight ("24:00")


class BusinessHoursError(ValueError):
    """The opening hours or holidays are malformed (the message says how to write them)."""


@dataclass(frozen=True)
class BusinessHours:
    zone: ZoneInfo
    weekly: tuple[tuple[Interval, ...], ...]  # index 0 = Monday
    holidays: frozenset[date] = frozenset()

    @property
    def always_open(self) -> bool:
        return not any(self.weekly)

    def is_open(self, moment: datetime) -> bool:
        if self.always_open:
            return True
        local = _local(moment, self.zone)
        return any(start <= local < end for start, end in self._intervals_on(local.date()))

    def next_open(self, moment: datetime) -> datetime:
        """``moment`` itself when open, else the next opening (in UTC)."""
        if self.is_open(moment):
            return moment.astimezone(UTC)
        local = _local(moment, self.zone)
        for offset in range(SEARCH_DAYS):
            day = local.date() + timedelta(days=offset)
            for start, _ in self._intervals_on(day):
                if start > local:
                    return start.astimezone(UTC)
        raise BusinessHoursError("the desk never opens within a year")

    def add(self, start: datetime, duration: timedelta) -> datetime:
        """The moment ``duration`` of open time after ``start`` (an SLA clock that pauses
        while the desk is closed)."""
        if self.always_open:
            return start.astimezone(UTC) + duration
        remaining = duration
        cursor = _local(start, self.zone)
        for offset in range(SEARCH_DAYS * 10):
            day = cursor.date() + timedelta(days=offset)
            for open_at, close_at in self._intervals_on(day):
                begin = max(open_at, cursor)
                if begin >= close_at:
                    continue
                if begin + remaining <= close_at:
                    return (begin + remaining).astimezone(UTC)
                remaining -= close_at - begin
        raise BusinessHoursError("the SLA does not end within ten years of opening hours")

    def _intervals_on(self, day: date) -> list[tuple[datetime, datetime]]:
        if day in self.holidays:
            return []
        spans = []
        for start, end in self.weekly[day.weekday()]:
            begin = datetime.combine(day, start, self.zone)
            finish = (
                datetime.combine(day, end, self.zone)
                if end is not None
                else datetime.combine(day + timedelta(days=1), time(0), self.zone)
            )
            spans.append((begin, finish))
        return sorted(spans)


@lru_cache(maxsize=16)
def parse_business_hours(spec: str, holidays: str = "", zone: str = "UTC") -> BusinessHours:
    """Read the operator's spec (see the module docstring); raises BusinessHoursError."""
    weekly: list[list[Interval]] = [[] for _ in DAYS]
    text = (spec or "").strip().lower()
    for group in filter(None, (g.strip() for g in re.split(r"[;,]", text))):
        match = _GROUP.fullmatch(group)
        if match is None:
            raise BusinessHoursError(
                f"cannot read {group!r}; write e.g. 'mon-fri 09:00-17:30; sat 10:00-14:00'"
            )
        start, end = _clock(match["start"]), _clock(match["end"], end=True)
        if start is None:  # "24:00" opens nothing
            raise BusinessHoursError(f"{group!r}: a day's opening is at most 23:59")
        if end is not None and end <= start:
            raise BusinessHoursError(f"{group!r}: the end must come after the start")
        for day in _days(match["days"]):
            weekly[day].append((start, end))
    return BusinessHours(
        zone=ZoneInfo(zone),
        weekly=tuple(tuple(sorted(day, key=lambda i: i[0])) for day in weekly),
        holidays=_holidays(holidays),
    )


def _days(text: str) -> list[int]:
    if text == "daily":
        return list(range(7))
    first, _, last = text.partition("-")
    for name in (first, last or first):
        if name not in DAYS:
            raise BusinessHoursError(f"unknown day {name!r}; use {', '.join(DAYS)} or daily")
    a, b = DAYS.index(first), DAYS.index(last or first)
    return list(range(a, b + 1)) if a <= b else [*range(a, 7), *range(0, b + 1)]


def _clock(text: str, *, end: bool = False) -> time | None:
    hours, minutes = (int(part) for part in text.split(":"))
    if end and (hours, minutes) == (24, 0):
        return None
    if not (0 <= hours < 24 and 0 <= minutes < 60):
        raise BusinessHoursError(f"{text!r} is not a time of day (00:00 to 24:00)")
    return time(hours, minutes)


def _holidays(text: str) -> frozenset[date]:
    days = set()
    for part in filter(None, (p.strip() for p in re.split(r"[;,\s]+", text or ""))):
        try:
            days.add(date.fromisoformat(part))
        except ValueError:
            raise BusinessHoursError(
                f"holiday {part!r} is not a date; write e.g. 2026-12-24"
            ) from None
    return frozenset(days)


def _local(moment: datetime, zone: ZoneInfo) -> datetime:
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(zone)
