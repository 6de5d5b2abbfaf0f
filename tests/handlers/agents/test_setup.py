"""The agents' group itself: its menu, the bot's rights, a migration."""

from __future__ import annotations

import logging

import pytest

from crm_core.services.app_state import get_state
from tests.fakes.bot_api import FakeBotAPI
from tests.handlers.conftest import HarnessFactory
from tests.handlers.desk import GROUP_ID, drain, latest_handoff, open_handoff, start


async def test_agents_get_their_command_menu_and_missing_rights_are_logged(
    harness_factory: HarnessFactory, fake: FakeBotAPI, caplog: pytest.LogCaptureFixture
) -> None:
    group = fake.add_group(GROUP_ID, forum=True)
    fake.set_member(group.id, fake.bot_user.id, "member")  # not an administrator

    with caplog.at_level(logging.WARNING, logger="handlers.agents.setup"):
        await harness_factory(agent_chat_id=GROUP_ID)

    menu = [c["command"] for c in fake.commands[(f"chat:{GROUP_ID}", "")]]
    assert menu[:4] == ["queue", "customer", "note", "resolve"] and "stats" in menu
    assert "not an administrator of the agents' group" in caplog.text


NEW_GROUP_ID = -1002000000002


@pytest.mark.parametrize("service_messages", [True, False])
async def test_group_migration_is_followed_and_persisted(
    harness_factory: HarnessFactory, service_messages: bool
) -> None:
    harness, group = await start(harness_factory, forum=False)
    sam = harness.agent("Sam", group=group)
    alice = harness.customer("Alice")
    await open_handoff(harness, alice, sam)
    await drain(harness, sam)

    harness.fake.migrate_group(GROUP_ID, NEW_GROUP_ID, push_service_messages=service_messages)
    await harness.settle()
    await alice.send("Anyone there?")

    relayed = await harness.fake.wait_for_message(NEW_GROUP_ID, "Alice: Anyone there?")
    handoff = await latest_handoff(harness)
    assert handoff.chat_id == NEW_GROUP_ID
    async with harness.session_factory() as session:
        state = await get_state(session=session, key="agent_chat_id")
    assert state is not None and state["chat_id"] == NEW_GROUP_ID

    await harness.restart()  # the new id is read from the database
    new_group = harness.fake.chats[NEW_GROUP_ID]
    harness.fake.push_message(sam.user, "Yes, here", chat=new_group, reply_to=relayed)
    await alice.expect("Sam (support team): Yes, here")


async def test_help_in_the_agents_group_explains_the_group_and_lists_its_commands(
    harness_factory: HarnessFactory,
) -> None:
    harness = await harness_factory(agent_chat_id=GROUP_ID)
    group = harness.agents_group(GROUP_ID)
    sam = harness.agent("Sam", group=group)
    eve = harness.agent("Eve", group=group, status="left")

    await sam.send("/help")
    shown = await sam.expect("Working in the agents' group")
    assert "/queue" in shown.text and "/resolve" in shown.text and "internal note" in shown.text
    await eve.send("/help")
    await eve.expect("Only members of the agents' group")
