"""`deskbot doctor`: check what the desk needs and say what to fix.

Checks, each one line ("ok" or "FIX" and what to do): the settings, the database (reachable,
schema current), the update inbox (backlog, failed updates, who polls), the outbox (messages
waiting to be sent, refused ones), Telegram (the token via getMe, the webhook via
getWebhookInfo: pending updates and its last error), the agents' group (the bot is an
administrator that may manage topics) and the knowledge base.
Exit code 0 when everything is fine, 1 when something needs fixing, 2 for unusable settings.
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass, field
from typing import Any

from bot.settings import Settings

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "doctor",
        help="check the settings, database, inbox, Telegram, agents' group and knowledge base",
        description="Check what the desk needs and say what to fix (exit 1 if anything).",
    )
    parser.set_defaults(func=doctor_command)


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    problems: int = 0

    def ok(self, what: str, detail: str) -> None:
        self.lines.append(f"ok    {what}: {detail}")

    def fix(self, what: str, detail: str) -> None:
        self.problems += 1
        self.lines.append(f"FIX   {what}: {detail}")

    def note(self, what: str, detail: str) -> None:
        self.lines.append(f"      {what}: {detail}")


def doctor_command(args: argparse.Namespace) -> int:
    from bot.cli_run import load_settings

    settings = load_settings()
    if isinstance(settings, str):
        print(f"FIX   settings: {settings}")
        return EXIT_USAGE
    report = Report()
    report.ok("settings", "all DESKBOT_* settings are valid")
    asyncio.run(_diagnose(settings, report))
    print("\n".join(report.lines))
    if report.problems:
        print(f"\n{report.problems} thing(s) to fix.")
        return EXIT_PROBLEMS
    print("\nEverything looks fine.")
    return EXIT_OK


async def _diagnose(settings: Settings, report: Report) -> None:
    database_ok = await _check_database(settings, report)
    if database_ok:
        await _check_inbox(settings, report)
    await _check_telegram(settings, report)
    _check_knowledge_base(settings, report)


async def _check_database(settings: Settings, report: Report) -> bool:
    from crm_core.migrate import current_revision, head_revision

    url = settings.database_url
    try:
        current = await current_revision(url)
    except Exception as error:
        report.fix(
            "database", f"cannot reach it ({_first_line(error)}); check DESKBOT_DATABASE_URL"
        )
        return False
    head = head_revision()
    if current is None:
        report.fix("database", "no deskbot schema yet; run `deskbot db upgrade`")
        return False
    if current != head:
        report.fix(
            "database", f"schema at {current}, this deskbot needs {head}; run `deskbot db upgrade`"
        )
        return False
    report.ok("database", f"reachable, schema current ({head})")
    return True


async def _check_inbox(settings: Settings, report: Report) -> None:
    from crm_core.clock import utcnow
    from crm_core.db import create_engine, create_session_factory
    from crm_core.services import inbox, outbox

    engine = create_engine(settings.database_url)
    try:
        async with create_session_factory(engine)() as session:
            counts = await inbox.counts(session=session)
            holder = await inbox.polling_lock_holder(session=session)
            queued = await outbox.counts(session=session)
    finally:
        await engine.dispose()
    detail = f"{counts.pending} unhandled ({counts.in_flight} in progress), {counts.failed} failed"
    if counts.oldest_pending_at is not None:
        age = (utcnow() - counts.oldest_pending_at).total_seconds()
        detail += f", oldest waiting {age:.0f} s"
    if counts.pending > settings.inbox_warn_depth:
        report.fix(
            "inbox",
            f"{detail}: the desk is behind; is `deskbot run` running? more instances "
            "(--webhook on PostgreSQL) or DESKBOT_INBOX_WORKERS help",
        )
    elif counts.failed:
        report.fix(
            "inbox",
            f"{detail}: failed updates keep their error in inbox_update.last_error; the logs "
            "say why",
        )
    else:
        report.ok("inbox", detail)
    if holder is not None:
        age = (utcnow() - holder.heartbeat_at).total_seconds()
        report.note("polling", f"held by host {holder.host} pid {holder.pid} ({age:.0f} s ago)")
    _report_outbox(settings, report, queued)


def _report_outbox(settings: Settings, report: Report, queued: Any) -> None:
    hours = settings.outbox_retention_hours
    detail = (
        f"{queued.pending} message(s) waiting to be sent, {queued.failed} refused (last {hours} h)"
    )
    if queued.pending > settings.inbox_warn_depth:
        report.fix(
            "outbox",
            f"{detail}: messages are not going out; is `deskbot run` running and Telegram "
            "reachable? outbox_message.error says why",
        )
    else:
        report.ok("outbox", detail)


async def _check_telegram(settings: Settings, report: Report) -> None:
    from telegram import Bot
    from telegram.error import InvalidToken, TelegramError

    token = settings.telegram_token.get_secret_value().strip() if settings.telegram_token else ""
    if not token:
        report.fix("telegram", "DESKBOT_TELEGRAM_TOKEN is not set: the token from @BotFather")
        return
    bot = Bot(token, base_url=settings.telegram_api_url)
    try:
        me = await bot.get_me()
        report.ok("telegram", f"token works: @{me.username} (id {me.id})")
        await _check_webhook(bot, settings, report)
        await _check_agents_group(bot, me.id, settings, report)
    except InvalidToken:
        report.fix("telegram", "DESKBOT_TELEGRAM_TOKEN was rejected (invalid token)")
    except TelegramError as error:
        report.fix(
            "telegram",
            f"cannot reach the Bot API at DESKBOT_TELEGRAM_API_URL ({_first_line(error)})",
        )
    finally:
        await bot.shutdown()


async def _check_webhook(bot: Any, settings: Settings, report: Report) -> None:
    info = await bot.get_webhook_info()
    pending = info.pending_update_count
    if info.url:
        detail = f"set to {info.url}, {pending} update(s) waiting at Telegram"
        if info.last_error_message:
            report.fix(
                "webhook",
                f"{detail}; last delivery failed: {info.last_error_message} (is "
                "`deskbot run --webhook` reachable at that URL?)",
            )
        elif settings.webhook_url and info.url != settings.webhook_url:
            report.fix("webhook", f"{detail}, but DESKBOT_WEBHOOK_URL is {settings.webhook_url}")
        else:
            report.ok("webhook", detail)
    else:
        mode = "polling mode" if not settings.webhook_url else "not registered yet"
        report.ok("webhook", f"none ({mode}); {pending} update(s) waiting at Telegram")


async def _check_agents_group(bot: Any, bot_id: int, settings: Settings, report: Report) -> None:
    from telegram.error import TelegramError

    chat_id = settings.agent_chat_id
    if chat_id is None:
        report.fix(
            "agents' group",
            "DESKBOT_AGENT_CHAT_ID is not set: handoffs and complaints reach no one; add the "
            "bot to a supergroup and put its id there",
        )
        return
    try:
        chat = await bot.get_chat(chat_id)
        member = await bot.get_chat_member(chat_id, bot_id)
    except TelegramError as error:
        report.fix(
            "agents' group",
            f"{chat_id}: {_first_line(error)}; is the bot a member, and is the id right?",
        )
        return
    title = chat.title or str(chat_id)
    if member.status != "administrator" and member.status != "creator":
        report.fix(
            "agents' group", f"{title}: the bot is {member.status}; make it an administrator"
        )
        return
    if chat.is_forum and not getattr(member, "can_manage_topics", False):
        report.fix(
            "agents' group",
            f"{title}: the bot may not manage topics; give it the 'Manage topics' right",
        )
        return
    kind = "forum (one topic per conversation)" if chat.is_forum else "plain group"
    report.ok("agents' group", f"{title}, {kind}, the bot is an administrator")


def _check_knowledge_base(settings: Settings, report: Report) -> None:
    from knowledge_base.holder import KnowledgeBaseHolder

    try:
        holder, problems = KnowledgeBaseHolder.load(
            settings.kb_dir,
            answer_threshold=settings.kb_answer_threshold,
            suggest_threshold=settings.kb_suggest_threshold,
            semantic=settings.kb_semantic,
        )
    except ValueError as error:
        report.fix("knowledge base", str(error))
        return
    count = len(holder.kb.articles)
    if problems:
        report.fix("knowledge base", f"{count} articles, {len(problems)} problem(s):")
        for problem in problems:
            report.note("  ", str(problem))
    elif count == 0:
        report.fix("knowledge base", f"no articles in {holder.path}; DESKBOT_KB_DIR")
    else:
        report.ok("knowledge base", f"{count} articles from {holder.path}")


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:300]
