"""Questions are answered from the articles of their own language."""

from __future__ import annotations

from pathlib import Path

import pytest

from knowledge_base import KnowledgeBase, load_knowledge_base
from knowledge_base.language import base_code, detect_language
from knowledge_base.loader import ArticleError, parse_article


def _article(directory: Path, name: str, language: str, title: str, questions: list[str]) -> None:
    lines = ["---", f"title: {title}", f"language: {language}", "questions:"]
    lines += [f"  - {q}" for q in questions]
    lines += ["---", "", f"Body of {title}.", ""]
    (directory / f"{name}.md").write_text("\n".join(lines), encoding="utf-8")


@pytest.fixture(scope="module")
def two_language_kb(tmp_path_factory: pytest.TempPathFactory) -> KnowledgeBase:
    directory = tmp_path_factory.mktemp("bilingual")
    _article(directory, "refund", "en", "When will I get my refund?", ["refund status"])
    _article(directory, "password", "en", "Reset your password", ["I forgot my password"])
    _article(directory, "erstattung", "de", "Wann bekomme ich mein Geld zurück?", ["Erstattung"])
    _article(directory, "passwort", "de", "Passwort zurücksetzen", ["Passwort vergessen"])
    result = load_knowledge_base(directory)
    assert result.problems == []
    return result.kb.prepare()


def test_an_english_question_is_answered_from_english_articles(
    two_language_kb: KnowledgeBase,
) -> None:
    result = two_language_kb.search("I forgot my password, how do I reset it?")
    assert result.language == "en"
    assert result.best is not None and result.best.article.id == "password"
    assert {c.article.language for c in result.candidates} == {"en"}


def test_a_german_question_is_answered_from_german_articles(
    two_language_kb: KnowledgeBase,
) -> None:
    result = two_language_kb.search("Ich habe mein Passwort vergessen, was kann ich tun?")
    assert result.language == "de"
    assert result.best is not None and result.best.article.id == "passwort"
    assert {c.article.language for c in result.candidates} == {"de"}


def test_an_unanswerable_german_question_still_says_german(
    two_language_kb: KnowledgeBase,
) -> None:
    """The "no answer" reply must follow the question's language, not the default one."""
    result = two_language_kb.search("Wie wird das Wetter morgen in Berlin?")
    assert result.language == "de"
    assert {c.article.language for c in result.candidates} <= {"de"}


def test_the_hint_decides_when_the_question_is_too_short_to_tell(
    two_language_kb: KnowledgeBase,
) -> None:
    assert two_language_kb.search("ok", hint="de-DE").language == "de"
    assert two_language_kb.search("ok", hint="en").language == "en"
    assert two_language_kb.search("ok").language == "en"  # the default language


def test_a_single_language_knowledge_base_never_detects(tmp_path: Path) -> None:
    _article(tmp_path, "a", "de", "Passwort zurücksetzen", ["Passwort vergessen"])
    kb = load_knowledge_base(tmp_path).kb
    assert kb.languages == ["de"]
    assert kb.search("where is my order").language == "de"


def test_detect_language_restricts_to_the_given_languages() -> None:
    assert detect_language("Wo ist meine Bestellung?", ["en", "de"], default="en")[0] == "de"
    assert detect_language("Where is my order?", ["en", "de"], default="de")[0] == "en"
    assert base_code("de_AT") == "de" and base_code("") is None


def test_articles_without_language_take_the_default_from_kb_yaml(tmp_path: Path) -> None:
    (tmp_path / "kb.yaml").write_text("language: de\n", encoding="utf-8")
    (tmp_path / "a.md").write_text("---\ntitle: Versand\n---\n\nText.\n", encoding="utf-8")
    kb = load_knowledge_base(tmp_path).kb
    assert kb.languages == ["de"] and kb.language_of(kb.articles[0]) == "de"


def test_a_bad_language_code_is_reported_on_its_line() -> None:
    with pytest.raises(ArticleError) as caught:
        parse_article("---\nid: t\ntitle: T\nlanguage: German!\n---\n\nBody\n")
    assert caught.value.line == 4 and "language" in caught.value.reason


def test_the_bundled_sample_answers_in_english_and_german(sample_kb: KnowledgeBase) -> None:
    assert sample_kb.languages == ["en", "de"]
    german = sample_kb.search("Wann bekomme ich mein Geld zurück?")
    assert german.language == "de"
    assert german.best is not None and german.best.article.id == "de-erstattung"
    english = sample_kb.search("when do I get my money back")
    assert english.language == "en"
    assert english.best is not None and english.best.article.id == "refund-status"
