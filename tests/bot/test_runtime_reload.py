"""SIGHUP makes a running `deskbot run` reload its knowledge base without a restart."""

from __future__ import annotations

import asyncio
import shutil
import signal
from pathlib import Path

from tests.bot.running import REPO, start_deskbot
from tests.fakes.bot_api import FakeBotAPI, FakeUser

TINY_KB = REPO / "tests" / "knowledge_base" / "data" / "tiny"

NEW_ARTICLE = """---
id: gift-wrap
title: Can you gift-wrap my order?
questions:
  - can you gift wrap my order
  - do you offer gift wrapping
  - wrap it as a present
tags: [orders]
---
Yes: tick **gift wrap** at checkout, it costs 3 EUR.
"""


async def test_sighup_reloads_the_knowledge_base(tmp_path: Path) -> None:
    kb_dir = tmp_path / "kb"
    shutil.copytree(TINY_KB, kb_dir)
    async with FakeBotAPI() as fake:
        process = await start_deskbot(fake, tmp_path, kb_dir=str(kb_dir))
        try:
            await fake.wait_for(lambda: fake.calls("getUpdates"), timeout=30)
            alice = FakeUser(id=42, first_name="Alice")
            fake.push_message(alice, "do you offer gift wrapping")
            before = await fake.wait_for_message(alice.id, timeout=10)
            assert "3 EUR" not in before.text  # not in the knowledge base yet

            (kb_dir / "gift-wrap.md").write_text(NEW_ARTICLE, encoding="utf-8")
            process.send_signal(signal.SIGHUP)
            log_line = await asyncio.wait_for(_read_until(process, b"SIGHUP:"), timeout=30)
            assert b"knowledge base reloaded" in log_line

            since = len(fake.messages)
            fake.push_message(alice, "do you offer gift wrapping")
            after = await fake.wait_for_message(alice.id, since=since, timeout=10)
            assert "3 EUR" in after.text
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGINT)
            _, stderr = await asyncio.wait_for(process.communicate(), timeout=20)
        assert process.returncode == 0, stderr.decode()[-3000:]


async def _read_until(process: asyncio.subprocess.Process, marker: bytes) -> bytes:
    """The first stderr line containing ``marker`` (the caller bounds the wait)."""
    assert process.stderr is not None
    while line := await process.stderr.readline():
        if marker in line:
            return line
    raise AssertionError(f"the process ended without logging {marker!r}")
