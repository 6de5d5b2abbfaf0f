"""The desk's rate limiter: one budget per bot, priorities when it is tight, 429s waited out,
and two instances on one PostgreSQL sharing the budget."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlmodel import col, select
from telegram.error import RetryAfter

from bot.rate_limit import DatabaseBudget, DeskRateLimiter, MemoryBudget
from crm_core.db import SessionFactory, create_engine, create_session_factory
from crm_core.models import SendBudget
from handlers.core.outbox import Priority
from tests.conftest import _reset_schema


class Calls:
    """A fake Bot API call that records when it ran."""

    def __init__(self) -> None:
        self.times: list[tuple[float, str]] = []

    def callback(self, label: str) -> Any:
        async def call() -> bool:
            self.times.append((time.time(), label))
            return True

        return call

    def per_window(self, label: str | None = None) -> Counter[int]:
        return Counter(int(t) for t, name in self.times if label is None or name == label)


async def send(
    limiter: DeskRateLimiter, calls: Calls, chat_id: int, priority: Priority, label: str = ""
) -> Any:
    return await limiter.process_request(
        calls.callback(label), (), {}, "sendMessage", {"chat_id": chat_id}, int(priority)
    )


def memory_limiter(**limits: int) -> DeskRateLimiter:
    return DeskRateLimiter(budget=MemoryBudget(), **{"group_per_minute": 20, **limits})


async def test_the_overall_budget_holds_per_second() -> None:
    limiter, calls = memory_limiter(per_second=5), Calls()

    await asyncio.gather(*(send(limiter, calls, 100 + n, Priority.CUSTOMER) for n in range(12)))

    assert len(calls.times) == 12
    assert max(calls.per_window().values()) <= 5 + 1  # a send may start just past its window
    assert calls.times[-1][0] - calls.times[0][0] >= 1  # 12 at 5 a second: three windows


async def test_a_private_chat_gets_a_short_burst_then_one_a_second() -> None:
    limiter, calls = memory_limiter(per_second=100), Calls()

    started = time.time()
    await asyncio.gather(*(send(limiter, calls, 42, Priority.CUSTOMER) for _ in range(4)))

    # Three at once (a long answer in parts), the fourth in the next 3-second window.
    assert calls.times[2][0] - started < 1
    assert limiter.waits >= 1


async def test_when_the_budget_is_tight_campaigns_wait_and_customers_go_first() -> None:
    limiter, calls = memory_limiter(per_second=4), Calls()

    campaign = [send(limiter, calls, 200 + n, Priority.CAMPAIGN, "campaign") for n in range(6)]
    replies = [send(limiter, calls, 300 + n, Priority.CUSTOMER, "reply") for n in range(6)]
    await asyncio.gather(*campaign, *replies)

    assert max(calls.per_window("campaign").values()) <= 2 + 1  # half the budget at most
    last_reply = max(t for t, name in calls.times if name == "reply")
    last_campaign = max(t for t, name in calls.times if name == "campaign")
    assert last_reply < last_campaign


async def test_methods_that_send_nothing_are_not_limited() -> None:
    limiter, calls = memory_limiter(per_second=1), Calls()

    async def get_chat() -> Any:
        return await limiter.process_request(
            calls.callback("get"), (), {}, "getChat", {"chat_id": 1}, None
        )

    await asyncio.wait_for(asyncio.gather(*(get_chat() for _ in range(20))), timeout=2)
    assert limiter.waits == 0


async def test_a_429_is_waited_out_then_given_up_after_max_retries() -> None:
    limiter = memory_limiter(per_second=100, max_retries=2)
    attempts = 0

    async def flooded() -> bool:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise RetryAfter(0)
        return True

    async def always_flooded() -> bool:
        raise RetryAfter(0)

    data = {"chat_id": -100}
    assert await limiter.process_request(flooded, (), {}, "sendMessage", data, None)
    assert attempts == 3
    with pytest.raises(RetryAfter):
        await limiter.process_request(always_flooded, (), {}, "sendMessage", data, None)


@pytest.fixture
async def two_instances(postgres_url: str) -> AsyncIterator[tuple[SessionFactory, SessionFactory]]:
    """Two session factories on one PostgreSQL database, as two deskbot processes have."""
    engines = [create_engine(postgres_url), create_engine(postgres_url)]
    await _reset_schema(engines[0])
    yield create_session_factory(engines[0]), create_session_factory(engines[1])
    for engine in engines:
        await engine.dispose()


@pytest.mark.postgres
async def test_two_instances_on_one_postgresql_share_the_budget(
    two_instances: tuple[SessionFactory, SessionFactory],
) -> None:
    one, other = (
        DeskRateLimiter(per_second=5, group_per_minute=20, budget=DatabaseBudget(factory))
        for factory in two_instances
    )
    calls = Calls()

    started = time.time()
    await asyncio.gather(
        *(send(one, calls, 400 + n, Priority.CUSTOMER) for n in range(10)),
        *(send(other, calls, 500 + n, Priority.CUSTOMER) for n in range(10)),
    )

    async with two_instances[0]() as session:
        rows = (await session.exec(select(SendBudget).where(col(SendBudget.key) == "all"))).all()
    assert sum(row.count for row in rows) == 20  # every send counted once, in one place
    assert max(row.count for row in rows) <= 5  # never more than the bot's budget a second
    assert time.time() - started >= 2  # 20 at 5 a second: four windows, whoever sent them
    assert one.waits and other.waits  # both instances waited for the shared budget
