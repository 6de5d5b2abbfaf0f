"""How supervisors' figures are written: a value with its change against the previous period
("12 (+3)", "2 h 05 min (−12 min)", "80% (+5 pts)"), money, shares."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from crm_core.services.analytics import Change
from handlers.core.format import format_money, format_wait

Kind = Literal["count", "duration", "rate", "score"]
MINUS = "−"

# How each figure of crm_core.services.analytics.FIGURES is shown.
KINDS: dict[str, Kind] = {
    "first_response_median": "duration",
    "first_response_p90": "duration",
    "resolution_median": "duration",
    "resolution_p90": "duration",
    "handoff_wait_median": "duration",
    "csat_average": "score",
    "csat_share_satisfied": "rate",
    "bot_verified_rate": "rate",
}


def value(number: float | None, kind: Kind) -> str:
    if number is None:
        return "—"
    if kind == "duration":
        return format_wait(timedelta(seconds=number))
    if kind == "rate":
        return f"{number:.0%}"
    if kind == "score":
        return f"{number:.1f}"
    return f"{int(number):,}"


def with_change(change: Change, kind: Kind) -> str:
    shown = value(change.current, kind)
    delta = change.delta
    if delta is None or change.current is None:
        return shown
    if abs(delta) < 1e-9:
        return f"{shown} (=)"
    sign = "+" if delta > 0 else MINUS
    if kind == "duration":
        return f"{shown} ({sign}{format_wait(timedelta(seconds=abs(delta)))})"
    if kind == "rate":
        return f"{shown} ({sign}{abs(delta) * 100:.0f} pts)"
    if kind == "score":
        return f"{shown} ({sign}{abs(delta):.1f})"
    return f"{shown} ({sign}{int(abs(delta)):,})"


def share(number: float | None) -> str:
    return f"{number:.0%}" if number is not None else "—"


def money(amount_minor: int, currency: str | None = None) -> str:
    return format_money(amount_minor, currency)
