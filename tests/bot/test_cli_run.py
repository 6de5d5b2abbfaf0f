"""`deskbot run`: clear errors for bad settings, and a real run against the fake Bot API."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from pathlib import Path

import aiohttp
import pytest
from pydantic import ValidationError

from bot.cli import main
from bot.settings import Settings, describe_validation_error
from tests.bot.running import start_deskbot
from tests.bot.test_cli_db_import import empty_schema
from tests.fakes.bot_api import FakeBotAPI, FakeUser


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No DESKBOT_* from the outer environment and no .env file."""
    for name in list(os.environ):
        if name.startswith("DESKBOT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def test_missing_token_exits_2_naming_the_setting(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run"]) == 2
    err = capsys.readouterr().err
    assert "DESKBOT_TELEGRAM_TOKEN" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DESKBOT_SUPERVISOR_IDS", "12,abc"),
        ("DESKBOT_SLA_HOURS", "{not json"),
        ("DESKBOT_SLA_HOURS", '{"urgent": 1}'),
        ("DESKBOT_SLA_HOURS", '{"low": Infinity}'),
        ("DESKBOT_SLA_HOURS", '{"low": NaN}'),
        ("DESKBOT_SLA_HOURS", '{"low": 1e8}'),
        ("DESKBOT_AGENT_CHAT_ID", "the-agents"),
        ("DESKBOT_FLOW_TTL_MINUTES", "0"),
        ("DESKBOT_AGENT_SIGNATURE", "full_name"),
        ("DESKBOT_DEFAULT_PHONE_REGION", "Germany"),
        ("DESKBOT_DEFAULT_PHONE_REGION", "XX"),
        ("DESKBOT_TIMEZONE", "Berlin"),
        ("DESKBOT_BUSINESS_HOURS", "weekdays 9-5"),
        ("DESKBOT_BUSINESS_HOURS", "mon-fri 17:00-09:00"),
        ("DESKBOT_HOLIDAYS", "christmas"),
        ("DESKBOT_TIMEZONE", "../../etc/passwd"),
        ("DESKBOT_DATABASE_URL", "garbage"),
        ("DESKBOT_DATABASE_URL", "sqlite:///./deskbot.db"),
        ("DESKBOT_DATABASE_URL", "mysql+aiomysql://u:secret@h/db"),
    ],
)
def test_malformed_setting_exits_2_naming_it(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], name: str, value: str
) -> None:
    clean_env.setenv("DESKBOT_TELEGRAM_TOKEN", "1:x")
    clean_env.setenv(name, value)
    assert main(["run"]) == 2
    err = capsys.readouterr().err
    assert name in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 2  # the heading and one line for the one problem


@pytest.mark.parametrize(
    "name",
    [
        "DESKBOT_FLOW_TTL_MINUTES",
        "DESKBOT_HANDOFF_REMINDER_MINUTES",
        "DESKBOT_HANDOFF_ESCALATION_MINUTES",
        "DESKBOT_MEMBERSHIP_CACHE_SECONDS",
        "DESKBOT_SWEEP_INTERVAL_SECONDS",
    ],
)
def test_durations_that_would_overflow_dates_are_refused(
    clean_env: pytest.MonkeyPatch, name: str
) -> None:
    clean_env.setenv(name, "10000000000")  # now + that many minutes is past the year 9999
    with pytest.raises(ValidationError) as info:
        Settings()
    assert describe_validation_error(info.value).splitlines()[1].startswith(f"  {name}: ")


@pytest.mark.parametrize("url", ["sqlite+aiosqlite://", "sqlite+aiosqlite:///:memory:"])
def test_an_in_memory_database_is_refused(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], url: str
) -> None:
    clean_env.setenv("DESKBOT_TELEGRAM_TOKEN", "1:x")
    clean_env.setenv("DESKBOT_TELEGRAM_API_URL", "http://127.0.0.1:9/bot")  # never reached
    clean_env.setenv("DESKBOT_DATABASE_URL", url)
    assert main(["run"]) == 2
    assert "in-memory SQLite" in capsys.readouterr().err


