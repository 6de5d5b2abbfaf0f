"""Service-level targets for complaints: how long the desk has to resolve one.

With opening hours (``crm_core.business_hours``) the clock runs only while the desk is open:
a 2-hour target filed at 16:30 on a Friday of a desk open 9-17 on weekdays is due Monday at
10:30. Without them hours are calendar hours.

Hours are calendar hours (the desk is reachable around the clock through the bot); a complaint
is due ``hours`` after it was filed. The target depends on the severity, and a category may
override some severities (e.g. billing criticals within 2 h).

Settings pass plain mappings::

    {"critical": 2, "high": 8, "medium": 24, "low": 72,
     "categories": {"billing": {"critical": 2}}}

Severities left out keep their defaults. Anything else is refused with a message naming the
offending key and the valid options.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any, TypeVar

from crm_core.business_hours import BusinessHours
from crm_core.clock import as_utc
from crm_core.models import ComplaintCategory, Severity

DEFAULT_HOURS: Mapping[Severity, float] = MappingProxyType(
    {Severity.critical: 2, Severity.high: 8, Severity.medium: 24, Severity.low: 72}
)
# The same defaults keyed by the severity's value, as settings and the Telegram side use them.
DEFAULT_HOURS_BY_NAME: Mapping[str, float] = MappingProxyType(
    {severity.value: hours for severity, hours in DEFAULT_HOURS.items()}
)
# Ten years. Beyond some bound a due date overflows datetime (filing would crash), and JSON
# settings may even say Infinity or NaN.
MAX_SLA_HOURS = 87_600
CATEGORIES_KEY = "categories"
_E = TypeVar("_E", Severity, ComplaintCategory)


class SlaConfigError(ValueError):
    """The SLA configuration is malformed (a ValueError, so settings validation reports it)."""


@dataclass(frozen=True)
class SlaPolicy:
    hours: Mapping[Severity, float] = field(default_factory=lambda: DEFAULT_HOURS)
    category_hours: Mapping[ComplaintCategory, Mapping[Severity, float]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    # When set, the SLA clock pauses while the desk is closed.
    business_hours: BusinessHours | None = None

    def __post_init__(self) -> None:
        # Read-only views, so that a policy shared by all handlers cannot be changed underfoot.
        merged = {**DEFAULT_HOURS, **self.hours}
        object.__setattr__(self, "hours", MappingProxyType(merged))
        frozen = {cat: MappingProxyType(dict(over)) for cat, over in self.category_hours.items()}
        object.__setattr__(self, "category_hours", MappingProxyType(frozen))

    def hours_for(self, category: ComplaintCategory, severity: Severity) -> float:
        override = self.category_hours.get(category, {})
        return override.get(severity, self.hours[severity])

    def due_at(
        self, category: ComplaintCategory, severity: Severity, filed_at: datetime
    ) -> datetime:
        duration = timedelta(hours=self.hours_for(category, severity))
        if self.business_hours is not None:
            return self.business_hours.add(as_utc(filed_at), duration)
        return as_utc(filed_at) + duration

    @classmethod
    def from_mapping(
        cls, data: Mapping[str, Any] | None, business_hours: BusinessHours | None = None
    ) -> "SlaPolicy":
        if data is None:
            return cls(business_hours=business_hours)
        if not isinstance(data, Mapping):
            raise SlaConfigError(f"SLA settings must be a mapping, got {type(data).__name__}.")
        data = dict(data)
        categories = data.pop(CATEGORIES_KEY, None) or {}
        hours = _parse_hours(data, where="SLA")
        if not isinstance(categories, Mapping):
            raise SlaConfigError(f"SLA '{CATEGORIES_KEY}' must map category -> hours per severity.")
        overrides: dict[ComplaintCategory, Mapping[Severity, float]] = {}
        for name, value in categories.items():
            category = _enum_key(ComplaintCategory, name, "category", where="SLA categories")
            if not isinstance(value, Mapping):
                raise SlaConfigError(f"SLA category '{name}' must map severity -> hours.")
            overrides[category] = _parse_hours(value, where=f"SLA category '{name}'")
        return cls(hours=hours, category_hours=overrides, business_hours=business_hours)


def _parse_hours(data: Mapping[str, Any], *, where: str) -> dict[Severity, float]:
    hours: dict[Severity, float] = {}
    for key, value in data.items():
        severity = _enum_key(Severity, key, "severity", where=where)
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        if not is_number or not 0 < value <= MAX_SLA_HOURS:  # also refuses NaN
            raise SlaConfigError(
                f"{where}: hours for '{key}' must be a positive number (at most "
                f"{MAX_SLA_HOURS}), got {value!r}."
            )
        hours[severity] = float(value)
    return hours


def _enum_key(enum: type[_E], key: Any, what: str, *, where: str) -> _E:
    try:
        return enum(str(key).strip().lower())
    except ValueError:
        options = ", ".join(m.value for m in enum)
        extra = f" (or '{CATEGORIES_KEY}')" if enum is Severity and where == "SLA" else ""
        raise SlaConfigError(f"{where}: unknown {what} '{key}'. Valid: {options}{extra}.") from None
