"""Pure pieces of the customer-side handlers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from telegram import Chat, Document, Message, PhotoSize

from crm_core.models import ComplaintCategory, Severity
from handlers.callbacks import Prefix
from handlers.complaint_flow import attachment_of, sla_policy
from handlers.config import DeskConfig
from handlers.customer_common import button_label, format_hours, format_when, safe_build
from handlers.texts import Texts


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


def test_button_label_is_short_and_single_line() -> None:
    assert button_label("  a\nb  ") == "a b"
    long = button_label("x" * 100)
    assert len(long) == 60 and long.endswith("…")


def test_safe_build_leaves_out_oversized_callback_data() -> None:
    assert safe_build(Prefix.KB_ARTICLE, "reset-password") == "ka:reset-password"
    assert safe_build(Prefix.KB_ARTICLE, "x" * 80) is None


def test_sla_policy_follows_the_configured_hours() -> None:
    policy = sla_policy(DeskConfig(sla_hours={"low": 96, "medium": 12, "high": 4, "critical": 1}))
    assert policy.hours_for(ComplaintCategory.price, Severity.medium) == 12
    assert policy.hours_for(ComplaintCategory.billing, Severity.critical) == 1


def test_attachment_of_prefers_the_largest_photo() -> None:
    small = PhotoSize("small", "us", 90, 90)
    big = PhotoSize("big", "ub", 800, 800)
    date = datetime(2026, 1, 1, tzinfo=UTC)
    chat = Chat(1, "private")
    assert attachment_of(Message(1, date, chat, photo=(small, big))) == "big"
    document = Document("doc", "ud")
    assert attachment_of(Message(2, date, chat, document=document)) == "doc"
    assert attachment_of(Message(3, date, chat, text="hi")) is None


@pytest.mark.parametrize("category", [c.value for c in ComplaintCategory])
def test_every_category_has_a_label(category: str) -> None:
    label = Texts().render_plain("complaint_category_label", "en", category=category)
    assert category.lower() in label.lower()
