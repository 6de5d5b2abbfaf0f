"""After a handoff closes: ask the customer for a 1-5 rating, then an optional comment.

The rating buttons carry ``sat:<handoff_id>:<score>``. After a rating, a ``csat`` flow (with a
short TTL) waits for the comment: the customer's next text is the comment (the flow dispatcher
gives it to :func:`take_comment` before the knowledge base sees it); a command skips it.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import TelegramError
from telegram.ext import BaseHandler, CallbackQueryHandler, MessageHandler, filters

from crm_core.errors import DomainError
from crm_core.models import FlowState, Handoff
from crm_core.services.handoffs import get_handoff, rate_handoff
from handlers.agents.announce import HandoffSubject, post_html
from handlers.agents.cards import customer_name, handoff_reference
from handlers.core.callbacks import CallbackDataError, Prefix, build, parse, pattern
from handlers.core.context import DeskContext
from handlers.core.flows import FlowName, end_flow, load_flow, save_step
from handlers.core.send import (
    Delivery,
    Recipient,
    answer_query,
    drop_buttons,
    reply,
    tell_customer,
)
from handlers.customer.menu import menu_action_for_text

log = logging.getLogger(__name__)

COMMENT_STEP = "comment"
COMMENT_TTL = timedelta(minutes=15)
SCORES = (1, 2, 3, 4, 5)


def rating_keyboard(context: DeskContext, handoff_id: int, lang: str) -> InlineKeyboardMarkup:
    texts = context.deps.texts
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(
                    texts.render_plain("csat_btn", lang, score=score),
                    callback_data=build(Prefix.CSAT, handoff_id, score),
                )
                for score in SCORES
            ]
        ]
    )


async def ask_for_rating(context: DeskContext, handoff: Handoff, to: Recipient) -> Delivery:
    """Tell the customer the conversation is closed and offer the rating buttons."""
    assert handoff.id is not None
    return await tell_customer(
        context,
        to,
        "csat_ask",
        summary=handoff.summary,
        idempotency_key=f"handoff:{handoff.id}:csat_ask",
        reply_markup=rating_keyboard(context, handoff.id, to.lang),
        handoff_id=handoff.id,
    )


async def on_rating(update: Update, context: DeskContext) -> None:
    query = update.callback_query
    assert query is not None
    try:
        data = parse(query.data)
        handoff_id, score = data.int_arg(0), data.int_arg(1)
    except CallbackDataError:
        await answer_query(update)
        return
    if not await _is_own_handoff(context, handoff_id):
        # Callback data comes from the client: a forged button must not rate another's handoff.
        log.info("rating of handoff %s refused for customer %s", handoff_id, context.customer_id)
        await answer_query(update)
        return
    try:
        await rate_handoff(session=context.session, handoff_id=handoff_id, score=score)
    except DomainError as error:
        await answer_query(update, str(error), alert=True)
        return
    await answer_query(update)
    await drop_buttons(update)
    await save_step(
        update,
        context,
        FlowName.CSAT,
        COMMENT_STEP,
        {"handoff_id": handoff_id, "score": score},
        ttl=min(COMMENT_TTL, context.deps.config.flow_ttl),
    )
    await reply(context, "csat_thanks", score=score, handoff_id=handoff_id)
    await tell_agents(context, handoff_id, score)


async def _is_own_handoff(context: DeskContext, handoff_id: int) -> bool:
    customer_id = context.customer_id
    handoff = await context.session.get(Handoff, handoff_id)
    await context.session.commit()  # read only: do not hold SQLite's write lock
    return customer_id is not None and handoff is not None and handoff.customer_id == customer_id


async def take_comment(update: Update, context: DeskContext, flow: FlowState) -> bool:
    """The flow dispatcher's step: the customer's text after a rating is its comment. Anything
    else (a photo, a menu button) ends the wait and goes on to the bot."""
    message = update.effective_message
    assert message is not None
    await end_flow(update, context)
    if not message.text or message.text.startswith("/"):
        return False
    if menu_action_for_text(context.deps.texts, message.text) is not None:
        return False  # a menu button: the customer carries on, as the thanks message offers
    handoff_id, score = int(flow.data["handoff_id"]), int(flow.data["score"])
    await rate_handoff(
        session=context.session, handoff_id=handoff_id, score=score, comment=message.text
    )
    await reply(context, "csat_comment_thanks", handoff_id=handoff_id)
    await tell_agents(context, handoff_id, score, comment=message.text)
    return True


async def tell_agents(
    context: DeskContext, handoff_id: int, score: int, *, comment: str | None = None
) -> None:
    """The rating (and its comment) go into the conversation's topic: the agents learn how it
    went. Best effort: the customer's thanks do not depend on the group."""
    handoff = await get_handoff(session=context.session, handoff_id=handoff_id)
    if handoff.chat_id is None:
        return  # never reached the agents' group
    html = context.deps.texts.render(
        "agent_rating",
        context.deps.config.default_language,
        name=await customer_name(context, handoff.customer_id),
        reference=handoff_reference(handoff),
        score=score,
        comment=comment,
    )
    try:
        await post_html(context, HandoffSubject(handoff_id), html)
    except TelegramError as error:
        log.warning("could not tell the agents the rating of handoff %s: %s", handoff_id, error)


async def skip_comment_on_command(update: Update, context: DeskContext) -> None:
    """A command while the comment is awaited skips the comment (the command runs as usual)."""
    if update.effective_chat is None or context.customer is None:
        return
    if await load_flow(update, context, FlowName.CSAT) is not None:
        await end_flow(update, context)


def build_handlers() -> list[BaseHandler[Any, Any, Any]]:
    """Conversation handlers (private chats): the rating buttons."""
    return [CallbackQueryHandler(on_rating, pattern=pattern(Prefix.CSAT))]


def build_flow_handlers() -> list[BaseHandler[Any, Any, Any]]:
    """For ``Group.FLOWS``, beside the dispatcher: a command skips the awaited comment."""
    private_commands = filters.ChatType.PRIVATE & filters.UpdateType.MESSAGE & filters.COMMAND
    return [MessageHandler(private_commands, skip_comment_on_command)]
