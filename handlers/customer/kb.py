"""Self-service: any text a customer writes (no command, no flow in progress) goes to the
knowledge base.

- verdict ``answer``: the article (Markdown rendered to Telegram HTML, split when long) with
  "helpful / not helpful" buttons (``kf:<article_id>:<up|down>``);
- verdict ``suggest``: up to three articles as buttons (``ka:<article_id>``) that show the
  article when pressed;
- verdict ``none``: we say so and offer a person or a complaint.

Each answer is logged as the outbound Interaction of kind ``kb_answer`` / ``kb_suggest`` /
``kb_none`` whose ``details`` the agents' context card reads::

    kb_answer:   {"verdict": "answer", "article_id": ..., "title": ..., "confidence": 0.87,
                  "via": "search" | "suggestion"}
    kb_suggest:  {"verdict": "suggest", "candidates": [{"article_id", "title", "confidence"}]}
    kb_none:     {"verdict": "none"}   (the question itself is the inbound Interaction before it)
    kb_feedback: {"article_id": ..., "title": ..., "helpful": true | false}   (inbound)

One vote per answer message: the feedback Interaction's idempotency key is the message.
"""

from __future__ import annotations

import functools
from typing import Any

from markupsafe import Markup
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import BaseHandler, CallbackQueryHandler, MessageHandler, filters

from crm_core.models import Channel, Direction, InteractionKind
from crm_core.services.interactions import log_interaction
from handlers.core.callbacks import CallbackDataError, Prefix, parse, pattern
from handlers.core.config import DeskConfig
from handlers.core.context import DeskContext
from handlers.core.format import button_label
from handlers.core.keyboards import inline_button, safe_build
from handlers.core.send import answer_query, drop_buttons, reply
from handlers.core.texts import Texts
from handlers.customer.menu import menu_keyboard, next_steps_keyboard
from handlers.customer.small_talk import SmallTalk, classify
from knowledge_base.models import Article, SearchResult, Verdict
from knowledge_base.render import render_telegram_html

# Enough words to find the topic; a 20,000-character essay is not searched in full.
MAX_QUESTION_CHARS = 1000
HELPFUL, NOT_HELPFUL = "up", "down"


def search(context: DeskContext, question: str) -> SearchResult:
    holder = context.deps.kb_holder
    question = question.strip()[:MAX_QUESTION_CHARS]
    if holder is None or not question:
        return SearchResult(question, Verdict.NONE, ())
    # The customer's Telegram language decides only where the question itself does not tell.
    return holder.kb.search(question, hint=context.lang)


@functools.lru_cache(maxsize=1024)
def article_html(markdown: str) -> str:
    """An article's body as Telegram HTML, rendered once (keyed by the text itself, so a
    reloaded knowledge base renders its changed articles anew)."""
    return render_telegram_html(markdown)


def article_details(article: Article, confidence: float | None) -> dict[str, Any]:
    return {
        "article_id": article.id,
        "title": article.title,
        "confidence": round(confidence, 4) if confidence is not None else None,
    }


def feedback_keyboard(context: DeskContext, article: Article) -> InlineKeyboardMarkup | None:
    up = safe_build(Prefix.KB_FEEDBACK, article.id, HELPFUL)
    down = safe_build(Prefix.KB_FEEDBACK, article.id, NOT_HELPFUL)
    if up is None or down is None:
        return None
    return InlineKeyboardMarkup(
        [[inline_button(context, "kb_helpful", up), inline_button(context, "kb_not_helpful", down)]]
    )


async def send_article(
    context: DeskContext, article: Article, confidence: float | None, *, via: str
) -> None:
    body = Markup(article_html(article.body))  # escaped by the renderer
    await reply(
        context,
        "kb_answer",
        lang=article.language or context.lang,
        title=article.title,
        body=body,
        url=article.url,
        reply_markup=feedback_keyboard(context, article),
        kind=InteractionKind.kb_answer,
        details={
            "verdict": Verdict.ANSWER.value,
            "via": via,
            **article_details(article, confidence),
        },
    )


