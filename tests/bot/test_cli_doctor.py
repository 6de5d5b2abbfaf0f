"""`deskbot doctor` against the fake Bot API: what is fine, and what to fix."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from bot.cli import main
from crm_core.migrate import upgrade_database
from tests.fakes.bot_api import FakeBotAPI

GROUP = -1001234567890


@pytest.fixture
def doctor_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("DESKBOT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DESKBOT_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'doc.db'}")
    return monkeypatch


async def _doctor(capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = await asyncio.to_thread(main, ["doctor"])  # its own event loop, beside the fake's
    return code, capsys.readouterr().out


async def test_a_healthy_desk(
    doctor_env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await upgrade_database(f"sqlite+aiosqlite:///{tmp_path / 'doc.db'}")
    async with FakeBotAPI() as fake:
        fake.add_group(GROUP, "Support agents", forum=True)
        doctor_env.setenv("DESKBOT_TELEGRAM_TOKEN", fake.token)
        doctor_env.setenv("DESKBOT_TELEGRAM_API_URL", fake.api_url)
        doctor_env.setenv("DESKBOT_AGENT_CHAT_ID", str(GROUP))
        code, out = await _doctor(capsys)
    assert code == 0, out
    for line in [
        "ok    database: reachable, schema current",
        "ok    inbox: 0 unhandled (0 in progress), 0 failed",
        "ok    outbox: 0 message(s) waiting to be sent, 0 refused (last 24 h)",
        "ok    telegram: token works: @desk_test_bot",
        "ok    webhook: none (polling mode); 0 update(s) waiting at Telegram",
        "ok    agents' group: Support agents, forum",
        "ok    knowledge base:",
    ]:
        assert line in out, out


async def test_problems_are_named_with_their_fix(
    doctor_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async with FakeBotAPI() as fake:
        fake.add_group(GROUP, "Support agents", forum=True)
        fake.set_member(GROUP, fake.bot_user.id, "member")
        fake.webhook_url = "https://desk.example.com/hook"
        fake.webhook_last_error = "Connection refused"
        fake.push_update(
            {"message": {"message_id": 1, "date": 0, "chat": {"id": 1, "type": "private"}}}
        )
        doctor_env.setenv("DESKBOT_TELEGRAM_TOKEN", fake.token)
        doctor_env.setenv("DESKBOT_TELEGRAM_API_URL", fake.api_url)
        doctor_env.setenv("DESKBOT_AGENT_CHAT_ID", str(GROUP))
        code, out = await _doctor(capsys)
    assert code == 1, out
    assert "FIX   database: no deskbot schema yet; run `deskbot db upgrade`" in out
    assert "FIX   webhook: set to https://desk.example.com/hook, 1 update(s) waiting" in out
    assert "Connection refused" in out
    assert "FIX   agents' group: Support agents: the bot is member; make it an administrator" in out


async def test_a_rejected_token_is_named(
    doctor_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async with FakeBotAPI() as fake:
        doctor_env.setenv("DESKBOT_TELEGRAM_TOKEN", "999:wrong")
        doctor_env.setenv("DESKBOT_TELEGRAM_API_URL", fake.api_url)
        code, out = await _doctor(capsys)
    assert code == 1
    assert "FIX   telegram: DESKBOT_TELEGRAM_TOKEN was rejected (invalid token)" in out
