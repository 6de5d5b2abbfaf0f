"""/reload_kb for supervisors."""

from __future__ import annotations

import shutil
from pathlib import Path

from knowledge_base.holder import KnowledgeBaseHolder
from knowledge_base.loader import default_kb_dir
from tests.handlers.conftest import HarnessFactory
from tests.handlers.desk import GROUP_ID

SUPERVISOR_ID = 9001


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
