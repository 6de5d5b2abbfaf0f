"""Greetings, thanks and goodbyes."""

from __future__ import annotations

import pytest
from sqlmodel import col, select

from crm_core.models import Direction, Interaction, InteractionKind
from handlers.core.texts import Texts
from handlers.customer.small_talk import SmallTalk, classify
from tests.fakes.bot_api import parse_telegram_html
from tests.handlers.conftest import Harness
from tests.handlers.customer.test_templates import HOSTILE


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("hello", SmallTalk.GREETING),
        ("Hi there!", SmallTalk.GREETING),
        ("Good morning 👋🏽", SmallTalk.GREETING),
        ("how are you?", SmallTalk.GREETING),
        ("Привет!", SmallTalk.GREETING),
        ("👋", SmallTalk.GREETING),
        ("thanks", SmallTalk.THANKS),
        ("Thank you so much for your help!!", SmallTalk.THANKS),
        ("thx 🙏🏻", SmallTalk.THANKS),
        ("ok thanks, bye", SmallTalk.THANKS),  # thanks first
        ("Спасибо большое", SmallTalk.THANKS),
        ("❤️", SmallTalk.THANKS),
        ("bye bye", SmallTalk.GOODBYE),
        ("ok", SmallTalk.ACK),
        ("👍", SmallTalk.ACK),
    ],
)
def test_small_talk_is_recognised(text: str, kind: SmallTalk) -> None:
    assert classify(text) is kind


@pytest.mark.parametrize(
    "text",
    [
        "", "   ", "hello, my parcel is lost", "thanks, but where is my refund?",
        "hi, I need help", "where is my order", "hey 😡", "📦", "<b>hi</b>", "no",
        "hi " * 40, "you", "so", "again",
        "yes", "sure",  # an answer to "talk to a person?": the offer must come again
    ],
)  # fmt: skip
def test_anything_more_than_small_talk_is_a_question(text: str) -> None:
    assert classify(text) is None


@pytest.mark.parametrize("kind", list(SmallTalk))
def test_small_talk_templates_are_valid_html_with_a_hostile_name(kind: SmallTalk) -> None:
    html = Texts().render(f"small_talk_{kind.value}", "en", first_name=HOSTILE)
    plain = parse_telegram_html(html)
    if kind is SmallTalk.GREETING:
        assert HOSTILE in plain


async def test_greeting_and_thanks_get_polite_answers_not_a_handoff_offer(
    harness: Harness,
) -> None:
    alice = harness.customer("<b>Al&ce")

    hello = await alice.ask("Hello!")
    assert "How can I help" in hello.text and "<b>Al&ce" in hello.text
    assert not hello.inline_buttons()  # no "talk to a person?" offer
    thanks = await alice.ask("thanks 🙏")
    assert "welcome" in thanks.text
    await alice.ask("hello, I forgot my password", contains="I forgot my password")
    await alice.expect_silence()

    await harness.settle()
    async with harness.session_factory() as session:
        stmt = select(Interaction).where(Interaction.direction == Direction.outbound)
        rows = (await session.exec(stmt.order_by(col(Interaction.id)))).all()
    assert [r.details.get("small_talk") for r in rows[:2]] == ["greeting", "thanks"]
    assert not any(r.kind == InteractionKind.kb_none for r in rows)
