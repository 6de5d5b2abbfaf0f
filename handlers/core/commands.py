"""Every command deskbot offers, by audience, in menu order, and the menus built from them
(``setMyCommands``). A command's description is a template: ``commands/<name>`` for customers,
``agent_cmd_<name>`` for agents and supervisors."""

from __future__ import annotations

from telegram import BotCommand

from handlers.core.texts import Texts

CUSTOMER_COMMANDS = (
    "start", "help", "complaint", "mycomplaints", "human", "mydata", "forgetme", "email", "cancel",
    "stop",
)  # fmt: skip
AGENT_COMMANDS = (
    "queue", "customer", "note", "resolve", "status", "assign", "severity", "s", "snippets",
    "away", "back", "stats", "reload_kb", "help",
)  # fmt: skip
SUPERVISOR_COMMANDS = (
    "stats", "sla", "agents", "export", "segments", "mvc", "churn", "gaps", "reload_kb",
    "snippet", "campaign",
)  # fmt: skip


def customer_menu(texts: Texts, lang: str | None) -> list[BotCommand]:
    """The customers' command menu in ``lang``."""
    return [
        BotCommand(name, texts.render_plain(f"commands/{name}", lang)) for name in CUSTOMER_COMMANDS
    ]


def agent_menu(texts: Texts) -> list[BotCommand]:
    return [BotCommand(name, texts.render_plain(f"agent_cmd_{name}")) for name in AGENT_COMMANDS]


def supervisor_menu(texts: Texts) -> list[BotCommand]:
    """Supervisors' own commands (their private menu adds them to the customers' ones)."""
    return [
        BotCommand(name, texts.render_plain(f"agent_cmd_{name}")) for name in SUPERVISOR_COMMANDS
    ]
