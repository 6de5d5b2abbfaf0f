"""Pure pieces of the agents' side: topic names, waiting times, KB attempts, card fitting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crm_core.models import Direction, InteractionKind, InteractionPublic
from handlers.announce import TOPIC_NAME_LIMIT, topic_name
from handlers.context_card import (
    CARD_LIMIT,
    fit_card,
    format_money,
    format_wait,
    kb_attempts,
    transcript_lines,
    utf16_len,
)
from handlers.messaging import plain_text
from handlers.supervisor import parse_days
from handlers.texts import Texts

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def interaction(kind: InteractionKind, details: dict[str, Any], **kw: Any) -> InteractionPublic:
    values: dict[str, Any] = {
        "id": 1, "customer_id": 1, "handoff_id": None, "complaint_id": None,
        "channel": "telegram", "direction": Direction.outbound, "kind": kind,
        "text": None, "details": details, "occurred_at": NOW, **kw,
    }  # fmt: skip
    return InteractionPublic(**values)


@given(st.text(min_size=0, max_size=400))
def test_topic_name_always_fits_and_keeps_the_reference(name: str) -> None:
    title = topic_name(name, "H-12 / C-000034")
    assert 1 <= len(title) <= TOPIC_NAME_LIMIT
    assert title.endswith(" · H-12 / C-000034")


def test_format_wait_and_money() -> None:
    assert format_wait(timedelta(seconds=42)) == "42 s"
    assert format_wait(timedelta(minutes=12, seconds=59)) == "12 min"
    assert format_wait(timedelta(hours=3, minutes=5)) == "3 h 05 min"
    assert format_wait(timedelta(days=2, hours=4, minutes=1)) == "2 d 4 h"
    assert format_wait(timedelta(seconds=-5)) == "0 s"
    assert format_money(123456, "EUR") == "1,234.56 EUR"
    assert format_money(-5, "EUR") == "-0.05 EUR"


def test_kb_attempts_merge_answers_suggestions_and_feedback() -> None:
    rows = [
        interaction(
            InteractionKind.kb_suggest,
            {
                "verdict": "suggest",
                "candidates": [
                    {"article_id": "returns", "title": "Returns", "confidence": 0.5},
                    {"article_id": "refunds", "title": "Refunds", "confidence": 0.45},
                ],
            },
        ),
        interaction(
            InteractionKind.kb_answer,
            {"verdict": "answer", "article_id": "returns", "title": "Returns", "confidence": 0.9},
        ),
        interaction(
            InteractionKind.kb_feedback,
            {"article_id": "returns", "title": "Returns", "helpful": False},
            direction=Direction.inbound,
        ),
    ]
    assert kb_attempts(rows) == [
        {"title": "Returns", "how": "answered", "confidence": "90%", "helpful": False},
        {"title": "Refunds", "how": "suggested", "confidence": "45%", "helpful": None},
    ]


def test_transcript_names_speakers_and_skips_events() -> None:
    rows = [
        interaction(InteractionKind.message, {}, text="hi", direction=Direction.inbound),
        interaction(InteractionKind.handoff_event, {"action": "opened"}, text=None),
        interaction(InteractionKind.agent_reply, {"agent_name": "Sam"}, text="hello"),
        interaction(InteractionKind.kb_answer, {}, text="x" * 500),
    ]
    lines = transcript_lines(rows, "Alice")
    assert [(line["who"], len(line["text"])) for line in lines] == [
        ("Alice", 2), ("Sam", 5), ("Bot", 120),
    ]  # fmt: skip


def test_fit_card_drops_oldest_lines_until_it_fits() -> None:
    texts = Texts()
    transcript = [
        {"who": "Alice", "when": "12:00", "text": f"{n} " + "é<&" * 99} for n in range(30)
    ]

    def render(**extra: Any) -> str:
        return texts.render("card_transcript", "en", **extra)

    html = fit_card(render, transcript)
    shown = plain_text(html)
    assert utf16_len(shown) <= CARD_LIMIT
    assert "Alice: 29 é<&" in shown and "Alice: 0 é<&" not in shown
    assert "earlier messages left out" in shown


def test_parse_days() -> None:
    assert parse_days([]) == 30
    assert parse_days(["7"]) == 7
    assert parse_days(["all"]) is None
    assert parse_days(["-3"]) == "-3"
    assert parse_days(["99999"]) == "99999"
    assert parse_days(["²"]) == "²"  # a digit to str.isdigit, not to int(): no traceback
    assert parse_days(["١٢"]) == 12  # Arabic-Indic digits are a number


def test_escalation_and_status_notice_keep_their_lines_apart() -> None:
    """trim_blocks eats the newline after a block tag: these once read "…5 min.Reason: …"."""
    texts = Texts()
    escalation = texts.render(
        "supervisor_escalation", "en", reference="H-1", name="Al", waited="5 min",
        reason="refund", link="https://t.me/c/1/2",
    )  # fmt: skip
    assert escalation.splitlines()[1:] == [
        "Reason: refund",
        '<a href="https://t.me/c/1/2">Open it in the agents\' group</a>',
    ]
    notice = texts.render(
        "agent_complaint_status_customer", "en", reference="C-1", status="resolved", note="ok"
    )
    assert notice.splitlines() == [
        "Your complaint C-1 has been resolved.",
        "Note from our team: ok",
    ]


@pytest.mark.parametrize("verified", [True, False])
def test_customer_card_shows_phone_email_and_since_on_their_own_lines(verified: bool) -> None:
    customer = SimpleNamespace(
        name="Al", username="al", id=1, phone="+4915112345678", verified=verified,
        email="al@example.com", since="01 Jan 2026", tier=None, segment=None,
        lifetime_value=None, purchases=0, last_purchase=None, open_complaints=[],
        recent_complaints=[],
    )  # fmt: skip
    lines = Texts().render("card_customer", "en", c=customer).splitlines()
    mark = " (verified)" if verified else ""
    assert lines[1:4] == [
        f"📞 +4915112345678{mark}",
        f"✉️ al@example.com{mark}",
        "Customer since 01 Jan 2026",
    ]