def test_webhook_mode_needs_its_url(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env.setenv("DESKBOT_TELEGRAM_TOKEN", "1:x")
    assert main(["run", "--webhook"]) == 2
    assert "DESKBOT_WEBHOOK_URL" in capsys.readouterr().err


async def test_run_polls_answers_and_stops_cleanly_on_sigint(tmp_path: Path) -> None:
    """The real command in a subprocess, DEBUG logging, against the fake Bot API; the SQLite
    database does not exist yet and is created by the start-up migration."""
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'run.db'}"
    async with FakeBotAPI() as fake:
        process = await start_deskbot(fake, tmp_path, database_url=database_url, log_level="DEBUG")
        try:
            await fake.wait_for(lambda: fake.calls("getUpdates"), timeout=30)
            alice = FakeUser(id=42, first_name="Alice")
            fake.push_message(alice, "/start")
            await fake.wait_for_message(alice.id, contains="Alice", timeout=10)
            assert fake.commands  # setMyCommands ran at start
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGINT)
            _, stderr_bytes = await asyncio.wait_for(process.communicate(), timeout=20)
        stderr = stderr_bytes.decode()
        assert process.returncode == 0, stderr[-3000:]
        assert "getUpdates" in stderr  # DEBUG logging did log request URLs...
        assert fake.token not in stderr  # ...but never the token
        assert fake.token.split(":")[1] not in stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_run_webhook_registers_and_accepts_only_the_secret(tmp_path: Path) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'hook.db'}"
    port = _free_port()
    hook_url = f"http://127.0.0.1:{port}/telegram/hook"
    async with FakeBotAPI() as fake:
        process = await start_deskbot(
            fake,
            tmp_path,
            "--webhook",
            database_url=database_url,
            webhook_url=hook_url,
            webhook_listen="127.0.0.1",
            webhook_port=str(port),
            webhook_secret_token="s3cret-hook",
        )
        try:
            registered = await fake.wait_for_request("setWebhook", timeout=30)
            assert registered.params["url"] == hook_url
            assert registered.params["secret_token"] == "s3cret-hook"
            alice = FakeUser(id=42, first_name="Alice")
            fake.private_chat(alice)
            update = {
                "update_id": 1,
                "message": {
                    "message_id": 1, "date": 0, "chat": {"id": 42, "type": "private"},
                    "from": alice.to_dict(), "text": "/start",
                    "entities": [{"type": "bot_command", "offset": 0, "length": 6}],
                },
            }  # fmt: skip
            async with aiohttp.ClientSession() as http:
                for _ in range(50):  # the server may open a moment after setWebhook
                    try:
                        async with http.post(hook_url, json=update) as wrong:
                            assert wrong.status == 403  # no secret header: refused
                        break
                    except aiohttp.ClientConnectorError:
                        await asyncio.sleep(0.1)
                headers = {"X-Telegram-Bot-Api-Secret-Token": "s3cret-hook"}
                async with http.post(hook_url, json=update, headers=headers) as right:
                    assert right.status == 200
            await fake.wait_for_message(42, contains="Alice", timeout=10)
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGINT)
            _, stderr_bytes = await asyncio.wait_for(process.communicate(), timeout=20)
        stderr = stderr_bytes.decode()
        assert process.returncode == 0, stderr[-3000:]
        assert fake.token not in stderr


@pytest.mark.postgres
def test_unmigrated_postgres_is_refused_with_a_clear_message(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], postgres_url: str
) -> None:
    empty_schema(postgres_url)  # the process's database may have been migrated by another test
    clean_env.setenv("DESKBOT_TELEGRAM_TOKEN", "1:x")
    clean_env.setenv("DESKBOT_DATABASE_URL", postgres_url)
    assert main(["run"]) == 1
    err = capsys.readouterr().err
    assert "deskbot db" in err and "Traceback" not in err


async def test_a_second_polling_instance_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    """Also: the first serves /healthz and /metrics on DESKBOT_METRICS_PORT."""
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'run.db'}"
    port = _free_port()
    async with FakeBotAPI() as fake:
        first = await start_deskbot(
            fake, tmp_path, database_url=database_url, metrics_port=str(port),
            webhook_listen="127.0.0.1",
        )  # fmt: skip
        try:
            await fake.wait_for(lambda: fake.calls("getUpdates"), timeout=30)
            polls = len(fake.calls("getUpdates"))
            second = await start_deskbot(fake, tmp_path, database_url=database_url)
            _, err = await asyncio.wait_for(second.communicate(), timeout=30)
            assert second.returncode == 2, err.decode()[-2000:]
            message = err.decode()
            assert "already polling" in message and "--webhook" in message
            assert "Traceback" not in message
            # The refused instance never called getUpdates (no 409 Conflict storm).
            assert not [r for r in fake.calls("getUpdates")[polls:] if r.error is not None]
            alice = FakeUser(id=42, first_name="Alice")
            fake.push_message(alice, "/start")
            await fake.wait_for_message(alice.id, contains="Alice", timeout=10)  # first still on
            async with aiohttp.ClientSession() as http:
                async with http.get(f"http://127.0.0.1:{port}/healthz") as health:
                    assert health.status == 200
                async with http.get(f"http://127.0.0.1:{port}/metrics") as metrics:
                    page = await metrics.text()
            assert 'deskbot_updates_received_total{source="polling"} 1.0' in page, page
            assert 'deskbot_telegram_requests_total{method="sendMessage"}' in page
        finally:
            if first.returncode is None:
                first.send_signal(signal.SIGINT)
            _, stderr_bytes = await asyncio.wait_for(first.communicate(), timeout=20)
        assert first.returncode == 0, stderr_bytes.decode()[-3000:]


def test_webhook_mode_needs_a_secret_token(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env.setenv("DESKBOT_TELEGRAM_TOKEN", "1:x")
    clean_env.setenv("DESKBOT_WEBHOOK_URL", "https://desk.example.com/hook")
    assert main(["run", "--webhook"]) == 2
    assert "DESKBOT_WEBHOOK_SECRET_TOKEN is required" in capsys.readouterr().err
