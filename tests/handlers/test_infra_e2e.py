"""The Telegram edge end to end: real Application, real polling, fake Bot API."""

from __future__ import annotations

from tests.handlers.conftest import BOTH_DATABASES, Harness


@BOTH_DATABASES
async def test_start_greets_by_first_name_escaping_a_hostile_name(harness: Harness) -> None:
    mallory = harness.customer("<b>&", language_code="de")

    reply = await mallory.ask("/start", contains="Hello")

    assert "Hello, <b>&!" in reply.text  # shown literally, and the fake's HTML parser accepted it
    assert "&lt;b&gt;&amp;" in (reply.html or "")
    labels = [b["text"] for b in reply.keyboard_buttons()]
    assert any("complaint" in label.lower() for label in labels)
    assert any(b.get("request_contact") for b in reply.keyboard_buttons())
