"""The REST API served as ``deskbot run`` serves it: ``build_web_app`` with the running bot
(the e2e harness: the real application on the inbox runtime against the emulator), on a free
port, and an HTTP client for it.

``api.key("read", "write:complaints")`` makes a key with those scopes and returns its
``Authorization`` header; ``api.client`` is an aiohttp session on the server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import func
from sqlmodel import select

from bot.metrics import DeskMetrics
from bot.webhook_server import build_web_app
from crm_core.models import ApiScope, ChannelIdentity, Complaint, Customer, Interaction, Purchase
from crm_core.services.api_keys import create_api_key
from tests.fakes.bot_api import FakeBotAPI
from tests.handlers.conftest import (  # noqa: F401  (the harness fixtures, reused)
    BOTH_DATABASES,
    Harness,
    HarnessFactory,
    e2e_database_url,
    e2e_engine,
    e2e_session_factory,
    fake,
    harness_factory,
    kb_holder,
)

AGENTS_GROUP = -1001000000777
ALL_SCOPES = tuple(scope.value for scope in ApiScope)


@dataclass
class Api:
    harness: Harness
    client: aiohttp.ClientSession
    url: str
    _keys: int = field(default=0)

    async def key(self, *scopes: str) -> dict[str, str]:
        self._keys += 1
        async with self.harness.session_factory() as session:
            created = await create_api_key(
                session=session, name=f"key{self._keys}", scopes=scopes or ALL_SCOPES
            )
        return {"Authorization": f"Bearer {created.token}"}

    async def customer(self, name: str = "Ann", **values: Any) -> int:
        """A CRM customer without a Telegram chat (e.g. an imported one)."""
        async with self.harness.session_factory() as session:
            row = Customer(name=name, **values)
            session.add(row)
            await session.commit()
            assert row.id is not None
            return row.id

    async def counts(self) -> dict[str, int]:
        """How many rows the API could have written, per table."""
        async with self.harness.session_factory() as session:
            counts = {}
            for model in (Customer, ChannelIdentity, Interaction, Complaint, Purchase):
                stmt = select(func.count()).select_from(model)
                counts[model.__name__] = int((await session.exec(stmt)).one())
            return counts


async def serve_api(harness: Harness, **options: Any) -> tuple[web.AppRunner, str]:
    assert harness.runtime is not None
    app = build_web_app(
        runtime=harness.runtime,
        metrics=DeskMetrics(),
        session_factory=harness.session_factory,
        api_application=harness.app,
        **options,
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


@pytest.fixture
async def api(harness_factory: HarnessFactory, fake: FakeBotAPI) -> AsyncIterator[Api]:  # noqa: F811
    fake.add_group(AGENTS_GROUP, "Agents", forum=True)
    harness = await harness_factory(agent_chat_id=AGENTS_GROUP)
    runner, url = await serve_api(harness)
    try:
        async with aiohttp.ClientSession(base_url=url) as client:
            yield Api(harness=harness, client=client, url=url)
    finally:
        await runner.cleanup()
