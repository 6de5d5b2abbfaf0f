"""Knowledge-base settings: each bad value or combination stops `deskbot run` with one clear
line naming the setting (exit 2), before anything connects to Telegram."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bot.cli import main

UNREACHABLE_API = "http://127.0.0.1:9/bot"  # never contacted: settings fail first


@pytest.fixture
def run_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("DESKBOT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DESKBOT_TELEGRAM_TOKEN", "123:abc")
    monkeypatch.setenv("DESKBOT_TELEGRAM_API_URL", UNREACHABLE_API)
    monkeypatch.setenv("DESKBOT_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    return monkeypatch


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (
            {"DESKBOT_KB_ANSWER_THRESHOLD": "0.2", "DESKBOT_KB_SUGGEST_THRESHOLD": "0.5"},
            "DESKBOT_KB_SUGGEST_THRESHOLD (0.5) must not exceed DESKBOT_KB_ANSWER_THRESHOLD",
        ),
        ({"DESKBOT_KB_ANSWER_THRESHOLD": "1.5"}, "DESKBOT_KB_ANSWER_THRESHOLD:"),
        ({"DESKBOT_KB_ANSWER_THRESHOLD": "high"}, "DESKBOT_KB_ANSWER_THRESHOLD:"),
        ({"DESKBOT_KB_DIR": "/no/such/folder"}, "DESKBOT_KB_DIR: /no/such/folder is not a folder"),
        # Valid alone, but above the bundled knowledge base's own answer threshold (kb.yaml).
        ({"DESKBOT_KB_SUGGEST_THRESHOLD": "0.99"}, "DESKBOT_KB_SUGGEST_THRESHOLD"),
    ],
)
def test_bad_knowledge_base_settings_exit_2_naming_them(
    run_env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    settings: dict[str, str],
    expected: str,
) -> None:
    for name, value in settings.items():
        run_env.setenv(name, value)
    assert main(["run"]) == 2
    err = capsys.readouterr().err
    assert expected in err
    assert "Traceback" not in err
