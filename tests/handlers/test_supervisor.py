"""Supervisors' commands: /stats and /reload_kb (and nobody else's)."""

from __future__ import annotations

import shutil
from pathlib import Path

from knowledge_base.holder import KnowledgeBaseHolder
from knowledge_base.loader import default_kb_dir
from tests.handlers.conftest import BOTH_DATABASES, Harness, HarnessFactory
from tests.handlers.test_agent_handoff import GROUP_ID, drain, open_handoff, start

SUPERVISOR_ID = 9001


def private(harness: Harness, user_id: int, text: str) -> None:
    harness.fake.push_message(harness.fake.chats[user_id].user, text)  # type: ignore[arg-type]


@BOTH_DATABASES
async def test_stats_for_a_supervisor_in_private_and_in_the_group(
    harness_factory: HarnessFactory,
) -> None:
    harness, group = await start(harness_factory, supervisor_ids=str(SUPERVISOR_ID))
    sam = harness.agent("Sam", group=group)
    sue = harness.agent("Sue", group=group, user_id=SUPERVISOR_ID)
    alice = harness.customer("Alice")
    card = await open_handoff(harness, alice, sam)
    await sam.press("Claim", card)
    await sam.send("/resolve", thread_id=card.thread_id)
    await alice.press("4", await alice.expect("How satisfied"))
    await alice.expect("rating us 4/5")
    await drain(harness, sue)

    private(harness, SUPERVISOR_ID, "/stats 7")
    stats = await sue.expect_private("Complaint statistics")
    assert "last 7 days" in stats.text
    assert "closed 1" in stats.text  # the handoff
    assert "CSAT: 4.0/5 from 1 rating" in stats.text

    await sue.send("/stats all")
    in_group = await sue.expect("Complaint statistics")
    assert "all time" in in_group.text

    private(harness, SUPERVISOR_ID, "/stats lots")
    await sue.expect_private("as a number of days")


async def test_stats_refused_for_agents_and_customers(harness_factory: HarnessFactory) -> None:
    harness, group = await start(harness_factory, supervisor_ids=str(SUPERVISOR_ID))
    sam = harness.agent("Sam", group=group)
    alice = harness.customer("Alice")

    await alice.ask("/stats", contains="Only supervisors")
    await sam.send("/stats")
    refused = await sam.expect()
    assert refused.text == "Only supervisors can use this command."
    await sam.send("/reload_kb")
    await sam.expect("Only supervisors")


async def test_reload_kb_applies_a_good_version_and_keeps_it_on_errors(
    harness_factory: HarnessFactory, tmp_path: Path
) -> None:
    kb_dir = tmp_path / "kb"
    kb_dir.mkdir()
    for name in ("kb.yaml", "app-download.md", "cancel-order.md"):
        shutil.copy(default_kb_dir() / name, kb_dir / name)
    holder, problems = KnowledgeBaseHolder.load(kb_dir)
    assert not problems
    harness = await harness_factory(
        agent_chat_id=GROUP_ID, supervisor_ids=str(SUPERVISOR_ID), kb=holder
    )
    group = harness.agents_group(GROUP_ID)
    sue = harness.agent("Sue", group=group, user_id=SUPERVISOR_ID)

    shutil.copy(default_kb_dir() / "change-address.md", kb_dir / "change-address.md")
    await sue.send("/reload_kb")
    assert "3 articles now live" in (await sue.expect("reloaded")).text
    assert len(holder.kb) == 3

    (kb_dir / "broken.md").write_text("---\nid: broken\n---\n")
    await sue.send("/reload_kb")
    failed = await sue.expect("NOT reloaded")
    assert "previous 3 articles" in failed.text and "broken.md:1: missing title" in failed.text
    assert len(holder.kb) == 3
