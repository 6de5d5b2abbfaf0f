"""One send budget per bot token, across instances: :class:`DeskRateLimiter`, PTB's rate
limiter interface (``telegram.ext.BaseRateLimiter``) over counters per time window.

Telegram limits the *bot*, not a process: about 30 messages a second overall, one a second per
private chat, 20 a minute per group. PTB's ``AIORateLimiter`` counts per process, so two
instances behind a load balancer could send twice the rate and be flooded with 429s. Here every
send takes one unit from each of its budgets first:

- ``all`` (a 1 s window): ``DESKBOT_SEND_PER_SECOND``;
- ``chat:<id>``: one a second for a private chat (counted over 3 s windows, so that a long
  answer in three parts goes at once), ``DESKBOT_GROUP_SENDS_PER_MINUTE`` per 60 s window for a
  group.

Where the counters live (:class:`Budget`): in memory on SQLite (one instance by design), in the
``send_budget`` table on PostgreSQL (:class:`DatabaseBudget`), shared by every instance. The
database variant is one ``INSERT ... ON CONFLICT DO UPDATE ... WHERE count < limit RETURNING``
per key in one short transaction (``crm_core.services.outbox.take_budget``): the row lock
serialises concurrent instances for the microseconds of the update, nothing is held across
the round trip to Telegram, and it needs no session-bound state (advisory locks would have to
be held while waiting, on a pooled connection, and still need a counter somewhere).

Priorities (``rate_limit_args``, :class:`handlers.core.send.Priority`): a lower priority may use
only part of the overall window (customers all of it, the agents' group 80 %, campaigns 50 %),
so when the budget is tight campaigns wait first and a customer's reply still finds room. A
full window means waiting for the next one, never failing. Only sending and editing methods
count (``getChatMember``, ``answerCallbackQuery``... do not). A 429 that slips through is
waited out (``retry_after``) and tried again up to ``max_retries`` times; then it propagates and
the outbox queues the message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, Protocol

from telegram.error import RetryAfter
from telegram.ext import BaseRateLimiter

from crm_core.db import SessionFactory
from crm_core.services import outbox as store
from handlers.core.outbox import Priority, retry_after_seconds

log = logging.getLogger(__name__)

Take = tuple[str, int, int]  # (key, window start in epoch seconds, limit)
Callback = Callable[..., Coroutine[Any, Any, Any]]

# The Bot API methods Telegram's flood limits are about: messages sent or edited in a chat.
SEND_METHODS = frozenset(
    {
        "sendMessage", "sendPhoto", "sendDocument", "sendAudio", "sendVideo", "sendAnimation",
        "sendVoice", "sendVideoNote", "sendSticker", "sendMediaGroup", "sendLocation",
        "sendVenue", "sendContact", "sendPoll", "sendDice", "sendInvoice", "copyMessage",
        "copyMessages", "forwardMessage", "forwardMessages", "editMessageText",
        "editMessageCaption", "editMessageMedia", "editMessageReplyMarkup",
    }
)  # fmt: skip
PRIORITY_SHARE = {Priority.CUSTOMER: 1.0, Priority.AGENTS: 0.8, Priority.CAMPAIGN: 0.5}
OVERALL_WINDOW = 1
# Limits that never make a send wait (tests and benchmarks send faster than Telegram allows).
RELAXED_LIMITS: dict[str, int] = {
    "per_second": 100_000,
    "private_per_second": 100_000,
    "group_per_minute": 100_000,
}
PRIVATE_WINDOW = 3
GROUP_WINDOW = 60


class Budget(Protocol):
    async def take(self, takes: list[Take]) -> tuple[str, int] | None:
        """Take one unit from every ``(key, window, limit)``, all or none; None when taken,
        else the full ``(key, window)``."""


class MemoryBudget:
    """Counters in this process (one instance)."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, int], int] = {}
        self._last_purge = 0

    async def take(self, takes: list[Take]) -> tuple[str, int] | None:
        for key, window, limit in takes:
            if self._counts.get((key, window), 0) >= limit:
                return key, window
        for key, window, _ in takes:
            self._counts[(key, window)] = self._counts.get((key, window), 0) + 1
        self._purge(min(window for _, window, _ in takes))
        return None

    def _purge(self, now_window: int) -> None:
        if now_window - self._last_purge < GROUP_WINDOW:
            return
        self._last_purge = now_window
        cutoff = now_window - 2 * GROUP_WINDOW
        for key in [key for key in self._counts if key[1] < cutoff]:
            del self._counts[key]


