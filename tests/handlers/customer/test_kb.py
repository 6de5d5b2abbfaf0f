"""Self-service answers from the knowledge base."""

from __future__ import annotations

from pathlib import Path

from sqlmodel import col, select

from crm_core.models import Direction, Handoff, Interaction, InteractionKind
from handlers.customer.kb import article_details
from knowledge_base.base import KnowledgeBase
from knowledge_base.holder import KnowledgeBaseHolder
from knowledge_base.models import Article
from tests.handlers.conftest import BOTH_DATABASES, Harness, HarnessFactory


async def _rows(harness: Harness, kind: InteractionKind) -> list[Interaction]:
    await harness.settle()
    async with harness.session_factory() as session:
        stmt = select(Interaction).where(Interaction.kind == kind).order_by(col(Interaction.id))
        return list((await session.exec(stmt)).all())


@BOTH_DATABASES
async def test_answer_with_feedback_buttons_records_helpful_once(harness: Harness) -> None:
    alice = harness.customer("Alice")

    answer = await alice.ask("i forgot my password", contains="I forgot my password")

    assert "Forgot password?" in answer.text
    assert "<b>" in (answer.html or "")  # the article's Markdown became Telegram HTML
    labels = [b["text"] for b in answer.inline_buttons()]
    assert any("Helpful" in label for label in labels) and any("Not helpful" in x for x in labels)
    (logged,) = await _rows(harness, InteractionKind.kb_answer)
    assert logged.direction == Direction.outbound
    assert logged.details["article_id"] == "reset-password"
    assert logged.details["title"] == "I forgot my password"
    assert logged.details["verdict"] == "answer" and logged.details["confidence"] > 0.6

    helpful = answer.button("Helpful")["callback_data"]
    await alice.press("👍 Helpful", answer)
    await alice.expect("glad it helped")
    assert not answer.inline_buttons()  # the vote removed the buttons...
    query_id = await alice.callback(helpful, answer)  # ...a quick second tap still arrives
    await alice.expect_silence()
    assert "already" in harness.fake.answered_callbacks[query_id].get("text", "")

    (feedback,) = await _rows(harness, InteractionKind.kb_feedback)
    assert feedback.details["article_id"] == "reset-password"
    assert feedback.details["helpful"] is True
    assert feedback.customer_id == logged.customer_id


async def test_not_helpful_is_recorded_and_offers_a_person(harness: Harness) -> None:
    alice = harness.customer("Alice")
    answer = await alice.ask("i forgot my password", contains="I forgot my password")

    await alice.press("Not helpful", answer)

    offer = await alice.expect("did not help")
    await alice.press("Talk to a person", offer)
    await alice.expect("a person")
    (feedback,) = await _rows(harness, InteractionKind.kb_feedback)
    assert feedback.details == {
        "article_id": "reset-password",
        "title": "I forgot my password",
        "helpful": False,
        "message_id": answer.message_id,
    }
    async with harness.session_factory() as session:
        assert len((await session.exec(select(Handoff))).all()) == 1


async def test_suggestions_open_the_chosen_article(harness: Harness) -> None:
    alice = harness.customer("Alice")

    # one candidate above the suggest threshold: it reads as one ("Did you mean …?")
    suggestion = await alice.ask("parcel", contains="Did you mean")

    labels = [b["text"] for b in suggestion.inline_buttons()]
    assert labels == ["Delivery to a pickup point or locker"]
    (logged,) = await _rows(harness, InteractionKind.kb_suggest)
    candidates = logged.details["candidates"]
    assert [c["article_id"] for c in candidates] == ["pickup-points"]
    assert all(0 < c["confidence"] < 1 and c["title"] for c in candidates)

    await alice.press("pickup point", suggestion)

    article = await alice.expect("Delivery to a pickup point or locker")
    assert any("Helpful" in b["text"] for b in article.inline_buttons())
    answers = await _rows(harness, InteractionKind.kb_answer)
    assert answers[-1].details["article_id"] == "pickup-points"
    assert answers[-1].details["via"] == "suggestion"


async def test_no_answer_offers_a_person_or_a_complaint(harness: Harness) -> None:
    alice = harness.customer("Alice")

    reply = await alice.ask("quantum physics lecture tomorrow", contains="no answer")

    labels = [b["text"] for b in reply.inline_buttons()]
    assert any("person" in label for label in labels)
    assert any("complaint" in label for label in labels)
    (logged,) = await _rows(harness, InteractionKind.kb_none)
    assert logged.details["verdict"] == "none"

    await alice.press("complaint", reply)
    await alice.expect("What is it about?")


async def test_stale_or_forged_article_button_is_answered(harness: Harness) -> None:
    alice = harness.customer("Alice")
    suggestion = await alice.ask("parcel", contains="Did you mean")

    query_id = await alice.callback("ka:no-such-article", suggestion)

    await alice.expect("no longer available")
    await harness.fake.wait_for(lambda: query_id in harness.fake.answered_callbacks)


async def test_hostile_and_huge_questions_never_break_a_message(harness: Harness) -> None:
    mallory = harness.customer("<b>&")

    for text in ("<b>&", "</pre> <i>", "x" * 20_000):
        await mallory.send(text)
    await harness.settle()

    replies = mallory.replies
    assert len(replies) >= 3
    assert not [r for r in harness.fake.calls("sendMessage") if r.error]


async def test_long_article_is_split_with_the_buttons_on_the_last_part(
    harness_factory: HarnessFactory,
) -> None:
    steps = "Tighten the screws gently. " * 20
    body = "\n\n".join(
        f"{i}. Put **part {i}** into slot {i} & check <it>. {steps}" for i in range(40)
    )
    wardrobe = Article(
        id="wardrobe",
        title="Assembling the wardrobe",
        body=body,
        questions=("how do i assemble the wardrobe",),
    )
    other = Article(id="card", title="Paying by card", body="Use a card.", questions=("card",))
    holder = KnowledgeBaseHolder(KnowledgeBase([wardrobe, other]).prepare(), Path("."))
    harness = await harness_factory(kb=holder)
    alice = harness.customer("Alice")

    await alice.send("how do i assemble the wardrobe")
    await harness.settle()

    parts = alice.replies
    assert len(parts) >= 6 and all(len(p.text) <= 4096 for p in parts)
    assert parts[0].text.startswith("Assembling the wardrobe")
    assert "".join(p.text for p in parts).count("& check <it>.") == 40
    assert [bool(p.inline_buttons()) for p in parts] == [False] * (len(parts) - 1) + [True]
    assert not [r for r in harness.fake.calls("sendMessage") if r.error]


def test_article_details_are_structured() -> None:
    article = Article(id="a1", title="T", body="b")
    assert article_details(article, 0.123456) == {
        "article_id": "a1",
        "title": "T",
        "confidence": 0.1235,
    }
    assert article_details(article, None)["confidence"] is None
