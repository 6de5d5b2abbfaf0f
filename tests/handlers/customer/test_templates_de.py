"""The German customer templates: complete, valid Telegram HTML, and the source-showing
answer and one-suggestion wording in both languages."""

from __future__ import annotations

import pytest

from handlers.core.texts import TEMPLATES_DIR, Texts
from tests.fakes.bot_api import parse_telegram_html
from tests.handlers.customer.test_templates import CUSTOMER_TEMPLATES, HOSTILE

CUSTOMER_SIDE = sorted(
    str(path.relative_to(TEMPLATES_DIR / "en").with_suffix(""))
    for path in (TEMPLATES_DIR / "en").rglob("*.j2")
    if not path.name.startswith(("agent_", "supervisor_", "card_"))
)


def test_every_customer_template_has_a_german_version() -> None:
    missing = [n for n in CUSTOMER_SIDE if not (TEMPLATES_DIR / "de" / f"{n}.j2").is_file()]
    assert missing == []


@pytest.mark.parametrize("name", sorted(CUSTOMER_TEMPLATES))
def test_german_templates_are_valid_telegram_html_with_hostile_values(name: str) -> None:
    texts = Texts()
    assert texts.resolve(name, "de") == f"de/{name}.j2"
    html = texts.render(name, "de", **CUSTOMER_TEMPLATES[name])
    plain = parse_telegram_html(html)
    shown = any(HOSTILE in str(v) for v in CUSTOMER_TEMPLATES[name].values())
    if shown and name != "complaint_edit":
        assert HOSTILE in plain


@pytest.mark.parametrize(("lang", "label"), [("en", "Read the full article"), ("de", "Ganzen")])
def test_an_answer_shows_its_title_and_link(lang: str, label: str) -> None:
    html = Texts().render(
        "kb_answer", lang, title="Returns", body="Body", url="https://northwind.example/r?a=1&b=2"
    )
    assert html.startswith("<b>Returns</b>")
    assert '<a href="https://northwind.example/r?a=1&amp;b=2">' in html and label in html
    assert "<a " not in Texts().render("kb_answer", lang, title="Returns", body="Body")


@pytest.mark.parametrize(("lang", "single"), [("en", "Did you mean"), ("de", "Meinten Sie")])
def test_one_suggestion_reads_as_one(lang: str, single: str) -> None:
    one = parse_telegram_html(Texts().render("kb_suggest", lang, titles=["Refunds"]))
    assert single in one and "Refunds" in one and "•" not in one
    two = parse_telegram_html(Texts().render("kb_suggest", lang, titles=["Refunds", "Returns"]))
    assert single not in two and two.count("•") == 2
