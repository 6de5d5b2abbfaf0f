"""Texts and callback data."""

from __future__ import annotations

from pathlib import Path

import jinja2
import pytest

from handlers.core import callbacks
from handlers.core.callbacks import CallbackDataError, Prefix
from handlers.core.keyboards import safe_build
from handlers.core.texts import Texts
from tests.fakes.bot_api import parse_telegram_html


def test_safe_build_leaves_out_oversized_callback_data() -> None:
    assert safe_build(Prefix.KB_ARTICLE, "reset-password") == "ka:reset-password"
    assert safe_build(Prefix.KB_ARTICLE, "x" * 80) is None


EDGE_TEMPLATES = (
    "greeting", "help", "apology", "domain_error", "unknown_command", "unsupported_content",
    "ask_prompt",
)  # fmt: skip


def test_edge_templates_render_valid_telegram_html() -> None:
    texts = Texts()
    context = {"first_name": "<b>&", "message": "a < b & c", "command": "/x<y>", "content": "x"}
    en = texts.templates_dir / "en"
    names = [
        *EDGE_TEMPLATES,
        *(f"buttons/{p.stem}" for p in (en / "buttons").glob("*.j2")),
        *(f"commands/{p.stem}" for p in (en / "commands").glob("*.j2")),
    ]
    for name in names:
        html = texts.render(name, "en", **context)
        assert html.strip(), name
        parse_telegram_html(html)  # raises on anything Telegram would reject


def test_language_falls_back_per_template(tmp_path: Path) -> None:
    (tmp_path / "en").mkdir()
    (tmp_path / "de").mkdir()
    (tmp_path / "en" / "hello.j2").write_text("Hello {{ name }}")
    (tmp_path / "en" / "bye.j2").write_text("Bye")
    (tmp_path / "de" / "hello.j2").write_text("Hallo {{ name }}")
    texts = Texts(tmp_path)

    assert texts.render("hello", "de-AT", name="Ana") == "Hallo Ana"
    assert texts.render("bye", "de", name="Ana") == "Bye"  # no German yet: English
    assert texts.render("hello", "fr", name="<i>") == "Hello &lt;i&gt;"
    assert texts.render("hello", None, name="Ana") == "Hello Ana"
    with pytest.raises(jinja2.UndefinedError):
        texts.render("hello", "en")  # a forgotten variable is an error, not a blank


def test_callback_data_round_trip_and_limits() -> None:
    data = callbacks.build(Prefix.HANDOFF_CLAIM, 123456789)
    assert data == "hc:123456789"
    parsed = callbacks.parse(data)
    assert parsed.prefix is Prefix.HANDOFF_CLAIM and parsed.int_arg(0) == 123456789
    assert callbacks.pattern(Prefix.HANDOFF_CLAIM).match(data)
    assert not callbacks.pattern(Prefix.HANDOFF_CLAIM).match("hcx:1")
    with pytest.raises(ValueError, match="64 bytes"):
        callbacks.build(Prefix.KB_FEEDBACK, "x" * 70)
    with pytest.raises(ValueError):
        callbacks.build(Prefix.CSAT, "a:b")
    for bad in ("", "zz:1", None):
        with pytest.raises(CallbackDataError):
            callbacks.parse(bad)
    with pytest.raises(CallbackDataError):
        callbacks.parse("hc:abc").int_arg(0)


def test_callback_prefixes_are_unique() -> None:
    values = [p.value for p in Prefix]
    assert len(values) == len(set(values))
