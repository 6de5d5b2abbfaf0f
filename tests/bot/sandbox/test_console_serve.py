"""`deskbot run` serves the console when DESKBOT_CONSOLE_PORT is set: the Login Widget on its
sign-in page, the password form, and nothing else without a session."""

from __future__ import annotations

import asyncio
import signal
import socket
from pathlib import Path

import aiohttp

from tests.bot.running import start_deskbot
from tests.fakes.bot_api import FakeBotAPI


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _read_until(process: asyncio.subprocess.Process, marker: bytes) -> bytes:
    assert process.stderr is not None
    while line := await process.stderr.readline():
        if marker in line:
            return line
    raise AssertionError(f"the process ended without logging {marker!r}")


async def test_deskbot_run_serves_the_console(tmp_path: Path) -> None:
    port = _free_port()
    async with FakeBotAPI() as fake:
        process = await start_deskbot(
            fake, tmp_path, console_port=str(port), console_password="s3cret-Passw0rd",
            supervisor_ids="1001",
        )  # fmt: skip
        try:
            await asyncio.wait_for(_read_until(process, b"web console on"), timeout=30)
            async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as client:
                home = await client.get("/console", allow_redirects=False)
                assert home.status == 302
                assert (await client.get("/console/api/stats")).status == 401
                login = await client.get("/console/login")
                page = await login.text()
                assert 'data-telegram-login="desk_test_bot"' in page
                assert 'name="password"' in page
                assert "https://telegram.org" in login.headers["Content-Security-Policy"]
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGINT)
            _, stderr = await asyncio.wait_for(process.communicate(), timeout=20)
    assert process.returncode == 0, stderr.decode()[-3000:]
    assert b"s3cret-Passw0rd" not in stderr
