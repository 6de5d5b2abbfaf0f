from datetime import UTC, datetime, timedelta, timezone

import pytest

from crm_core.models import ComplaintCategory, Severity
from crm_core.sla import SlaConfigError, SlaPolicy

FILED = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("severity", "hours"),
    [(Severity.critical, 2), (Severity.high, 8), (Severity.medium, 24), (Severity.low, 72)],
)
def test_default_targets(severity: Severity, hours: int) -> None:
    due = SlaPolicy().due_at(ComplaintCategory.delivery, severity, FILED)
    assert due == FILED + timedelta(hours=hours)


def test_category_overrides_only_the_named_severities() -> None:
    policy = SlaPolicy.from_mapping(
        {"high": 12, "categories": {"billing": {"critical": 2, "high": 6}}}
    )
    assert policy.due_at(ComplaintCategory.billing, Severity.critical, FILED) == FILED + timedelta(
        hours=2
    )
    assert policy.due_at(ComplaintCategory.billing, Severity.high, FILED) == FILED + timedelta(
        hours=6
    )
    assert policy.due_at(ComplaintCategory.billing, Severity.low, FILED) == FILED + timedelta(
        hours=72
    )
    assert policy.due_at(ComplaintCategory.price, Severity.high, FILED) == FILED + timedelta(
        hours=12
    )


def test_fractional_hours_and_other_time_zones() -> None:
    policy = SlaPolicy.from_mapping({"critical": 0.5})
    filed_in_berlin = datetime(2026, 3, 2, 10, 0, tzinfo=timezone(timedelta(hours=1)))
    due = policy.due_at(ComplaintCategory.other, Severity.critical, filed_in_berlin)
    assert due == FILED + timedelta(minutes=30)
    assert due.tzinfo == UTC


def test_empty_or_missing_settings_give_the_defaults() -> None:
    assert SlaPolicy.from_mapping(None) == SlaPolicy()
    assert SlaPolicy.from_mapping({}) == SlaPolicy()
    assert (
        SlaPolicy.from_mapping({"High": 24}).hours_for(ComplaintCategory.other, Severity.high) == 24
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"urgent": 4}, "SLA: unknown severity 'urgent'. Valid: low, medium, high, critical"),
        ({"high": 0}, "hours for 'high' must be a positive number (at most 87600), got 0"),
        ({"high": "soon"}, "positive number (at most 87600), got 'soon'"),
        ({"high": True}, "must be a positive number (at most 87600), got True"),
        ({"high": float("inf")}, "got inf"),
        ({"high": float("nan")}, "got nan"),
        ({"low": 1e8}, "got 100000000.0"),
        ({"categories": {"weather": {"high": 1}}}, "unknown category 'weather'. Valid: price"),
        ({"categories": {"billing": {"asap": 1}}}, "SLA category 'billing': unknown severity"),
        ({"categories": {"billing": 3}}, "SLA category 'billing' must map severity -> hours"),
        ({"categories": [1]}, "'categories' must map category -> hours per severity"),
    ],
)
def test_bad_settings_are_refused_with_the_offending_key(
    data: dict[str, object], message: str
) -> None:
    with pytest.raises(SlaConfigError) as info:
        SlaPolicy.from_mapping(data)
    assert message in str(info.value)


def test_a_policy_cannot_be_changed_after_creation() -> None:
    policy = SlaPolicy()
    with pytest.raises(TypeError):
        policy.hours[Severity.low] = 1  # type: ignore[index]
