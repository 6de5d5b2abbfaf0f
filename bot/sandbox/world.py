"""The sandbox's world: the people on the page (a supervisor, two agents, the customers the
page creates), the agents' group, and what is kept in the data folder between runs."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from bot.app import DeskApplication
from bot.emulator import FakeBotAPI, FakeChat, FakeUser
from bot.inbox_runtime import InboxRuntime
from bot.settings import Settings

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
GROUP_ID = -1001000000001
SUPERVISOR = FakeUser(id=1001, first_name="Sue", last_name="Supervisor", username="sue")
AGENTS = (
    FakeUser(id=1002, first_name="Sam", username="sam_agent"),
    FakeUser(id=1003, first_name="Robin", username="robin_agent"),
)
FIRST_CUSTOMER_ID = 2001
USERS_FILE = "sandbox-customers.json"


class SandboxError(Exception):
    """Something the person starting the sandbox must fix (a port in use, a bad folder)."""


@dataclass
class Sandbox:
    data_dir: Path
    emulator: FakeBotAPI
    settings: Settings
    group: FakeChat
    supervisor: FakeUser = field(default_factory=lambda: SUPERVISOR)
    agents: tuple[FakeUser, ...] = AGENTS
    customers: list[FakeUser] = field(default_factory=list)
    application: DeskApplication | None = None
    runtime: InboxRuntime | None = None
    runner: web.AppRunner | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/"

    @property
    def app(self) -> DeskApplication:
        assert self.application is not None, "sandbox not started"
        return self.application

    def user(self, user_id: int) -> FakeUser | None:
        chat = self.emulator.chats.get(user_id)
        return chat.user if chat is not None and chat.type == "private" else None

    def add_customer(self, first_name: str, last_name: str | None = None) -> FakeUser:
        next_id = max([FIRST_CUSTOMER_ID - 1, *(c.id for c in self.customers)]) + 1
        customer = FakeUser(id=next_id, first_name=first_name, last_name=last_name)
        self.customers.append(customer)
        self.emulator.private_chat(customer)
        self._save_customers()
        return customer

    def _save_customers(self) -> None:
        rows = [{"id": c.id, "first_name": c.first_name, "last_name": c.last_name}
                for c in self.customers]  # fmt: skip
        (self.data_dir / USERS_FILE).write_text(json.dumps(rows, indent=1), encoding="utf-8")

    def _load_customers(self) -> None:
        path = self.data_dir / USERS_FILE
        try:
            rows = json.loads(path.read_text(encoding="utf-8")) if path.exists() else []
            for row in rows:
                user = FakeUser(id=int(row["id"]), first_name=str(row["first_name"]),
                                last_name=row.get("last_name"))  # fmt: skip
                self.customers.append(user)
                self.emulator.private_chat(user)
        except (ValueError, KeyError, TypeError):
            log.warning("%s is unreadable; starting with no customers", path)
