"""How deskbot writes times, durations, money and names: one place, so every card, list and
message says the same thing the same way."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo

from crm_core.clock import as_utc

MAX_BUTTON_LABEL = 60


def format_when(moment: datetime | None, zone: tzinfo | None = None) -> str:
    """``24 Nov 2026, 15:05 CET`` in the desk's time zone (``DESKBOT_TIMEZONE``; UTC by
    default), with the zone named so nobody reads it in another."""
    if moment is None:
        return "—"
    local = as_utc(moment).astimezone(zone or UTC)
    return local.strftime("%d %b %Y, %H:%M ") + (local.tzname() or "UTC")


def format_date(moment: datetime | None) -> str:
    return as_utc(moment).strftime("%d %b %Y") if moment else "—"


def format_hours(hours: float) -> str:
    """``24 hours``, ``1 hour``, ``90 minutes``, ``3 days`` for an SLA."""
    if hours < 1:
        minutes = round(hours * 60)
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    if hours >= 48 and hours % 24 == 0:
        days = int(hours // 24)
        return f"{days} days"
    whole = int(hours) if float(hours).is_integer() else round(hours, 1)
    return f"{whole} hour{'s' if whole != 1 else ''}"


def format_wait(delta: timedelta) -> str:
    """``45 s``, ``12 min``, ``3 h 05 min``, ``2 d 4 h`` — how long someone has waited."""
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def format_money(amount_minor: int, currency: str | None) -> str:
    sign = "-" if amount_minor < 0 else ""
    whole, cents = divmod(abs(amount_minor), 100)
    return f"{sign}{whole:,}.{cents:02d} {currency or ''}".strip()


def status_label(status: str) -> str:
    """``in_progress`` -> ``in progress``."""
    return str(getattr(status, "value", status)).replace("_", " ")


def display_name(name: str | None, customer_id: int | None) -> str:
    """The customer's name, or ``Customer #12`` for a record without one (erased, imported)."""
    return name or f"Customer #{customer_id}"


def clip(text: str | None, limit: int) -> str:
    """``text`` on one line, cut to ``limit`` characters with an ellipsis."""
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def button_label(text: str, limit: int = MAX_BUTTON_LABEL) -> str:
    """A button label short enough to read on a phone."""
    return clip(text, limit)


def utf16_len(text: str) -> int:
    """Length as Telegram counts it (UTF-16 code units)."""
    return len(text.encode("utf-16-le")) // 2
