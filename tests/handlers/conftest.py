"""End-to-end harness: the real Application (``bot.app.build_application``) fed by the
production runtime (``bot.inbox_runtime.InboxRuntime``: its own getUpdates loop, every update
stored in the inbox before it is confirmed, processed once per update id) from a local fake Bot
API (``tests.fakes.bot_api.FakeBotAPI``), on a throw-away database.

Fixtures:
- ``fake``: the running :class:`FakeBotAPI`.
- ``e2e_database_url``: SQLite in ``tmp_path`` by default; decorate a test with
  :data:`BOTH_DATABASES` to run it on SQLite and PostgreSQL.
- ``harness``: a started :class:`Harness` (application polling the fake; stopped cleanly after
  the test). ``harness.customer("Alice")`` gives a :class:`Customer` that talks to the bot.
- ``harness_factory``: ``await harness_factory(extra_handlers=[...], kb=holder,
  **settings_overrides)`` when a test needs extra handlers, its own knowledge base or other
  settings (``agent_chat_id=-100123``...).
- ``kb_holder``: the bundled sample knowledge base, loaded once per process; do not mutate it.

Agents: ``group = harness.agents_group()`` (a forum supergroup in the fake; build the harness
with ``harness_factory(agent_chat_id=group.id)``... or create the group id up front), then
``sam = harness.agent("Sam", group=group)``; ``await sam.send("text", thread_id=...)``,
``await sam.expect("New handoff")``, ``await sam.press("Claim", card)``.
Periodic work: ``await harness.sweep()`` runs every sweeper once, now.

Example::

    async def test_help(harness: Harness) -> None:
        alice = harness.customer("Alice", language_code="en")
        reply = await alice.ask("/help", contains="How I can help")
        assert "/complaint" in reply.text
        await harness.restart()                    # same DB and fake, fresh Application
        await alice.ask("/start", contains="Alice")
        await alice.expect_silence()               # nothing more was sent

Read the database only after ``await harness.settle()``: the bot logs a reply after Telegram
accepted it, so the reply can be visible in the fake a moment before its Interaction exists.

Everything waits on events (the fake's change notifications and the application's "update
processed" hook), never on sleeps. Keep timeouts at the default 5 s.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select
from telegram.ext import BaseHandler

from bot.app import RATE_LIMIT_RETRIES, DeskApplication, Sweeper, build_application
from bot.inbox_runtime import InboxRuntime
from bot.metrics import DeskMetrics, MeteredRateLimiter
from bot.rate_limit import RELAXED_LIMITS
from bot.settings import Settings
from crm_core.db import SessionFactory, create_engine, create_session_factory
from crm_core.models import ChannelIdentity
from knowledge_base.holder import KnowledgeBaseHolder
from tests.conftest import _reset_schema
from tests.fakes.bot_api import FakeBotAPI, FakeChat, FakeUser, StoredMessage

BOTH_DATABASES = pytest.mark.parametrize(
    "e2e_database_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
    indirect=True,
)  # fmt: skip


class Customer:
    """A Telegram user chatting privately with the bot, from the test's side.

    ``cursor`` marks how far this customer has read the bot's messages: :meth:`expect` returns
    the next matching bot message after it and moves it on.
    """

    def __init__(self, harness: Harness, user: FakeUser) -> None:
        self.harness = harness
        self.user = user
        self.cursor = len(harness.fake.messages)

    @property
    def fake(self) -> FakeBotAPI:
        return self.harness.fake

    @property
    def id(self) -> int:
        return self.user.id

    @property
    def chat_id(self) -> int:
        return self.user.id

    # --- acting -------------------------------------------------------------------------------

    async def send(self, text: str) -> StoredMessage:
        """Send text (or a /command); returns the user's message as stored by the fake."""
        return self.fake.push_message(self.user, text)

    async def ask(
        self,
        text: str,
        contains: str | None = None,
        timeout: float = 5,  # noqa: ASYNC109
    ) -> StoredMessage:
        """Send ``text`` and return the bot's next reply (containing ``contains``)."""
        await self.send(text)
        return await self.expect(contains, timeout=timeout)

    async def press(self, label: str, message: StoredMessage | None = None) -> str:
        """Press the inline button labelled ``label`` on ``message`` (default: the latest bot
        message to this chat that has such a button). Returns the callback query id."""
        if message is None:
            message = next(
                (
                    m
                    for m in reversed(self.replies)
                    if any(label in b.get("text", "") for b in m.inline_buttons())
                ),
                None,
            )
            if message is None:
                raise AssertionError(f"no message to {self.user.first_name} has button {label!r}")
        return self.fake.press(self.user, message, label)

    async def callback(self, data: str, message: StoredMessage) -> str:
        """Send raw callback data (e.g. a stale or forged button)."""
        return self.fake.push_callback(self.user, data, message)

    async def share_contact(self, phone_number: str, *, own: bool = True) -> StoredMessage:
        return self.fake.push_contact(self.user, phone_number, contact_user_id=-1 if own else None)

    async def send_photo(self, caption: str | None = None) -> StoredMessage:
        return self.fake.push_photo(self.user, caption=caption)

    async def send_document(self, file_name: str = "receipt.pdf", **kwargs: Any) -> StoredMessage:
        return self.fake.push_document(self.user, file_name=file_name, **kwargs)

    async def send_sticker(self) -> StoredMessage:
        return self.fake.push_sticker(self.user)

    async def send_voice(self) -> StoredMessage:
        return self.fake.push_voice(self.user)

    # --- observing ----------------------------------------------------------------------------

    async def expect(self, contains: str | None = None, *, timeout: float = 5) -> StoredMessage:  # noqa: ASYNC109
        """The next bot message to this chat after :attr:`cursor` containing ``contains``."""
        message = await self.fake.wait_for_message(
            self.chat_id, contains, since=self.cursor, timeout=timeout
        )
        self.cursor = self.fake.messages.index(message) + 1
        return message

    async def expect_silence(self, timeout: float = 5) -> None:  # noqa: ASYNC109
        """Once every pushed update is processed, the bot sent this chat nothing new."""
        await self.harness.settle(timeout)
        new = self.fake.messages[self.cursor :]
        unread = [m.text[:100] for m in new if m.from_bot and m.chat_id == self.chat_id]
        assert not unread, f"unexpected messages to {self.user.first_name}: {unread}"

    @property
    def replies(self) -> list[StoredMessage]:
        """Every bot message to this chat so far."""
        return self.fake.sent_to(self.chat_id)


