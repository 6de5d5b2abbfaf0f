"""The agents' group itself: its command menu and a check of the bot's rights at start, and
following Telegram when it upgrades the group to a supergroup (a new chat id)."""

from __future__ import annotations

import logging

from telegram import Bot, BotCommandScopeChat, Update
from telegram.constants import ChatMemberStatus
from telegram.error import ChatMigrated, TelegramError

from crm_core.models import Agent
from handlers.core.commands import agent_menu
from handlers.core.context import DeskContext
from handlers.core.guards import agent_only
from handlers.core.membership import agent_chat_id, follow_migration
from handlers.core.send import reply
from handlers.core.texts import Texts

log = logging.getLogger(__name__)


@agent_only
async def on_help(update: Update, context: DeskContext, agent: Agent) -> None:
    """/help in the agents' group: how the group works and the agents' commands."""
    commands = [(c.command, c.description) for c in agent_menu(context.deps.texts)]
    await reply(context, "agent_help", commands=commands)


async def prepare_agent_chat(bot: Bot, chat_id: int | None, texts: Texts) -> None:
    """At start: offer the agents' commands in their group and warn (log) when the bot lacks
    the rights it needs there. Never raises: the customer side works without the group."""
    if chat_id is None:
        return
    try:
        try:
            await bot.set_my_commands(agent_menu(texts), scope=BotCommandScopeChat(chat_id))
        except ChatMigrated as error:  # followed for good on the first update; menu now
            chat_id = error.new_chat_id
            await bot.set_my_commands(agent_menu(texts), scope=BotCommandScopeChat(chat_id))
        me = await bot.get_chat_member(chat_id, bot.id)
        chat = await bot.get_chat(chat_id)
    except TelegramError as error:
        log.warning("agents' group %s is not usable: %s", chat_id, error)
        return
    if me.status != ChatMemberStatus.ADMINISTRATOR:
        log.warning("the bot is not an administrator of the agents' group %s", chat_id)
    elif chat.is_forum and not getattr(me, "can_manage_topics", False):
        log.warning("the bot cannot manage topics in the agents' forum %s", chat_id)


async def on_migration(update: Update, context: DeskContext) -> None:
    """Telegram upgraded the group: follow it (service message in the old or the new chat)."""
    message = update.effective_message
    if message is None:
        return
    current = await agent_chat_id(context)
    if message.migrate_to_chat_id and message.chat_id == current:
        await follow_migration(context, message.chat_id, message.migrate_to_chat_id)
    elif message.migrate_from_chat_id and message.migrate_from_chat_id == current:
        await follow_migration(context, message.migrate_from_chat_id, message.chat_id)
