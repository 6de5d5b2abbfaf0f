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
from tests.fakes.bot_api import parse_telegram_html


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


HOSTILE = "</pre><b>& <i>"
EVENT = {"when": HOSTILE, "action": "comment", "actor": "agent", "to_status": None, "note": HOSTILE}
ROW = {"reference": HOSTILE, "category": HOSTILE, "status": HOSTILE, "changed": HOSTILE}
# Every customer-side template with hostile values for each variable it uses.
CUSTOMER_TEMPLATES: dict[str, dict[str, object]] = {
    "kb_answer": {"title": HOSTILE, "body": HOSTILE},
    "kb_suggest": {"titles": [HOSTILE, HOSTILE]},
    "kb_none": {}, "kb_article_gone": {}, "kb_feedback_thanks": {}, "kb_feedback_sorry": {},
    "kb_feedback_already": {},
    "complaint_category_label": {"category": HOSTILE},
    "complaint_choose_category": {}, "complaint_pick_category": {},
    "complaint_describe": {"category": HOSTILE, "attachments": 2, "editing": False},
    "complaint_file_added": {"attachments": 1},
    "complaint_summary": {"category": HOSTILE, "description": HOSTILE, "attachments": 0,
                          "hint": True},
    "complaint_description_empty": {},
    "complaint_description_too_long": {"length": 20000, "limit": 4000},
    "complaint_too_many_files": {"limit": 20},
    "complaint_edit": {"description": HOSTILE},
    "complaint_cancelled": {}, "flow_cancelled": {}, "cancel_nothing": {}, "flow_expired": {},
    "complaint_already_filed": {"reference": HOSTILE},
    "complaint_filed": {"reference": HOSTILE, "sla": HOSTILE, "due": HOSTILE},
    "contact_not_own": {}, "contact_invalid": {"message": HOSTILE},
    "contact_linked": {"phone": HOSTILE, "merged": True}, "contact_prompt": {},
    "email_usage": {}, "email_invalid": {"message": HOSTILE}, "email_in_use": {},
    "email_linked": {"email": HOSTILE, "merged": True},
    "handoff_opened": {}, "handoff_already_open": {}, "handoff_no_agents": {},
    "mycomplaints_none": {}, "mycomplaints_list": {"complaints": [ROW], "more": 3},
    "complaint_history": {"reference": HOSTILE, "category": HOSTILE, "status": HOSTILE,
                          "description": HOSTILE, "attachments": 1, "events": [EVENT]},
    "complaint_not_yours": {}, "mydata_caption": {},
    "complaint_view_label": {"reference": HOSTILE, "status": HOSTILE},
    "forget_confirm": {}, "forget_kept": {}, "forget_done": {},
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(CUSTOMER_TEMPLATES))
def test_customer_templates_are_valid_telegram_html_with_hostile_values(name: str) -> None:
    html = Texts().render(name, "en", **CUSTOMER_TEMPLATES[name])
    assert html.strip()
    plain = parse_telegram_html(html)  # raises on anything Telegram would reject
    shown = any(HOSTILE in str(v) for v in CUSTOMER_TEMPLATES[name].values())
    if shown and name != "complaint_edit":  # it only tests whether there is one
        assert HOSTILE in plain  # shown literally