async def answer_question(update: Update, context: DeskContext, question: str) -> None:
    result = search(context, question)
    if result.language:  # the conversation goes on in the question's language
        context.scope.lang = result.language
    if result.verdict is Verdict.ANSWER and result.best is not None:
        await send_article(context, result.best.article, result.best.confidence, via="search")
        return
    if result.verdict is Verdict.SUGGEST and result.candidates:
        buttons = []
        for candidate in result.candidates:
            data = safe_build(Prefix.KB_ARTICLE, candidate.article.id)
            if data is not None:
                label = button_label(candidate.article.title)
                buttons.append([InlineKeyboardButton(label, callback_data=data)])
        await reply(
            context,
            "kb_suggest",
            titles=[c.article.title for c in result.candidates],
            reply_markup=InlineKeyboardMarkup(buttons) if buttons else None,
            kind=InteractionKind.kb_suggest,
            details={
                "verdict": Verdict.SUGGEST.value,
                "candidates": [article_details(c.article, c.confidence) for c in result.candidates],
            },
        )
        return
    await reply(
        context,
        "kb_none",
        reply_markup=next_steps_keyboard(context),
        kind=InteractionKind.kb_none,
        details={"verdict": Verdict.NONE.value},
    )


async def on_text(update: Update, context: DeskContext) -> None:
    """Any private text that is no command, no menu button and no flow's step: a question."""
    message = update.effective_message
    assert message is not None and message.text is not None
    if await answer_small_talk(update, context, message.text):
        return
    await answer_question(update, context, message.text)


async def answer_small_talk(update: Update, context: DeskContext, text: str) -> bool:
    """ "Hello" / "thanks" / "bye" get a polite answer, not "no answer, talk to a person?"."""
    kind = classify(text)
    if kind is None:
        return False
    user = update.effective_user
    await reply(
        context,
        f"small_talk_{kind.value}",
        first_name=user.first_name if user else "",
        reply_markup=(
            menu_keyboard(context.deps.texts, context.lang) if kind is SmallTalk.GREETING else None
        ),
        details={"small_talk": kind.value},
    )
    return True


async def on_article(update: Update, context: DeskContext) -> None:
    """``ka:<article_id>``: a suggested article was chosen."""
    await answer_query(update)
    holder = context.deps.kb_holder
    try:
        article_id = parse(update.callback_query.data if update.callback_query else None).arg(0)
    except CallbackDataError:
        article_id = ""
    article = holder.kb.get(article_id) if holder is not None else None
    if article is None:
        await reply(context, "kb_article_gone")
        return
    await send_article(context, article, None, via="suggestion")


async def on_feedback(update: Update, context: DeskContext) -> None:
    """``kf:<article_id>:<up|down>``: record the vote once per answer; offer a person if the
    article did not help."""
    query = update.callback_query
    assert query is not None
    try:
        callback = parse(query.data)
        article_id, vote = callback.arg(0), callback.arg(1)
    except CallbackDataError:
        await answer_query(update)
        return
    if vote not in (HELPFUL, NOT_HELPFUL) or context.customer_id is None:
        await answer_query(update)
        return
    helpful = vote == HELPFUL
    holder = context.deps.kb_holder
    article = holder.kb.get(article_id) if holder is not None else None
    chat_id = update.effective_chat.id if update.effective_chat else 0
    message_id = query.message.message_id if query.message else 0
    logged = await log_interaction(
        session=context.session,
        customer_id=context.customer_id,
        channel=Channel.telegram,
        direction=Direction.inbound,
        kind=InteractionKind.kb_feedback,
        details={
            "article_id": article_id,
            "title": article.title if article else None,
            "helpful": helpful,
            "message_id": message_id,
        },
        idempotency_key=f"tg:kbfb:{chat_id}:{message_id}",
    )
    if not logged.created:
        await answer_query(
            update, context.deps.texts.render_plain("kb_feedback_already", context.lang)
        )
        await drop_buttons(update)
        return
    await answer_query(update)
    await drop_buttons(update)
    if helpful:
        await reply(context, "kb_feedback_thanks")
    else:
        await reply(context, "kb_feedback_sorry", reply_markup=next_steps_keyboard(context))


def build_handlers(config: DeskConfig, texts: Texts) -> list[BaseHandler[Any, Any, Any]]:
    """Register after the other customer handlers: the text handler takes any plain text."""
    private_text = (
        filters.ChatType.PRIVATE & filters.UpdateType.MESSAGE & filters.TEXT & ~filters.COMMAND
    )
    return [
        CallbackQueryHandler(on_article, pattern=pattern(Prefix.KB_ARTICLE)),
        CallbackQueryHandler(on_feedback, pattern=pattern(Prefix.KB_FEEDBACK)),
        MessageHandler(private_text, on_text),
    ]
