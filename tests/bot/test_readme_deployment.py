"""The README's deployment instructions agree with the code: the Dockerfile runs the README's
install, every `deskbot` command shown exists with those options, every DESKBOT_ name is a
setting, and the systemd unit is one systemd can read. (No Docker engine here: the Dockerfile
is checked, not built.)"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from bot.cli import build_parser
from bot.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")
# Read by the knowledge base itself, not by the settings.
OTHER_ENVIRONMENT = {"DESKBOT_KB_CACHE_DIR"}
PLACEHOLDER = re.compile(r"[\[\]<>|]|\.\.\.")
SHELL_BREAKS = {"&&", "||", ";", "|", ">", "#"}


def _quick_start_install() -> str:
    match = re.search(r"## Quick start.*?```\n(.*?)\n```", README, re.S)
    assert match, "README.md lost its quick start"
    install, _, _ = match.group(1).rpartition(" && ")
    return install


def test_the_dockerfile_runs_the_readmes_install() -> None:
    runs = re.findall(r"^RUN (.*)$", DOCKERFILE, re.M)
    assert runs[0].replace("/app/.venv", ".venv") == _quick_start_install()
    assert _quick_start_install() == "python3 -m venv .venv && .venv/bin/pip install -q ."


def _shown_commands() -> list[str]:
    """Every `deskbot ...` invocation in a code span or block (without placeholders)."""
    pieces = re.findall(r"```[a-z]*\n(.*?)```", README, re.S) + re.findall(r"`([^`\n]+)`", README)
    lines = [line for piece in pieces for line in piece.splitlines()]
    commands = []
    for line in lines:
        try:
            words = shlex.split(line.replace("\\|", "|"), comments=True)
        except ValueError:
            continue
        for index, word in enumerate(words):
            at_start = index == 0 or words[index - 1] in SHELL_BREAKS or "=" in words[index - 1]
            if (word == "deskbot" and at_start) or word.endswith("/bin/deskbot"):
                rest = []
                for arg in words[index + 1 :]:
                    if arg in SHELL_BREAKS:
                        break
                    rest.append(arg)
                command = " ".join(rest)
                if rest and not PLACEHOLDER.search(command):
                    commands.append(command)
    return commands


def test_the_readme_shows_commands_worth_checking() -> None:
    shown = set(_shown_commands())
    assert {"run", "run --webhook", "db upgrade", "sandbox", "doctor"} <= shown
    assert "db retention --dry-run" in shown


@pytest.mark.parametrize("command", sorted(set(_shown_commands())))
def test_every_command_shown_exists(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        build_parser().parse_args(shlex.split(command))
    except SystemExit as stop:
        error = capsys.readouterr().err
        # Prose may name a command (`deskbot kb tune`) without the arguments it requires.
        named_only = "-" not in command and "arguments are required" in error
        if not named_only:
            pytest.fail(f"`deskbot {command}` in README.md is refused (exit {stop.code}): {error}")


def test_the_dockerfile_command_exists() -> None:
    (command,) = re.findall(r"^CMD (.*)$", DOCKERFILE, re.M)
    program, *args = json.loads(command)
    assert program == "/app/.venv/bin/deskbot"
    build_parser().parse_args(args)


def test_every_deskbot_variable_named_is_a_setting() -> None:
    named = set(re.findall(r"\bDESKBOT_[A-Z0-9_]*[A-Z0-9]\b", README + DOCKERFILE))
    settings = {f"DESKBOT_{name.upper()}" for name in Settings.model_fields}
    assert named - settings - OTHER_ENVIRONMENT == set()


def test_the_systemd_unit_has_no_inline_comments() -> None:
    # systemd reads "Key=value  # note" as a value ending in "# note".
    (unit,) = re.findall(r"```ini\n(.*?)```", README, re.S)
    assert "ExecStart=" in unit and "[Install]" in unit
    for line in unit.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";")):
            assert "#" not in line, line
