"""Every customer template renders valid Telegram HTML with hostile values."""

from __future__ import annotations

import pytest

from handlers.core.texts import Texts
from tests.fakes.bot_api import parse_telegram_html

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
    "handoff_opened": {"position": 3, "typical": HOSTILE, "opens": HOSTILE},
    "handoff_already_open": {},
    "handoff_no_agents": {}, "handoff_still_waiting": {"position": 2},
    "mycomplaints_none": {}, "mycomplaints_list": {"complaints": [ROW], "more": 3},
    "complaint_history": {"reference": HOSTILE, "category": HOSTILE, "status": HOSTILE,
                          "description": HOSTILE, "attachments": 1, "events": [EVENT]},
    "complaint_not_yours": {}, "mydata_caption": {},
    "complaint_view_label": {"reference": HOSTILE, "status": HOSTILE},
    "forget_confirm": {}, "forget_kept": {}, "forget_done": {},
    "campaign_message": {"text": HOSTILE},
    "marketing_stopped": {"already": False}, "marketing_subscribed": {"already": True},
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(CUSTOMER_TEMPLATES))
def test_customer_templates_are_valid_telegram_html_with_hostile_values(name: str) -> None:
    html = Texts().render(name, "en", **CUSTOMER_TEMPLATES[name])
    assert html.strip()
    plain = parse_telegram_html(html)  # raises on anything Telegram would reject
    shown = any(HOSTILE in str(v) for v in CUSTOMER_TEMPLATES[name].values())
    if shown and name != "complaint_edit":  # it only tests whether there is one
        assert HOSTILE in plain  # shown literally