class DatabaseBudget:
    """Counters in the ``send_budget`` table, shared by every instance on the database."""

    def __init__(self, session_factory: SessionFactory) -> None:
        self._session_factory = session_factory

    async def take(self, takes: list[Take]) -> tuple[str, int] | None:
        async with self._session_factory() as session:
            return await store.take_budget(session, takes)


def chat_key(chat_id: object) -> tuple[str, bool] | None:
    """``("chat:<id>", is_group)`` for a request's chat, None without one. A string id names
    a channel or supergroup (``@name``), as negative ids do."""
    if chat_id is None:
        return None
    with contextlib.suppress(ValueError, TypeError):
        chat_id = int(chat_id)  # type: ignore[call-overload]
    is_group = isinstance(chat_id, str) or (isinstance(chat_id, int) and chat_id < 0)
    return f"chat:{chat_id}", is_group


class DeskRateLimiter(BaseRateLimiter[int]):
    """See the module docstring. Limits left as None are taken from the settings by
    ``bot.app.build_application`` (:meth:`bind`), and so is the budget."""

    def __init__(
        self,
        *,
        per_second: int | None = None,
        private_per_second: int = 1,
        group_per_minute: int | None = None,
        max_retries: int = 3,
        budget: Budget | None = None,
    ) -> None:
        self.per_second = per_second
        self.private_per_second = private_per_second
        self.group_per_minute = group_per_minute
        self.max_retries = max_retries
        self.budget = budget
        self.waits = 0  # how often a send waited for a window (tests, diagnostics)

    def bind(
        self, *, session_factory: SessionFactory, per_second: int, group_per_minute: int
    ) -> None:
        """Fill in what the caller left open: the limits, and the budget for the database
        (shared on PostgreSQL, in memory on SQLite)."""
        if self.per_second is None:
            self.per_second = per_second
        if self.group_per_minute is None:
            self.group_per_minute = group_per_minute
        if self.budget is None:
            dialect = session_factory.kw["bind"].dialect.name
            shared = dialect == "postgresql"
            self.budget = DatabaseBudget(session_factory) if shared else MemoryBudget()

    async def initialize(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass

    async def process_request(
        self,
        callback: Callback,
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: int | None,
    ) -> Any:
        if endpoint not in SEND_METHODS:
            return await callback(*args, **kwargs)
        priority = Priority(rate_limit_args if rate_limit_args is not None else Priority.AGENTS)
        chat = chat_key(data.get("chat_id"))
        for attempt in range(self.max_retries + 1):
            await self.acquire(chat, priority)
            try:
                return await callback(*args, **kwargs)
            except RetryAfter as error:
                if attempt == self.max_retries:
                    raise
                pause = retry_after_seconds(error) + 0.1
                log.info("%s to %s: 429, again in %.1f s", endpoint, chat, pause)
                await asyncio.sleep(pause)
        raise AssertionError("unreachable")

    async def acquire(self, chat: tuple[str, bool] | None, priority: Priority) -> None:
        """Wait until every budget of this send has room, and take it."""
        assert self.budget is not None and self.per_second is not None, "bind() first"
        while True:
            now = time.time()
            takes = list(self._takes(now, chat, priority))
            full = await self.budget.take(takes)
            if full is None:
                return
            self.waits += 1
            key, window = full
            await asyncio.sleep(max(window + _length(key, chat) - time.time(), 0.005))

    def _takes(
        self, now: float, chat: tuple[str, bool] | None, priority: Priority
    ) -> Iterable[Take]:
        assert self.per_second is not None and self.group_per_minute is not None
        if chat is not None:
            key, is_group = chat
            if is_group:
                yield key, _window(now, GROUP_WINDOW), self.group_per_minute
            else:  # a burst of a few (a long answer in parts), one a second on average
                limit = self.private_per_second * PRIVATE_WINDOW
                yield key, _window(now, PRIVATE_WINDOW), limit
        share = PRIORITY_SHARE[priority]
        yield "all", _window(now, OVERALL_WINDOW), max(1, math.floor(self.per_second * share))


def _window(now: float, length: int) -> int:
    """The window containing ``now``, named by its start (epoch seconds)."""
    return int(now // length) * length


def _length(key: str, chat: tuple[str, bool] | None) -> int:
    if key == "all" or chat is None:
        return OVERALL_WINDOW
    return GROUP_WINDOW if chat[1] else PRIVATE_WINDOW