class Agent:
    """A person in the agents' group, from the test's side (group messages, topics, buttons;
    ``expect_private`` for what the bot sends them directly)."""

    def __init__(self, harness: Harness, user: FakeUser, group: FakeChat) -> None:
        self.harness = harness
        self.user = user
        self.group = group
        self.cursor = len(harness.fake.messages)

    @property
    def fake(self) -> FakeBotAPI:
        return self.harness.fake

    @property
    def id(self) -> int:
        return self.user.id

    async def send(
        self, text: str, *, thread_id: int | None = None, reply_to: StoredMessage | None = None
    ) -> StoredMessage:
        """Write in the group (in a forum topic with ``thread_id``; as a reply with
        ``reply_to``)."""
        return self.fake.push_message(
            self.user, text, chat=self.group, thread_id=thread_id, reply_to=reply_to
        )

    async def press(self, label: str, message: StoredMessage) -> str:
        return self.fake.push_callback(self.user, message.button(label)["callback_data"], message)

    async def expect(
        self,
        contains: str | None = None,
        *,
        thread_id: int | None = None,
        timeout: float = 5,  # noqa: ASYNC109
    ) -> StoredMessage:
        """The next bot message in the group after this agent's cursor."""
        message = await self.fake.wait_for_message(
            self.group.id, contains, since=self.cursor, thread_id=thread_id, timeout=timeout
        )
        self.cursor = self.fake.messages.index(message) + 1
        return message

    async def expect_private(
        self,
        contains: str | None = None,
        *,
        timeout: float = 5,  # noqa: ASYNC109
    ) -> StoredMessage:
        message = await self.fake.wait_for_message(
            self.user.id, contains, since=self.cursor, timeout=timeout
        )
        self.cursor = self.fake.messages.index(message) + 1
        return message


