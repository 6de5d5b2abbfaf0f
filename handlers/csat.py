"""After a handoff closes: ask the customer for a 1-5 rating, then an optional comment.

The rating buttons carry ``sat:<handoff_id>:<score>``. After a rating, a ``csat`` FlowState
(with a short TTL) waits for the comment: the customer's next text is the comment (taken by the
relay handler in group -1, before the knowledge base sees it); a command skips it.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import timedelta
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import TelegramError
from telegram.ext import ApplicationHandlerStop, BaseHandler, CallbackQueryHandler

from crm_core.errors import DomainError
from crm_core.models import Channel, Customer, FlowState, Handoff
from crm_core.services.flows import clear_flow, get_flow, save_flow
from crm_core.services.handoffs import rate_handoff
from handlers.basic import menu_action_for_text
from handlers.callbacks import CallbackDataError, Prefix, build, parse, pattern
from handlers.deps import DeskContext
from handlers.messaging import deliver, reply

log = logging.getLogger(__name__)

FLOW = "csat"
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


async def ask_for_rating(
    context: DeskContext, handoff: Handoff, customer: Customer, chat_id: int
) -> None:
    """Tell the customer the conversation is closed and offer the rating buttons.
    Raises Forbidden when the customer blocked the bot (the caller handles it)."""
    assert handoff.id is not None
    lang = customer.language or context.deps.config.default_language
    html = context.deps.texts.render("csat_ask", lang, summary=handoff.summary)
    await deliver(
        context.bot,
        session=context.session,
        chat_id=chat_id,
        html=html,
        customer_id=customer.id,
        idempotency_key=f"handoff:{handoff.id}:csat_ask",
        reply_markup=rating_keyboard(context, handoff.id, lang),
        details={"template": "csat_ask"},
        handoff_id=handoff.id,
    )


async def on_rating(update: Update, context: DeskContext) -> None:
    query = update.callback_query
    assert query is not None
    try:
        data = parse(query.data)
        handoff_id, score = data.int_arg(0), data.int_arg(1)
    except CallbackDataError:
        with contextlib.suppress(TelegramError):
            await query.answer()
        return
    if not await _is_own_handoff(context, handoff_id):
        # Callback data comes from the client: a forged button must not rate another's handoff.
        log.info("rating of handoff %s refused for customer %s", handoff_id, context.customer_id)
        with contextlib.suppress(TelegramError):
            await query.answer()
        return
    try:
        await rate_handoff(session=context.session, handoff_id=handoff_id, score=score)
    except DomainError as error:
        with contextlib.suppress(TelegramError):
            await query.answer(str(error), show_alert=True)
        return
    with contextlib.suppress(TelegramError):
        await query.answer()
    with contextlib.suppress(TelegramError):
        await query.edit_message_reply_markup(reply_markup=None)
    chat = update.effective_chat
    assert chat is not None
    await save_flow(
        session=context.session,
        channel=Channel.telegram,
        chat_key=str(chat.id),
        customer_id=context.customer_id,
        flow=FLOW,
        step=COMMENT_STEP,
        data={"handoff_id": handoff_id, "score": score},
        ttl=min(COMMENT_TTL, context.deps.config.flow_ttl),
    )
    await reply(context, "csat_thanks", score=score, handoff_id=handoff_id)


async def _is_own_handoff(context: DeskContext, handoff_id: int) -> bool:
    customer_id = context.customer_id
    handoff = await context.session.get(Handoff, handoff_id)
    await context.session.commit()  # read only: do not hold SQLite's write lock
    return customer_id is not None and handoff is not None and handoff.customer_id == customer_id


async def take_comment(update: Update, context: DeskContext, flow: FlowState) -> None:
    """The customer's text after a rating is its comment. Anything else (a photo...) ends the
    wait and goes on to the bot. Called by the relay handler for private messages."""
    message = update.effective_message
    chat = update.effective_chat
    assert message is not None and chat is not None
    await clear_flow(session=context.session, channel=Channel.telegram, chat_key=str(chat.id))
    if not message.text or message.text.startswith("/"):
        return
    if menu_action_for_text(context.deps.texts, message.text) is not None:
        return  # a menu button: the customer carries on, as the thanks message offers
    handoff_id, score = int(flow.data["handoff_id"]), int(flow.data["score"])
    await rate_handoff(
        session=context.session, handoff_id=handoff_id, score=score, comment=message.text
    )
    await reply(context, "csat_comment_thanks", handoff_id=handoff_id)
    raise ApplicationHandlerStop


async def skip_comment_on_command(update: Update, context: DeskContext) -> None:
    """A command while the comment is awaited skips the comment (the command runs as usual)."""
    chat = update.effective_chat
    if chat is None or context.customer is None:
        return
    flow = await get_flow(session=context.session, channel=Channel.telegram, chat_key=str(chat.id))
    if flow is not None and flow.flow == FLOW:
        await clear_flow(session=context.session, channel=Channel.telegram, chat_key=str(chat.id))


def build_handlers() -> list[BaseHandler[Any, Any, Any]]:
    """Group-0 handlers (private chats)."""
    return [CallbackQueryHandler(on_rating, pattern=pattern(Prefix.CSAT))]
