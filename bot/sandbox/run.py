"""Starting and stopping the sandbox: the emulator, the bot polling it (exactly as the e2e
tests' harness runs it), and the page server with the console. Self-contained on purpose: the
bot's own start-up (``bot.runtime``) may change without touching this."""

from __future__ import annotations

import asyncio
import errno
import logging
import secrets
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import SecretStr

from bot.app import RATE_LIMIT_RETRIES, DeskApplication, build_application
from bot.emulator import FakeBotAPI, FakeChat
from bot.inbox_runtime import InboxRuntime
from bot.metrics import DeskMetrics, MeteredRateLimiter
from bot.sandbox.world import AGENTS, GROUP_ID, HOST, SUPERVISOR, Sandbox, SandboxError
from bot.settings import Settings
from crm_core.migrate import ensure_database_current

__all__ = ["Sandbox", "SandboxError", "serve_forever", "start_sandbox", "stop_sandbox"]

log = logging.getLogger(__name__)

DEFAULT_PORT = 8765
POLL_TIMEOUT_SECONDS = 10


def sandbox_settings(emulator: FakeBotAPI, data_dir: Path, **overrides: Any) -> Settings:
    """The bot's settings for the sandbox: the emulator, SQLite in the data folder, the
    embedded defaults otherwise (DESKBOT_* variables still apply, e.g. DESKBOT_KB_DIR)."""
    values: dict[str, Any] = {
        "telegram_token": SecretStr(emulator.token),
        "telegram_api_url": emulator.api_url,
        "telegram_file_api_url": emulator.file_url,
        "database_url": f"sqlite+aiosqlite:///{(data_dir / 'deskbot.db').resolve()}",
        "agent_chat_id": GROUP_ID,
        "supervisor_ids": [SUPERVISOR.id],
        **overrides,
    }
    return Settings(_env_file=None, **values)


def _build_world(emulator: FakeBotAPI) -> FakeChat:
    group = emulator.add_group(GROUP_ID, "Agents", forum=True)
    for person, status in ((SUPERVISOR, "administrator"), *((a, "member") for a in AGENTS)):
        emulator.private_chat(person)
        group.members[person.id] = status
    return group


async def start_sandbox(
    data_dir: Path,
    *,
    port: int = DEFAULT_PORT,
    group_rate_limit: bool = False,
    **settings_overrides: Any,
) -> Sandbox:
    """Everything running; the page is at ``sandbox.url``. Raises SandboxError when the port
    is taken (checked before the database and the bot are touched)."""
    from bot.sandbox.page import build_page_app  # the page imports the console: load late

    await asyncio.to_thread(data_dir.mkdir, parents=True, exist_ok=True)
    bot_id = 7_000_000_000 + secrets.randbelow(10**6)
    emulator = FakeBotAPI(f"{bot_id}:{secrets.token_urlsafe(26)}", bot_username="deskbot_sandbox")
    if group_rate_limit:
        emulator.group_messages_per_minute = 20
    group = _build_world(emulator)
    await emulator.start()  # on a free port of its own: the settings need its address
    sandbox = Sandbox(
        data_dir=data_dir,
        emulator=emulator,
        settings=sandbox_settings(emulator, data_dir, **settings_overrides),
        group=group,
    )
    # An open page keeps its event stream open: do not wait the default minute for it.
    sandbox.runner = web.AppRunner(build_page_app(sandbox), access_log=None, shutdown_timeout=2)
    await sandbox.runner.setup()
    site = web.TCPSite(sandbox.runner, HOST, port)
    try:
        await site.start()
    except OSError as error:
        await sandbox.runner.cleanup()
        await emulator.stop()
        if error.errno == errno.EADDRINUSE:
            raise SandboxError(
                f"port {port} on {HOST} is already in use; choose another with --port"
            ) from None
        raise SandboxError(f"cannot listen on {HOST}:{port}: {error.strerror}") from None
    sockets = site._server.sockets  # type: ignore[union-attr]
    sandbox.port = int(sockets[0].getsockname()[1])
    try:
        sandbox._load_customers()
        await ensure_database_current(sandbox.settings.database_url)
        sandbox.application, sandbox.runtime = await _start_bot(sandbox.settings, emulator)
    except BaseException:
        await stop_sandbox(sandbox)
        raise
    return sandbox


async def _start_bot(
    settings: Settings, emulator: FakeBotAPI
) -> tuple[DeskApplication, InboxRuntime]:
    """The bot as ``deskbot run`` runs it: the real Application fed by the durable inbox
    runtime, polling the emulator through PTB's HTTP stack."""
    metrics = DeskMetrics()
    application = build_application(
        settings, rate_limiter=MeteredRateLimiter(metrics, max_retries=RATE_LIMIT_RETRIES)
    )
    # The emulator learns when an update is fully handled (``wait_processed``), as in tests.
    application.update_observers.append(emulator.note_processed)
    await application.initialize()
    if application.post_init is not None:  # the runtime calls it in production
        await application.post_init(application)
    await application.start()
    runtime = InboxRuntime(application, settings, metrics)
    await runtime.start()
    runtime.start_polling()
    return application, runtime


async def stop_sandbox(sandbox: Sandbox) -> None:
    application, sandbox.application = sandbox.application, None
    runtime, sandbox.runtime = sandbox.runtime, None
    # Answer the bot's pending long poll now rather than at its timeout (what the emulator's
    # own stop does), so that Ctrl-C stops at once.
    sandbox.emulator._closing = True
    sandbox.emulator._notify()
    if runtime is not None:
        await runtime.stop()
    if application is not None:
        if application.running:
            await application.stop()
        await application.shutdown()
    if sandbox.runner is not None:
        await sandbox.runner.cleanup()
        sandbox.runner = None
    await sandbox.emulator.stop()


async def serve_forever(data_dir: Path, *, port: int, group_rate_limit: bool) -> None:
    """``deskbot sandbox``: start, print the address, run until cancelled (Ctrl-C)."""
    sandbox = await start_sandbox(data_dir, port=port, group_rate_limit=group_rate_limit)
    try:
        print(f"deskbot sandbox is running: open {sandbox.url}", flush=True)
        print(f"  supervisors' console: {sandbox.url}console", flush=True)
        print(f"  data: {data_dir}  (Ctrl-C stops)", flush=True)
        await asyncio.Event().wait()
    finally:
        await stop_sandbox(sandbox)
