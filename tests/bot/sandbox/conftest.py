"""A running sandbox (emulator, bot, page server with the console) on free ports, and an
HTTP client for it. No browser needed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from bot.sandbox.run import Sandbox, start_sandbox, stop_sandbox

CONSOLE_PASSWORD = "correct horse battery staple"


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[Sandbox]:
    running = await start_sandbox(tmp_path / "data", port=0, console_password=CONSOLE_PASSWORD)
    yield running
    await stop_sandbox(running)


@pytest.fixture
async def http(sandbox: Sandbox) -> AsyncIterator[aiohttp.ClientSession]:
    """A client that keeps cookies (also those for 127.0.0.1) and never follows redirects
    unless asked."""
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(base_url=sandbox.url, cookie_jar=jar) as session:
        yield session
