"""What supervisors are offered: their commands in /help and in their own command menu."""

from __future__ import annotations

from tests.handlers.conftest import HarnessFactory

SUPERVISOR_ID = 9001


async def test_supervisors_get_their_commands_in_help_and_in_their_menu(
    harness_factory: HarnessFactory,
) -> None:
    harness = await harness_factory(supervisor_ids=str(SUPERVISOR_ID))
    sue = harness.customer("Sue", user_id=SUPERVISOR_ID)
    alice = harness.customer("Alice")
    await harness.restart()  # the menus are set at start, for supervisors the bot knows

    menu = [c["command"] for c in harness.fake.commands[(f"chat:{SUPERVISOR_ID}", "")]]
    assert {"complaint", "human", "stats", "reload_kb"} <= set(menu)
    customers_menu = [c["command"] for c in harness.fake.commands[("all_private_chats", "")]]
    assert "stats" not in customers_menu

    await sue.send("/help")
    await sue.expect("How I can help")
    supervisors = await sue.expect("For supervisors")
    assert "/stats" in supervisors.text and "/reload_kb" in supervisors.text
    await alice.send("/help")
    await alice.expect("How I can help")
    await alice.expect_silence()
    assert not any("For supervisors" in m.text for m in alice.replies)
