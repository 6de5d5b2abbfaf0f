"""Assembles the PTB Application from Settings; `deskbot run` and the e2e tests both use
:func:`build_application`.

Design decisions:
- **One database session per update.** :class:`DeskApplication` wraps each update (every
  handler group and the error handler) in ``handlers.core.context.update_scope``.
- **Ordered per chat, concurrent across chats.** PTB processes updates one at a time by default;
  one slow chat would stall everyone. :class:`PerChatUpdateProcessor` runs up to
  ``MAX_CONCURRENT_UPDATES`` updates at once but never two of the same chat (or, without a
  chat, the same user), so a customer's messages are handled in the order sent.
- **Flood control.** ``bot.rate_limit.DeskRateLimiter`` keeps one send budget per bot token
  (shared through the database on PostgreSQL) and retries a 429 after its ``retry_after`` (up
  to ``RATE_LIMIT_RETRIES`` times); what still fails is queued in the outbox and delivered by
  the outbox sender (a loop of the application, like the sweeps).
- **No secret or personal data in logs.** The token, the webhook secret and the console password
  are registered with ``bot.logging_setup``'s redaction filter, which also masks phones and
  e-mail addresses.
- **Periodic work** (expired flows, reminders, SLA checks): ``handlers.sweepers()`` lists
  ``async def sweep(context: DeskContext)`` functions; the application runs each every
  ``sweep_interval_seconds`` in its own scope (session). State lives in the database, so a
  restart loses nothing. (PTB's JobQueue would need APScheduler; this needs nothing.)

Which handlers exist, and in which order, is decided in one place: ``handlers.handler_groups``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any

import certifi
from telegram import Update
from telegram.ext import (
    Application,
    ApplicationBuilder,
    BaseHandler,
    BaseRateLimiter,
    BaseUpdateProcessor,
    ContextTypes,
)
from telegram.request import HTTPXRequest

import handlers
from bot.logging_setup import install_redaction
from bot.rate_limit import DeskRateLimiter
from bot.settings import ConfigurationError, Settings
from crm_core.db import SessionFactory, create_engine, create_session_factory
from handlers.core.config import DeskConfig
from handlers.core.context import DEPS_KEY, Deps, DeskContext, update_scope
from handlers.core.texts import Texts
from knowledge_base.holder import KnowledgeBaseHolder

log = logging.getLogger(__name__)

MAX_CONCURRENT_UPDATES = 64
RATE_LIMIT_RETRIES = 3
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 15.0
WRITE_TIMEOUT = 15.0
MEDIA_WRITE_TIMEOUT = 60.0
POOL_TIMEOUT = 10.0
CONNECTION_POOL_SIZE = 32

UpdateObserver = Callable[[object], None]
Sweeper = Callable[[DeskContext], Awaitable[None]]
OutboxSender = Callable[[DeskContext], Awaitable[int]]
OUTBOX_POLL_SECONDS = 1.0


class DeskApplication(Application):
    """Application that opens one UpdateScope (DB session) around each update."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Called after each update is fully processed (tests use it to know when to look).
        self.update_observers: list[UpdateObserver] = []
        # Periodic work (expired flows, reminders, SLA checks), every sweep_interval_seconds.
        self.sweepers: list[Sweeper] = []
        self._sweep_task: asyncio.Task[None] | None = None
        # Stale cards, shown when due within the group's edit budget (handlers.agents.live_cards).
        self._cards_task: asyncio.Task[None] | None = None
        # The outbox sender: delivers messages Telegram could not take at once.
        self.outbox_sender: OutboxSender | None = None
        self._outbox_task: asyncio.Task[None] | None = None

    @property
    def deps(self) -> Deps:
        deps = self.bot_data[DEPS_KEY]
        assert isinstance(deps, Deps)
        return deps

    async def process_update(self, update: object) -> None:
        try:
            async with update_scope(self.deps.session_factory, update):
                await super().process_update(update)
        finally:
            for observer in self.update_observers:
                observer(update)

    async def start(self) -> None:
        await super().start()
        interval = self.deps.config.sweep_interval_seconds
        self._sweep_task = asyncio.create_task(self._sweep_forever(interval), name="sweeps")
        self._cards_task = asyncio.create_task(handlers.refresh_cards_forever(self), name="cards")
        if self.outbox_sender is not None:
            self._outbox_task = asyncio.create_task(self._send_outbox_forever(), name="outbox")

    async def stop(self) -> None:
        for task in (self._cards_task, self._sweep_task, self._outbox_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._cards_task = self._sweep_task = self._outbox_task = None
        await super().stop()

    async def send_outbox(self) -> int:
        """One pass of the outbox sender (tests call this instead of waiting)."""
        if self.outbox_sender is None:
            return 0
        async with update_scope(self.deps.session_factory):
            return await self.outbox_sender(DeskContext(self))

    async def _send_outbox_forever(self) -> None:
        """Deliver queued messages: at once when something is queued (``deps.outbox.wake``),
        else every ``OUTBOX_POLL_SECONDS`` (another instance's, or retries coming due)."""
        wake = self.deps.outbox.wake
        while True:
            try:
                tried = await self.send_outbox()
            except Exception:
                log.exception("outbox sender failed; trying again")
                tried = 0
            if tried:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), OUTBOX_POLL_SECONDS)
            wake.clear()

    async def run_sweeps(self) -> None:
        """Run every sweeper once, each in its own scope (session); a failing sweeper is
        logged and does not stop the others. Tests call this instead of waiting."""
        for sweeper in self.sweepers:
            async with update_scope(self.deps.session_factory):
                try:
                    await sweeper(DeskContext(self))
                except Exception:
                    log.exception("sweeper %s failed", getattr(sweeper, "__qualname__", sweeper))

    async def _sweep_forever(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.run_sweeps()


class PerChatUpdateProcessor(BaseUpdateProcessor):
    """Concurrent across chats, strictly sequential within one chat."""

    def __init__(self, max_concurrent_updates: int = MAX_CONCURRENT_UPDATES) -> None:
        super().__init__(max_concurrent_updates)
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: Counter[str] = Counter()

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        key = _ordering_key(update)
        if key is None:
            await coroutine
            return
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._users[key] += 1
        try:
            async with lock:
                await coroutine
        finally:
            self._users[key] -= 1
            if not self._users[key]:
                del self._users[key], self._locks[key]

    async def initialize(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass


def order_key(update: Update) -> str:
    """Updates with the same key are handled one at a time, in order: one chat, or in a forum
    group one topic (each handoff and complaint has its own, so the agents of 200 open
    conversations are not served in single file through the one group; a topic's messages,
    its card's buttons and its commands still keep their order)."""
    if update.effective_chat is not None:
        message = update.effective_message
        if getattr(message, "is_topic_message", False) and message.message_thread_id:  # type: ignore[union-attr]
            return f"{update.effective_chat.id}:{message.message_thread_id}"  # type: ignore[union-attr]
        return str(update.effective_chat.id)
    if update.effective_user is not None:
        return str(update.effective_user.id)
    return f"update:{update.update_id}"


def _ordering_key(update: object) -> str | None:
    """The inbox's order key (so that what the inbox lets run side by side, one forum topic
    beside another, is not serialised again here)."""
    return order_key(update) if isinstance(update, Update) else None


def desk_config_from_settings(settings: Settings) -> DeskConfig:
    return DeskConfig(
        agent_chat_id=settings.agent_chat_id,
        supervisor_ids=frozenset(settings.supervisor_ids),
        flow_ttl=timedelta(minutes=settings.flow_ttl_minutes),
        sla_hours=dict(settings.sla_hours),
        handoff_reminder_delay=timedelta(minutes=settings.handoff_reminder_minutes),
        handoff_escalation_delay=timedelta(minutes=settings.handoff_escalation_minutes),
        agent_signature=settings.agent_signature,
        membership_cache_seconds=settings.membership_cache_seconds,
        sweep_interval_seconds=settings.sweep_interval_seconds,
        campaign_rate_per_second=settings.campaign_rate_per_second,
        campaign_batch_size=settings.campaign_batch_size,
        campaign_claim_seconds=settings.campaign_claim_seconds,
        card_refresh_seconds=settings.card_refresh_seconds,
        card_edits_per_minute=settings.card_edits_per_minute,
        default_phone_region=settings.default_phone_region,
        timezone=settings.timezone,
        auto_assign=settings.auto_assign,
        agent_cap=settings.agent_cap,
        auto_resolve_hours=settings.auto_resolve_hours,
        reopen_hours=settings.reopen_hours,
        business_hours=settings.business_hours,
        holidays=settings.holidays,
        retention_days=settings.retention_days,
        retention_mode=settings.retention_mode,
        outbox_retry_seconds=settings.outbox_retry_seconds,
        outbox_retention=timedelta(hours=settings.outbox_retention_hours),
    )


def build_application(
    settings: Settings,
    *,
    session_factory: SessionFactory | None = None,
    kb_holder: KnowledgeBaseHolder | None = None,
    extra_handlers: Sequence[BaseHandler[Any, Any, Any]] = (),
    texts: Texts | None = None,
    rate_limiter: BaseRateLimiter[Any] | None = None,
) -> DeskApplication:
    """The fully wired Application. ``extra_handlers`` (tests) go before the fallbacks;
    ``rate_limiter`` replaces the default :class:`DeskRateLimiter` (tests relax Telegram's
    limits); a ``DeskRateLimiter`` given gets the settings' limits it leaves open and the
    database's budget (shared on PostgreSQL)."""
    if settings.telegram_token is None or not settings.telegram_token.get_secret_value():
        raise ValueError("DESKBOT_TELEGRAM_TOKEN is required")
    token = settings.telegram_token.get_secret_value()
    # Here rather than in `deskbot run` alone: whatever builds the application (the tests'
    # harness too) logs through the same redaction.
    install_redaction(
        token,
        *(
            secret.get_secret_value() if secret else None
            for secret in (settings.webhook_secret_token, settings.console_password)
        ),
    )

    owns_engine = session_factory is None
    if session_factory is None:
        session_factory = create_session_factory(create_engine(settings.database_url))
    config = desk_config_from_settings(settings)
    texts = texts or Texts()
    if kb_holder is None:
        kb_holder = load_knowledge_base(settings)
    deps = Deps(session_factory=session_factory, config=config, texts=texts, kb_holder=kb_holder)
    if rate_limiter is None:
        rate_limiter = DeskRateLimiter(max_retries=RATE_LIMIT_RETRIES)
    if isinstance(rate_limiter, DeskRateLimiter):
        rate_limiter.bind(
            session_factory=session_factory,
            per_second=settings.send_per_second,
            group_per_minute=settings.group_sends_per_minute,
        )

    async def post_init(app: Application) -> None:
        await handlers.on_start(app.bot, config, texts)

    async def post_shutdown(app: Application) -> None:
        if owns_engine:
            await session_factory.kw["bind"].dispose()

    application = (
        ApplicationBuilder()
        .application_class(DeskApplication)
        .token(token)
        .base_url(settings.telegram_api_url)
        .base_file_url(settings.telegram_file_api_url)
        .context_types(ContextTypes(context=DeskContext))
        .concurrent_updates(PerChatUpdateProcessor())
        .rate_limiter(rate_limiter)
        .request(
            HTTPXRequest(
                connection_pool_size=CONNECTION_POOL_SIZE,
                connect_timeout=CONNECT_TIMEOUT,
                read_timeout=READ_TIMEOUT,
                write_timeout=WRITE_TIMEOUT,
                media_write_timeout=MEDIA_WRITE_TIMEOUT,
                pool_timeout=POOL_TIMEOUT,
                httpx_kwargs={"verify": tls_context()},
            )
        )
        .get_updates_request(HTTPXRequest(httpx_kwargs={"verify": tls_context()}))
        .post_init(post_init)
        .post_shutdown(post_shutdown)
        .build()
    )
    assert isinstance(application, DeskApplication)
    application.bot_data[DEPS_KEY] = deps

    for group, group_handlers in handlers.handler_groups(config, texts, extra_handlers):
        application.add_handlers(group_handlers, group=group)
    application.add_error_handler(handlers.on_error)
    application.sweepers.extend(handlers.sweepers())
    application.outbox_sender = handlers.outbox_sender()
    return application


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One verifying TLS context per process for every HTTP client of the bot. httpx would
    build one per client, reading the whole CA bundle each time (about 20 ms of CPU, twice per
    Application): the test suite builds an Application per test, a reload builds a new one."""
    return ssl.create_default_context(cafile=certifi.where())


def load_knowledge_base(settings: Settings) -> KnowledgeBaseHolder:
    """The knowledge base from DESKBOT_KB_DIR (or the bundled sample); broken files are left
    out with a warning so that the desk still starts."""
    try:
        holder, problems = KnowledgeBaseHolder.load(
            settings.kb_dir,
            answer_threshold=settings.kb_answer_threshold,
            suggest_threshold=settings.kb_suggest_threshold,
            semantic=settings.kb_semantic,
        )
    except ValueError as error:  # an env threshold contradicts the folder's kb.yaml
        raise ConfigurationError(
            f"DESKBOT_KB_ANSWER_THRESHOLD / DESKBOT_KB_SUGGEST_THRESHOLD: {error}"
        ) from None
    for problem in problems:
        log.warning("knowledge base: %s", problem)
    return holder
