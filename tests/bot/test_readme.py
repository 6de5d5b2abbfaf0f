"""The README documents every setting, and CI runs exactly the README's test command."""

from __future__ import annotations

import re
from pathlib import Path

from bot.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def _settings_table() -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"<!-- settings-table -->(.*?)<!-- /settings-table -->", text, re.S)
    assert match, "README.md lost its settings table markers"
    return match.group(1)


def test_every_setting_is_documented_in_the_readme() -> None:
    documented = set(re.findall(r"`(DESKBOT_[A-Z0-9_]+)`", _settings_table()))
    expected = {f"DESKBOT_{name.upper()}" for name in Settings.model_fields}
    assert expected - documented == set(), "settings missing from README.md"
    assert documented - expected == set(), "README.md documents settings that do not exist"


def test_readme_has_exactly_one_test_command_for_ci() -> None:
    text = README.read_text(encoding="utf-8")
    blocks = re.findall(r"<!-- ci:test -->\s*```\n(.*?)```\s*<!-- /ci:test -->", text, re.S)
    assert len(blocks) == 1
    assert blocks[0].strip().count("\n") == 0, "the test command must be one line"
