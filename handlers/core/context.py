"""What a handler gets: shared dependencies (:class:`Deps`) and the per-update scope.

The application (``bot.app``) puts one :class:`Deps` into ``application.bot_data["deps"]`` and makes
:class:`DeskContext` the context class, so every callback can write::

    async def on_something(update: Update, context: DeskContext) -> None:
        session = context.session           # this update's AsyncSession (one per update)
        customer = context.customer         # Customer of a private chat, already identified
        lang = context.lang                 # the customer's language code (or "en")
        config = context.deps.config        # DeskConfig

One update = one :class:`UpdateScope`, opened by the application around the whole update
(all handler groups and the error handler) and closed afterwards. The scope lives in a
``ContextVar``, so it is isolated between concurrently processed updates. Do not use
``block=False`` handlers: they would outlive the scope and its session.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession
from telegram import Update
from telegram.ext import CallbackContext, ExtBot

from crm_core.db import SessionFactory
from crm_core.models import Customer, FlowState, Handoff
from handlers.core.config import DeskConfig
from handlers.core.outbox import PendingChats
from handlers.core.texts import Texts
from knowledge_base.holder import KnowledgeBaseHolder

DEPS_KEY = "deps"


@dataclass(frozen=True, slots=True)
class Deps:
    session_factory: SessionFactory
    config: DeskConfig
    texts: Texts
    kb_holder: KnowledgeBaseHolder | None = None
    # Which chats have messages waiting in the outbox (and the sender's wake-up call).
    outbox: PendingChats = field(default_factory=PendingChats)


@dataclass(slots=True)
class UpdateScope:
    """State of the update being processed; handlers read it through :class:`DeskContext`."""

    session: AsyncSession
    update_id: int | None = None
    update: Update | None = None
    customer: Customer | None = None
    lang: str | None = None
    # The chat's flows as read during this update, by FlowState chat key (None: no flow), so
    # that the flow dispatcher and the relay do not each ask the database again. Kept current
    # by ``handlers.core.flows`` (the only writer of flows while an update is handled).
    flows: dict[str, FlowState | None] = field(default_factory=dict)
    # The customer's open handoff as read by the inbound recorder with the inbound row (for
    # the relay, which runs next); only meaningful while ``open_handoff_known``.
    open_handoff: Handoff | None = None
    open_handoff_known: bool = False
    _outbound_seq: int = field(default=0)

    @property
    def customer_id(self) -> int | None:
        return self.customer.id if self.customer is not None else None

    def next_outbound_key(self) -> str | None:
        """Idempotency key for the next message sent while handling this update.

        Derived from the update id and a counter, so a redelivered update (should it ever be
        processed again) maps each reply onto the same key instead of logging it twice.
        """
        if self.update_id is None:
            return None
        self._outbound_seq += 1
        return f"tg:{self.update_id}:out:{self._outbound_seq}"


_SCOPE: ContextVar[UpdateScope | None] = ContextVar("deskbot_update_scope", default=None)


@asynccontextmanager
async def update_scope(
    session_factory: SessionFactory, update: object = None
) -> AsyncIterator[UpdateScope]:
    """Open a session and make it the current scope for this task (used by ``bot.app``;
    background jobs may use it too, without an update)."""
    async with session_factory() as session:
        tg_update = update if isinstance(update, Update) else None
        scope = UpdateScope(
            session=session,
            update_id=tg_update.update_id if tg_update else None,
            update=tg_update,
        )
        token = _SCOPE.set(scope)
        try:
            yield scope
        finally:
            _SCOPE.reset(token)


def current_scope() -> UpdateScope:
    scope = _SCOPE.get()
    if scope is None:
        raise RuntimeError("no update scope: call inside an update or `async with update_scope()`")
    return scope


def get_deps(context: CallbackContext[Any, Any, Any, Any]) -> Deps:
    deps = context.application.bot_data[DEPS_KEY]
    assert isinstance(deps, Deps)
    return deps


class DeskContext(CallbackContext[ExtBot[None], dict[Any, Any], dict[Any, Any], dict[Any, Any]]):
    """CallbackContext with typed access to :class:`Deps` and the current :class:`UpdateScope`."""

    @property
    def deps(self) -> Deps:
        return get_deps(self)

    @property
    def scope(self) -> UpdateScope:
        return current_scope()

    @property
    def session(self) -> AsyncSession:
        return current_scope().session

    @property
    def customer(self) -> Customer | None:
        return current_scope().customer

    @property
    def customer_id(self) -> int | None:
        return current_scope().customer_id

    @property
    def lang(self) -> str:
        return current_scope().lang or self.deps.config.default_language
