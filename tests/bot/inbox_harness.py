"""The application plus its InboxRuntime in this process, against the fake Bot API (for the
inbox, webhook and metrics tests; the e2e harness in tests/handlers uses PTB's Updater)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from bot.app import RATE_LIMIT_RETRIES, DeskApplication, build_application
from bot.inbox_runtime import InboxRuntime
from bot.metrics import DeskMetrics, MeteredRateLimiter
from bot.rate_limit import RELAXED_LIMITS
from bot.settings import Settings
from crm_core.db import SessionFactory
from knowledge_base.holder import KnowledgeBaseHolder
from tests.fakes.bot_api import FakeBotAPI

_KB: list[KnowledgeBaseHolder] = []


def shared_kb() -> KnowledgeBaseHolder:
    """The bundled sample, loaded once per process (read-only)."""
    if not _KB:
        holder, problems = KnowledgeBaseHolder.load()
        assert not problems, problems
        _KB.append(holder)
    return _KB[0]


def make_settings(fake: FakeBotAPI, database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "telegram_token": fake.token,
        "telegram_api_url": fake.api_url,
        "telegram_file_api_url": fake.file_url,
        "database_url": database_url,
        **overrides,
    }
    return Settings(_env_file=None, **values)


def build(
    fake: FakeBotAPI, session_factory: SessionFactory, **overrides: Any
) -> tuple[DeskApplication, InboxRuntime]:
    url = session_factory.kw["bind"].url.render_as_string(hide_password=False)
    settings = make_settings(fake, url, **overrides)
    metrics = DeskMetrics()
    application = build_application(
        settings,
        session_factory=session_factory,
        kb_holder=shared_kb(),
        # Telegram's 20 a minute per group would slow the tests down.
        rate_limiter=MeteredRateLimiter(metrics, **RELAXED_LIMITS, max_retries=RATE_LIMIT_RETRIES),
    )
    application.update_observers.append(fake.note_processed)
    return application, InboxRuntime(application, settings, metrics)


@asynccontextmanager
async def running(
    fake: FakeBotAPI,
    session_factory: SessionFactory,
    *,
    poll: bool = True,
    instance: str | None = None,
    **overrides: Any,
) -> AsyncIterator[tuple[DeskApplication, InboxRuntime]]:
    """Started application and runtime (workers, and polling unless ``poll=False``).
    ``instance``: the runtime's id as another host's (two runtimes in one process would
    otherwise take each other for a crashed predecessor: same host, same pid)."""
    application, runtime = build(fake, session_factory, **overrides)
    if instance is not None:
        runtime.me = instance
    await application.initialize()
    await application.start()
    await runtime.start()
    if poll:
        runtime.start_polling()
    try:
        yield application, runtime
    finally:
        await runtime.stop()
        await application.stop()
        await application.shutdown()
