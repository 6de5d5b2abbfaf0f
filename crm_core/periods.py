"""Reporting periods: what a supervisor types (``7d``, ``month``, ``2026-03-01..2026-03-31``)
turned into an aware UTC window ``[start, end)`` plus the previous window it is compared with.

Calendar words are read in the desk's time zone (a zoneinfo name such as ``Europe/Berlin``):

- ``today``: from local midnight to now; compared with yesterday from midnight to the same
  local time;
- ``month``: from the 1st of this month (local midnight) to now; compared with the same elapsed
  part of the previous month (cut at its end when the previous month is shorter);
- ``Nd`` (``7d``, ``30d``, 1..366): the last N x 24 hours up to now; compared with the N days
  before;
- ``YYYY-MM-DD..YYYY-MM-DD``: both days included, local midnight to local midnight; compared with
  the window of the same length just before it.

A period that ends at "now" is compared with an equally long stretch of the previous one, so
that a half-done month is not measured against a full one.
"""

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from crm_core.clock import as_utc, utcnow
from crm_core.errors import InvalidInput

DEFAULT_PERIOD = "7d"
MAX_DAYS = 366
ACCEPTED_FORMS = (
    "today, 7d, 30d (any Nd from 1d to 366d), month, "
    "or a date range YYYY-MM-DD..YYYY-MM-DD (both days included)"
)
_DAYS = re.compile(r"^(\d{1,4})d$")
_RANGE = re.compile(r"^(\d{4}-\d{2}-\d{2})\s*\.\.\s*(\d{4}-\d{2}-\d{2})$")


class InvalidPeriod(InvalidInput):
    """A period the parser does not understand; the message lists the accepted forms."""


@dataclass(frozen=True)
class Window:
    """``[start, end)`` in aware UTC."""

    start: datetime
    end: datetime

    @property
    def length(self) -> timedelta:
        return self.end - self.start


@dataclass(frozen=True)
class Period:
    label: str
    current: Window
    previous: Window
    time_zone: str = "UTC"

    @property
    def start(self) -> datetime:
        return self.current.start

    @property
    def end(self) -> datetime:
        return self.current.end

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)


def desk_zone(name: str) -> ZoneInfo:
    """The zoneinfo for a desk time-zone setting, or a clear error."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(
            f"Unknown time zone {name!r}; use a name such as Europe/Berlin or UTC."
        ) from None


def parse_period(
    text: str | None,
    *,
    time_zone: str = "UTC",
    now: datetime | None = None,
    default: str = DEFAULT_PERIOD,
) -> Period:
    """Parse a period (empty means ``default``); raises :class:`InvalidPeriod` on bad input."""
    zone = desk_zone(time_zone)
    now = as_utc(now or utcnow())
    cleaned = (text or "").strip().lower() or default
    if cleaned == "today":
        return _today(now, zone, time_zone)
    if cleaned == "month":
        return _month(now, zone, time_zone)
    days = _DAYS.match(cleaned)
    if days is not None:
        return _last_days(int(days.group(1)), now, time_zone, cleaned)
    dates = _RANGE.match(cleaned)
    if dates is not None:
        return _date_range(dates.group(1), dates.group(2), zone, time_zone)
    raise InvalidPeriod(f"I don't understand the period {text!r}. Use {ACCEPTED_FORMS}.")


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """The UTC instant of local midnight (on DST days a local day has 23 or 25 hours)."""
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def day_starts(window: Window, zone: ZoneInfo) -> list[datetime]:
    """UTC instants of each local midnight that starts a day overlapping ``window``, plus the
    midnight after the last one: the bucket edges for per-day series."""
    day = window.start.astimezone(zone).date()
    edges = [local_midnight(day, zone)]
    while edges[-1] < window.end:
        day += timedelta(days=1)
        edges.append(local_midnight(day, zone))
    return edges


def _today(now: datetime, zone: ZoneInfo, name: str) -> Period:
    local_day = now.astimezone(zone).date()
    start = local_midnight(local_day, zone)
    yesterday = local_midnight(local_day - timedelta(days=1), zone)
    same_time = min(yesterday + (now - start), start)
    return Period("today", Window(start, now), Window(yesterday, same_time), name)


def _month(now: datetime, zone: ZoneInfo, name: str) -> Period:
    local = now.astimezone(zone).date()
    first = local.replace(day=1)
    previous_first = (first - timedelta(days=1)).replace(day=1)
    start = local_midnight(first, zone)
    previous_start = local_midnight(previous_first, zone)
    previous_end = min(previous_start + (now - start), start)
    label = f"{first:%Y-%m}"
    return Period(label, Window(start, now), Window(previous_start, previous_end), name)


def _last_days(days: int, now: datetime, name: str, label: str) -> Period:
    if not 1 <= days <= MAX_DAYS:
        raise InvalidPeriod(f"A period of days must be 1d to {MAX_DAYS}d. Use {ACCEPTED_FORMS}.")
    length = timedelta(days=days)
    return Period(label, Window(now - length, now), Window(now - 2 * length, now - length), name)


def _date_range(first: str, last: str, zone: ZoneInfo, name: str) -> Period:
    try:
        start_day, end_day = date.fromisoformat(first), date.fromisoformat(last)
    except ValueError:
        raise InvalidPeriod(
            f"{first}..{last} is not a valid date range. Use {ACCEPTED_FORMS}."
        ) from None
    if end_day < start_day:
        raise InvalidPeriod(
            f"The range {first}..{last} ends before it starts. Use {ACCEPTED_FORMS}."
        )
    if (end_day - start_day).days + 1 > MAX_DAYS:
        raise InvalidPeriod(
            f"A date range may cover at most {MAX_DAYS} days. Use {ACCEPTED_FORMS}."
        )
    start = local_midnight(start_day, zone)
    end = local_midnight(end_day + timedelta(days=1), zone)
    return Period(
        f"{first}..{last}", Window(start, end), Window(start - (end - start), start), name
    )