@dataclass
class Harness:
    fake: FakeBotAPI
    settings: Settings
    session_factory: SessionFactory
    kb_holder: KnowledgeBaseHolder | None = None
    extra_handlers: Sequence[BaseHandler[Any, Any, Any]] = ()
    extra_sweepers: Sequence[Sweeper] = ()
    application: DeskApplication | None = None
    runtime: InboxRuntime | None = None
    _next_user_id: int = field(default=5000)

    @property
    def app(self) -> DeskApplication:
        assert self.application is not None, "harness not started"
        return self.application

    async def start(self) -> None:
        """The bot as ``deskbot run`` runs it: the application fed by the durable inbox
        runtime (its own getUpdates loop, stored before confirmed, processed once)."""
        metrics = DeskMetrics()
        application = build_application(
            self.settings,
            session_factory=self.session_factory,
            kb_holder=self.kb_holder,
            extra_handlers=self.extra_handlers,
            # Telegram allows 20 messages a minute per group; tests send more than that.
            rate_limiter=MeteredRateLimiter(
                metrics, **RELAXED_LIMITS, max_retries=RATE_LIMIT_RETRIES
            ),
        )
        application.update_observers.append(self.fake.note_processed)
        application.sweepers.extend(self.extra_sweepers)
        await application.initialize()
        if application.post_init is not None:  # the runtime calls it in production
            await application.post_init(application)
        await application.start()
        runtime = InboxRuntime(application, self.settings, metrics)
        await runtime.start()
        runtime.start_polling()
        self.application, self.runtime = application, runtime

    async def stop(self) -> None:
        application, self.application = self.application, None
        runtime, self.runtime = self.runtime, None
        if runtime is not None:
            await runtime.stop()
        if application is None:
            return
        if application.running:
            await application.stop()
        await application.shutdown()

    async def restart(self) -> None:
        """Stop the application and start a fresh one on the same database and fake."""
        await self.settle()
        await self.stop()
        await self.start()

    async def settle(self, timeout: float = 5) -> None:  # noqa: ASYNC109
        """Wait until every update pushed so far has been fully processed."""
        await self.fake.wait_processed(timeout)

    async def customer_id_of(self, customer: Customer) -> int:
        """The CRM id of a Telegram customer of the fake (after everything settled)."""
        await self.settle()
        async with self.session_factory() as session:
            identity = (
                await session.exec(
                    select(ChannelIdentity).where(ChannelIdentity.external_id == str(customer.id))
                )
            ).one()
            return identity.customer_id

    async def sweep(self) -> None:
        """Run the periodic sweepers once, now (instead of waiting for the interval)."""
        await self.settle()
        await self.app.run_sweeps()

    def agents_group(
        self, chat_id: int = -1001000000001, *, forum: bool = True, title: str = "Agents"
    ) -> FakeChat:
        """The agents' supergroup in the fake (pass ``agent_chat_id=chat_id`` to the factory)."""
        return self.fake.add_group(chat_id, title, forum=forum)

    def agent(
        self,
        first_name: str = "Sam",
        *,
        group: FakeChat,
        user_id: int | None = None,
        status: str = "member",
        language_code: str | None = "en",
    ) -> Agent:
        """A member of ``group`` (``status``: member, administrator, creator, left...)."""
        if user_id is None:
            self._next_user_id += 1
            user_id = self._next_user_id
        user = FakeUser(id=user_id, first_name=first_name, language_code=language_code)
        self.fake.private_chat(user)
        self.fake.set_member(group.id, user.id, status)
        return Agent(self, user, group)

    def customer(
        self,
        first_name: str = "Alice",
        *,
        user_id: int | None = None,
        language_code: str | None = "en",
        last_name: str | None = None,
        username: str | None = None,
    ) -> Customer:
        if user_id is None:
            self._next_user_id += 1
            user_id = self._next_user_id
        user = FakeUser(
            id=user_id,
            first_name=first_name,
            last_name=last_name,
            username=username,
            language_code=language_code,
        )
        self.fake.private_chat(user)
        return Customer(self, user)


@pytest.fixture(scope="session")
def kb_holder() -> KnowledgeBaseHolder:
    """The bundled sample knowledge base, loaded once per test process (read-only!)."""
    holder, problems = KnowledgeBaseHolder.load()
    assert not problems, problems
    return holder


@pytest.fixture
async def fake() -> AsyncIterator[FakeBotAPI]:
    async with FakeBotAPI() as server:
        yield server


@pytest.fixture
def e2e_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    backend = getattr(request, "param", "sqlite")
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'e2e.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
async def e2e_engine(e2e_database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(e2e_database_url)
    await _reset_schema(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
def e2e_session_factory(e2e_engine: AsyncEngine) -> SessionFactory:
    return create_session_factory(e2e_engine)


def make_settings(fake: FakeBotAPI, database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "telegram_token": fake.token,
        "telegram_api_url": fake.api_url,
        "telegram_file_api_url": fake.file_url,
        "database_url": database_url,
        **overrides,
    }
    return Settings(_env_file=None, **values)


HarnessFactory = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def harness_factory(
    fake: FakeBotAPI,
    e2e_database_url: str,
    e2e_session_factory: SessionFactory,
    kb_holder: KnowledgeBaseHolder,
) -> AsyncIterator[HarnessFactory]:
    started: list[Harness] = []

    async def make(
        *,
        extra_handlers: Sequence[BaseHandler[Any, Any, Any]] = (),
        extra_sweepers: Sequence[Sweeper] = (),
        kb: KnowledgeBaseHolder | None = None,
        **overrides: Any,
    ) -> Harness:
        harness = Harness(
            fake=fake,
            settings=make_settings(fake, e2e_database_url, **overrides),
            session_factory=e2e_session_factory,
            kb_holder=kb or kb_holder,
            extra_handlers=extra_handlers,
            extra_sweepers=extra_sweepers,
        )
        await harness.start()
        started.append(harness)
        return harness

    yield make
    for harness in started:
        await harness.stop()


@pytest.fixture
async def harness(harness_factory: HarnessFactory) -> Harness:
    return await harness_factory()
