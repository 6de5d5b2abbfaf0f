"""The customer's menu: buttons, inline twins, command menu, fallbacks."""

from __future__ import annotations

import logging

import pytest

from handlers.core.commands import CUSTOMER_COMMANDS
from handlers.core.texts import Texts
from handlers.customer.menu import (
    MenuAction,
    menu_action_for_text,
    menu_keyboard,
)
from tests.handlers.conftest import Harness, HarnessFactory
from tests.handlers.desk import GROUP_ID, drain, open_handoff, start


@pytest.mark.parametrize("data", ["m:human", "m:mycomplaints", "m:complaint", "m:share_phone"])
async def test_a_forged_customer_menu_button_in_the_group_does_nothing(
    harness_factory: HarnessFactory, caplog: pytest.LogCaptureFixture, data: str
) -> None:
    """Callback data comes from the client: a customer's menu button pressed on a group message
    is nobody's request (no handoff for "the group", no apology, no error logged)."""
    harness, group = await start(harness_factory)
    sam = harness.agent("Sam", group=group)
    alice = harness.customer("Alice")
    card = await open_handoff(harness, alice, sam)
    await drain(harness, sam)
    before = len(harness.fake.sent_to(GROUP_ID))

    query_id = harness.fake.push_callback(sam.user, data, card)
    await harness.settle()

    assert query_id in harness.fake.answered_callbacks  # the spinner stops
    assert len(harness.fake.sent_to(GROUP_ID)) == before  # nothing said in the group
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_menu_buttons_and_fallbacks(harness: Harness) -> None:
    alice = harness.customer("Alice")
    await alice.ask("/help", contains="/complaint")
    await alice.ask("❓ Ask a question", contains="type your question")
    await alice.ask("📝 File a complaint", contains="What is it about?")
    await alice.ask("/cancel", contains="cancelled")
    await alice.ask("/nonsense", contains="/help")
    await alice.send_sticker()
    await alice.expect("sticker")
    await alice.send_photo()  # no complaint in progress: nothing to attach it to
    await alice.expect("as text")
    await alice.ask("🙋 Talk to a person", contains="no one from our team is connected")


async def test_inline_menu_buttons(harness: Harness) -> None:
    alice = harness.customer("Alice")
    greeting = await alice.ask("/start", contains="Alice")

    await alice.callback("m:mycomplaints", greeting)
    await alice.expect("no complaints")
    await alice.callback("m:share_phone", greeting)
    await alice.expect("tap")
    await alice.callback("m:ask", greeting)
    await alice.expect("type your question")
    query_id = await alice.callback("m:bogus", greeting)  # a button of some other version
    await alice.expect_silence()
    assert query_id in harness.fake.answered_callbacks


async def test_set_my_commands_at_start_lists_the_customer_menu(harness: Harness) -> None:
    commands = harness.fake.commands[("all_private_chats", "")]
    assert [c["command"] for c in commands] == list(CUSTOMER_COMMANDS)
    assert all(c["description"] for c in commands)


def test_menu_buttons_map_back_to_actions() -> None:
    texts = Texts()
    keyboard = menu_keyboard(texts, "en")
    labels = [button.text for row in keyboard.keyboard for button in row]
    assert len(labels) == len(MenuAction)
    assert {menu_action_for_text(texts, label) for label in labels} == set(MenuAction)
    assert menu_action_for_text(texts, "where is my order?") is None
