"""The cards agents see: what they show and that they fit one message."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from crm_core.clock import utcnow
from crm_core.models import (
    Channel,
    Direction,
    InteractionKind,
    InteractionPublic,
)
from crm_core.services.customers import identify_customer, link_phone
from crm_core.services.purchases import record_purchase
from handlers.agents.cards import CARD_LIMIT, fit_card, kb_attempts, transcript_lines
from handlers.core.format import utf16_len
from handlers.core.send import plain_text
from handlers.core.texts import Texts
from tests.handlers.conftest import HarnessFactory
from tests.handlers.desk import GROUP_ID, drain, open_handoff, start


async def test_long_conversation_card_fits_one_message(harness_factory: HarnessFactory) -> None:
    harness, group = await start(harness_factory)
    sam = harness.agent("Sam", group=group)
    alice = harness.customer("Alice")
    for n in range(14):
        await alice.send(f"complaint part {n}: " + "the parcel & the box <were> damaged " * 40)
    await drain(harness, alice)

    await alice.ask("/human", contains="person")

    card = await sam.expect("Handoff H-")
    cards = [m for m in harness.fake.sent_to(GROUP_ID) if m.thread_id == card.thread_id]
    assert len(cards) == 1 and len(card.text) <= 4096
    assert "earlier messages left out" in card.text
    assert "complaint part 13" in card.text and "<were>" in card.text  # newest kept, escaped


NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def interaction(kind: InteractionKind, details: dict[str, Any], **kw: Any) -> InteractionPublic:
    values: dict[str, Any] = {
        "id": 1, "customer_id": 1, "handoff_id": None, "complaint_id": None,
        "channel": "telegram", "direction": Direction.outbound, "kind": kind,
        "text": None, "details": details, "occurred_at": NOW, **kw,
    }  # fmt: skip
    return InteractionPublic(**values)


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


def test_an_agents_line_shows_what_they_wrote_not_the_signed_message() -> None:
    signed = "Alice (support team): Your refund is on its way"
    details = {"agent_name": "Alice", "agent_text": "Your refund is on its way"}
    rows = [interaction(InteractionKind.agent_reply, details, text=signed)]
    (line,) = transcript_lines(rows, "Bob")
    assert (line["who"], line["text"]) == ("Alice", "Your refund is on its way")


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


@pytest.mark.parametrize("verified", [True, False])
def test_customer_card_shows_phone_email_and_since_on_their_own_lines(verified: bool) -> None:
    customer = SimpleNamespace(
        name="Al", username="al", id=1, phone="+4915112345678", phone_verified=verified,
        email="al@example.com", email_verified=False, external_id="K-77", tags=["vip", "b2b"],
        since="01 Jan 2026", tier=None, segment=None, lifetime_value=None, purchases=0,
        last_purchase=None, open_complaints=[], recent_complaints=[],
        past_handoffs=[
            {"reference": "H-3", "closed": "02 Feb 2026", "score": 2, "comment": "slow"}
        ],
    )  # fmt: skip
    lines = Texts().render("card_customer", "en", c=customer).splitlines()
    assert lines[0].endswith("#1 · shop id K-77")
    # Only a phone Telegram vouched for is "verified"; a typed e-mail never is.
    assert lines[1:5] == [
        f"📞 +4915112345678 ({'verified' if verified else 'not verified'})",
        "✉️ al@example.com (not verified)",
        "Customer since 01 Jan 2026",
        "🏷 vip, b2b",
    ]
    assert "• H-3 closed 02 Feb 2026 · ★★☆☆☆ “slow”" in lines


async def test_the_handoff_card_follows_a_merge_that_reveals_who_the_customer_is(
    harness_factory: HarnessFactory,
) -> None:
    harness, group = await start(harness_factory)
    sam = harness.agent("Sam", group=group)
    async with harness.session_factory() as session:
        imported = await identify_customer(
            session=session, channel=Channel.import_, external_id="shop-42", name="Alice Shopper"
        )
        assert imported.id is not None
        await link_phone(
            session=session, customer_id=imported.id, phone="+4915112345678", verified=False
        )
        await record_purchase(
            session=session,
            customer_id=imported.id,
            amount_minor=129_900,
            currency="EUR",
            purchased_at=utcnow(),
        )
    alice = harness.customer("Alice")
    card = await open_handoff(harness, alice, sam)
    assert "No purchases on record" in card.text

    await alice.share_contact("4915112345678")
    await alice.expect("linked")
    await harness.settle()

    shown = harness.fake.message(GROUP_ID, card.message_id)
    assert "1,299.00 EUR" in shown.text and "No purchases on record" not in shown.text
    assert "+4915112345678 (verified)" in shown.text
    assert shown.button("Claim")  # still waiting: the button stays
