"""deskbot's webhook server: the secret, bad bodies, 200 only once stored, redeliveries, and
/healthz, /readyz, /metrics. Both databases."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlmodel import select

from bot.inbox_runtime import InboxRuntime
from bot.webhook_server import MAX_BODY_BYTES, SECRET_HEADER, build_web_app
from crm_core.db import SessionFactory, create_engine, create_session_factory
from crm_core.models import InboxUpdate
from crm_core.services.customers import identify_customer
from crm_core.services.handoffs import open_handoff
from tests.bot.inbox_harness import build
from tests.fakes.bot_api import FakeBotAPI

SECRET = "hook-secret-123"
RIGHT = {SECRET_HEADER: SECRET}


def _update(update_id: int = 41, text: str = "hello") -> dict[str, Any]:
    return {
        "update_id": update_id,
        "message": {
            "message_id": 1, "date": 0, "chat": {"id": 77, "type": "private"},
            "from": {"id": 77, "is_bot": False, "first_name": "Ann"}, "text": text,
        },
    }  # fmt: skip


@pytest.fixture
async def hook(
    session_factory: SessionFactory,
) -> AsyncIterator[tuple[TestClient[web.Request, web.Application], InboxRuntime]]:
    async with FakeBotAPI() as fake:
        _, runtime = build(fake, session_factory)  # not started: updates stay in the inbox
        app = build_web_app(
            runtime=runtime,
            metrics=runtime.metrics,
            session_factory=session_factory,
            webhook_path="/tg/hook",
            secret_token=SECRET,
        )
        async with TestClient(TestServer(app)) as client:
            yield client, runtime


async def _rows(session_factory: SessionFactory) -> list[InboxUpdate]:
    async with session_factory() as other:  # another connection: sees only what is committed
        rows = list((await other.exec(select(InboxUpdate))).all())
        await other.commit()
    return rows


@pytest.mark.parametrize("headers", [{}, {SECRET_HEADER: "wrong"}, {SECRET_HEADER: SECRET + "x"}])
async def test_a_missing_or_wrong_secret_is_403_and_writes_nothing(
    hook: Any, session_factory: SessionFactory, headers: dict[str, str]
) -> None:
    client, _ = hook
    response = await client.post("/tg/hook", json=_update(), headers=headers)
    assert response.status == 403
    assert await _rows(session_factory) == []


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[1, 2]",
        b'"text"',
        json.dumps({"message": _update()["message"]}).encode(),  # no update_id
        json.dumps({"update_id": 5}).encode(),  # nothing in it
        json.dumps({**_update(), "update_id": "5"}).encode(),
        json.dumps({**_update(), "update_id": True}).encode(),
        json.dumps({"update_id": 5, "message": "not an object"}).encode(),
        b"\xff\xfe",
    ],
)
async def test_a_body_that_is_no_update_is_400_and_writes_nothing(
    hook: Any, session_factory: SessionFactory, body: bytes
) -> None:
    client, _ = hook
    response = await client.post("/tg/hook", data=body, headers=RIGHT)
    assert response.status == 400
    assert await _rows(session_factory) == []


async def test_an_oversized_body_is_413(hook: Any, session_factory: SessionFactory) -> None:
    client, _ = hook
    huge = json.dumps(_update(text="x" * (MAX_BODY_BYTES + 10))).encode()
    response = await client.post("/tg/hook", data=huge, headers=RIGHT)
    assert response.status == 413
    assert await _rows(session_factory) == []


async def test_200_means_committed_and_a_redelivery_is_ignored(
    hook: Any, session_factory: SessionFactory
) -> None:
    client, runtime = hook
    response = await client.post("/tg/hook", json=_update(41), headers=RIGHT)
    assert response.status == 200
    rows = await _rows(session_factory)  # visible to another connection as soon as 200 came
    assert [(r.update_id, r.order_key) for r in rows] == [(41, "77")]
    assert json.loads(rows[0].payload) == _update(41)
    again = await client.post("/tg/hook", json=_update(41), headers=RIGHT)
    assert again.status == 200
    assert len(await _rows(session_factory)) == 1
    assert runtime.metrics.updates_received.labels("webhook")._value.get() == 1


async def test_a_full_inbox_answers_503_so_that_telegram_delivers_later(
    hook: Any, session_factory: SessionFactory
) -> None:
    client, runtime = hook
    runtime.depth = runtime.settings.inbox_max_depth
    response = await client.post("/tg/hook", json=_update(42), headers=RIGHT)
    assert response.status == 503
    assert await _rows(session_factory) == []


async def test_health_readiness_and_metrics(hook: Any, session_factory: SessionFactory) -> None:
    client, _ = hook
    async with session_factory() as session:
        customer = await identify_customer(session=session, channel="telegram", external_id="9")
        assert customer.id is not None
        await open_handoff(
            session=session, customer_id=customer.id, reminder_after=timedelta(minutes=5)
        )
    assert (await client.post("/tg/hook", json=_update(43), headers=RIGHT)).status == 200
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/readyz")).status == 200
    response = await client.get("/metrics")
    assert response.status == 200 and response.content_type == "text/plain"
    page = await response.text()
    for line in [
        "deskbot_inbox_depth 1.0",
        'deskbot_updates_received_total{source="webhook"} 1.0',
        "deskbot_open_handoffs 1.0",
        "deskbot_waiting_customers 1.0",
        "deskbot_updates_processed_total 0.0",
        "deskbot_update_processing_seconds_count 0.0",
    ]:
        assert line in page, f"{line!r} not in /metrics:\n{page}"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_readyz_is_503_when_the_database_is_unreachable(hook: Any) -> None:
    engine = create_engine("postgresql+asyncpg://nobody@127.0.0.1:9/none")
    app = build_web_app(
        runtime=None, metrics=hook[1].metrics, session_factory=create_session_factory(engine)
    )
    try:
        async with TestClient(TestServer(app)) as client:
            assert (await client.get("/healthz")).status == 200  # the process itself is fine
            assert (await client.get("/readyz")).status == 503
            assert (await client.get("/metrics")).status == 200  # own counters still served
    finally:
        await engine.dispose()
