"""Telegram conversation logic, one package per audience, and the one ordered registration.

- ``core/``: what every handler stands on (context, config, handler groups, callback data,
  texts, sending, inbound logging, flows, formatting, errors, guards, membership).
- ``customer/``: a customer's private chat with the bot.
- ``agents/``: the agents' group.
- ``supervisor/``: supervisors' commands.

:func:`handler_groups` is the only place that decides which handler sees an update before
which; ``bot.app`` registers exactly what it returns.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from telegram import Bot, BotCommandScopeAllPrivateChats, BotCommandScopeChat
from telegram.error import TelegramError
from telegram.ext import BaseHandler

from handlers import outbox_sender as outbox_sender_module
from handlers.agents import idle, live_cards, reminders, setup
from handlers.agents import registration as agents
from handlers.core import commands, inbound
from handlers.core.config import DeskConfig
from handlers.core.context import DeskContext
from handlers.core.errors import on_error
from handlers.core.groups import Group
from handlers.core.texts import Texts
from handlers.customer import complaint_flow
from handlers.customer import registration as customer
from handlers.supervisor import campaign_sender, jobs
from handlers.supervisor import registration as supervisor

log = logging.getLogger(__name__)

Handlers = list[BaseHandler[Any, Any, Any]]
Sweeper = Callable[[DeskContext], Awaitable[None]]

__all__ = [
    "Group", "handler_groups", "on_error", "on_start", "outbox_sender", "refresh_cards_forever",
    "sweepers",
]  # fmt: skip

# Shows stale cards when they are due, until cancelled (``bot.app`` runs it beside the sweeps).
refresh_cards_forever = live_cards.refresh_cards_forever


def handler_groups(
    config: DeskConfig, texts: Texts, extra: Sequence[BaseHandler[Any, Any, Any]] = ()
) -> list[tuple[Group, Handlers]]:
    """Every handler, by group, in the order PTB tries them. ``extra`` (tests) goes just
    before the fallbacks."""
    conversation: Handlers = [
        # /start and /help first: they work whatever else is going on.
        *customer.build_start_handlers(config, texts),
        # The agents' group and supervisors' commands (their filters never match a customer's
        # plain message, so their place before the customer's handlers costs nothing).
        *agents.build_handlers(config),
        *supervisor.build_handlers(),
        # The customer's side; its knowledge-base handler last: it takes any plain text.
        *customer.build_handlers(config, texts),
        *extra,
        # Whatever nobody handled: unknown commands, unsupported content.
        *customer.build_fallback_handlers(config, texts),
    ]
    return [
        (Group.INBOUND, inbound.build_handlers()),
        (Group.FLOWS, customer.build_flow_handlers()),
        (Group.RELAY, agents.build_relay_handlers()),
        (Group.CONVERSATION, conversation),
    ]


def sweepers() -> list[Sweeper]:
    """Periodic jobs, each run every ``sweep_interval_seconds`` in its own session."""
    return [
        reminders.sweep_reminders,
        idle.sweep_idle_handoffs,
        complaint_flow.sweep_expired_flows,
        jobs.sweep_analytics,
        live_cards.sweep_stale_cards,
        outbox_sender_module.sweep_outbox,
        jobs.sweep_retention,
        # Last: it paces itself, so it should not hold up the others.
        campaign_sender.sweep_campaigns,
    ]


def outbox_sender() -> Callable[[DeskContext], Awaitable[int]]:
    """The outbox sender: one pass delivers what is due, returns how many it tried (the
    application runs it in a loop of its own, woken when something is queued)."""
    return outbox_sender_module.send_outbox


async def on_start(bot: Bot, config: DeskConfig, texts: Texts) -> None:
    """At start-up: the command menus (customers', in every shipped language; the agents'
    group's; each supervisor's) and a check of the bot's rights in the agents' group."""
    # Private chats only: the agents' group should not offer customers' commands.
    scope = BotCommandScopeAllPrivateChats()
    await bot.set_my_commands(commands.customer_menu(texts, None), scope=scope)
    for lang in texts.languages():
        if lang != texts.default_language:
            await bot.set_my_commands(
                commands.customer_menu(texts, lang), scope=scope, language_code=lang
            )
    await setup.prepare_agent_chat(bot, config.agent_chat_id, texts)
    supervisor_menu = commands.customer_menu(texts, None) + commands.supervisor_menu(texts)
    for supervisor_id in sorted(config.supervisor_ids):
        try:
            await bot.set_my_commands(supervisor_menu, scope=BotCommandScopeChat(supervisor_id))
        except TelegramError as error:  # a supervisor who never opened a chat with the bot
            log.warning("no command menu for supervisor %s: %s", supervisor_id, error)
