"""/complaint: a guided flow — category, description (photos and documents may be attached),
summary with submit / edit / cancel — and /cancel, which leaves any flow.

State lives in the database (``crm_core.services.flows``, key ``("telegram", str(chat_id))``)
and every save renews its TTL (``config.flow_ttl``): a restart in the middle loses nothing, an
abandoned flow expires (the ``sweep_expired_flows`` sweeper purges it).

Every button of a flow carries the flow's random ``token``, so a button of an older flow (one
that was cancelled, filed or expired) is recognised as stale and answered with "this has
expired, start again" instead of acting on whatever flow is current.

A submit ends the flow and leaves a small marker under a separate key (``<chat>:filed``, flow
``complaint_filed``, same TTL) remembering the token and the reference: a second press of
"Submit" (double tap, or the same button pressed again later) names the complaint already filed
instead of filing it twice. The marker is not the chat's flow, so nothing else (the handoff
relay, the knowledge base) thinks a flow is still going on. Updates of one chat are handled one
after the other (``bot.app.PerChatUpdateProcessor``), so two presses never race in one instance.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler, MessageHandler, filters

from crm_core.models import Channel, ComplaintCategory, FlowState, Severity
from crm_core.services.complaints import MAX_ATTACHMENTS, MAX_DESCRIPTION_LENGTH, file_complaint
from crm_core.services.flows import clear_flow, get_flow, purge_expired_flows, save_flow
from crm_core.sla import SlaPolicy
from handlers import announce, customer_handoff
from handlers.basic import menu_button_filter, unsupported_content
from handlers.callbacks import CallbackDataError, MenuAction, Prefix, build, parse, pattern
from handlers.config import DeskConfig
from handlers.customer_common import (
    answer_query,
    button_label,
    drop_buttons,
    format_hours,
    format_when,
)
from handlers.deps import DeskContext
from handlers.messaging import chunked, reply
from handlers.texts import Texts

log = logging.getLogger(__name__)

FLOW_NAME = "complaint"
STEP_CATEGORY = "category"
STEP_DESCRIPTION = "description"
STEP_CONFIRM = "confirm"
FILED_FLOW_NAME = "complaint_filed"
FILED_KEY_SUFFIX = ":filed"
STEP_DONE = "done"
ACTIVE_STEPS = frozenset({STEP_CATEGORY, STEP_DESCRIPTION, STEP_CONFIRM})

SUBMIT, EDIT, CANCEL = "submit", "edit", "cancel"


@dataclass
class ComplaintDraft:
    """What the flow has collected so far (the ``data`` of its FlowState)."""

    token: str
    category: str | None = None
    description: str | None = None
    attachments: list[str] = field(default_factory=list)
    reference: str | None = None  # set once filed (step "done")

    @classmethod
    def new(cls) -> ComplaintDraft:
        return cls(token=secrets.token_hex(4))

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> ComplaintDraft:
        return cls(
            token=str(data.get("token") or ""),
            category=data.get("category"),
            description=data.get("description"),
            attachments=[str(a) for a in data.get("attachments") or []],
            reference=data.get("reference"),
        )

    def to_data(self) -> dict[str, Any]:
        return {
            "token": self.token,
            "category": self.category,
            "description": self.description,
            "attachments": list(self.attachments),
            "reference": self.reference,
        }


def chat_key(update: Update) -> str:
    chat = update.effective_chat
    assert chat is not None
    return str(chat.id)


def sla_policy(config: DeskConfig) -> SlaPolicy:
    return SlaPolicy.from_mapping(config.sla_hours)


def check_description(text: str | None) -> tuple[str | None, str | None]:
    """(cleaned description, None) or (None, template of the problem)."""
    cleaned = (text or "").strip()
    if not cleaned:
        return None, "complaint_description_empty"
    if len(cleaned) > MAX_DESCRIPTION_LENGTH:
        return None, "complaint_description_too_long"
    return cleaned, None


def attachment_of(message: Message) -> str | None:
    """The file id a message carries (largest photo size, or the document)."""
    if message.photo:
        return message.photo[-1].file_id
    if message.document is not None:
        return message.document.file_id
    return None


# --------------------------------------------------------------------------------------------
# State
# --------------------------------------------------------------------------------------------


async def load_flow(update: Update, context: DeskContext) -> FlowState | None:
    """The chat's complaint flow in progress, or None."""
    flow = await get_flow(
        session=context.session, channel=Channel.telegram, chat_key=chat_key(update)
    )
    if flow is None or flow.flow != FLOW_NAME:
        return None
    return flow


async def store(update: Update, context: DeskContext, step: str, draft: ComplaintDraft) -> None:
    await save_flow(
        session=context.session,
        channel=Channel.telegram,
        chat_key=chat_key(update),
        customer_id=context.customer_id,
        flow=FLOW_NAME,
        step=step,
        data=draft.to_data(),
        ttl=context.deps.config.flow_ttl,
    )


async def filed_marker(update: Update, context: DeskContext) -> FlowState | None:
    """What the last submit in this chat left behind (token and reference), if not expired."""
    marker = await get_flow(
        session=context.session,
        channel=Channel.telegram,
        chat_key=chat_key(update) + FILED_KEY_SUFFIX,
    )
    return marker if marker is not None and marker.flow == FILED_FLOW_NAME else None


async def end_flow(update: Update, context: DeskContext) -> None:
    await clear_flow(session=context.session, channel=Channel.telegram, chat_key=chat_key(update))


# --------------------------------------------------------------------------------------------
# Keyboards
# --------------------------------------------------------------------------------------------


def category_label(texts: Texts, category: str, lang: str | None) -> str:
    return texts.render_plain("complaint_category_label", lang, category=category)


def category_keyboard(context: DeskContext, token: str) -> InlineKeyboardMarkup:
    texts, lang = context.deps.texts, context.lang
    buttons = [
        InlineKeyboardButton(
            button_label(category_label(texts, c.value, lang)),
            callback_data=build(Prefix.COMPLAINT_CATEGORY, token, c.value),
        )
        for c in ComplaintCategory
    ]
    rows = chunked(buttons, 2)
    rows.append([_confirm_button(context, token, CANCEL)])
    return InlineKeyboardMarkup(rows)


def _confirm_button(context: DeskContext, token: str, action: str) -> InlineKeyboardButton:
    label = context.deps.texts.render_plain(f"buttons/complaint_{action}", context.lang)
    return InlineKeyboardButton(
        button_label(label), callback_data=build(Prefix.COMPLAINT_CONFIRM, token, action)
    )


def summary_keyboard(context: DeskContext, token: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [
            [_confirm_button(context, token, SUBMIT)],
            [_confirm_button(context, token, EDIT), _confirm_button(context, token, CANCEL)],
        ]
    )


# --------------------------------------------------------------------------------------------
# Steps
# --------------------------------------------------------------------------------------------


async def start_complaint(update: Update, context: DeskContext) -> None:
    """/complaint, the menu button or the "file a complaint" offer: (re)start the flow."""
    await answer_query(update)
    draft = ComplaintDraft.new()
    await store(update, context, STEP_CATEGORY, draft)
    await reply(
        context, "complaint_choose_category", reply_markup=category_keyboard(context, draft.token)
    )


async def ask_description(update: Update, context: DeskContext, draft: ComplaintDraft) -> None:
    assert draft.category is not None
    await reply(
        context,
        "complaint_describe",
        category=category_label(context.deps.texts, draft.category, context.lang),
        attachments=len(draft.attachments),
        editing=draft.description is not None,
    )


async def show_summary(
    update: Update, context: DeskContext, draft: ComplaintDraft, *, hint: bool = False
) -> None:
    assert draft.category is not None
    await reply(
        context,
        "complaint_summary",
        category=category_label(context.deps.texts, draft.category, context.lang),
        description=draft.description or "",
        attachments=len(draft.attachments),
        hint=hint,
        reply_markup=summary_keyboard(context, draft.token),
    )


async def take_message(update: Update, context: DeskContext) -> bool:
    """Handle a private message (text, photo, document) as a step of the complaint flow.

    Returns False when no complaint flow is active, so the caller answers it otherwise
    (knowledge base, or "please write text")."""
    message = update.effective_message
    if message is None:
        return False
    flow = await load_flow(update, context)
    if flow is None or flow.step not in ACTIVE_STEPS:
        return False
    draft = ComplaintDraft.from_data(flow.data)
    if flow.step == STEP_CATEGORY or draft.category is None:
        await reply(
            context,
            "complaint_pick_category",
            reply_markup=category_keyboard(context, draft.token),
        )
        await store(update, context, STEP_CATEGORY, draft)  # still here: renew the TTL
        return True
    file_id = attachment_of(message)
    if file_id is not None:
        if len(draft.attachments) >= MAX_ATTACHMENTS:
            await reply(context, "complaint_too_many_files", limit=MAX_ATTACHMENTS)
            return True
        draft.attachments.append(file_id)
    text = message.text if message.text is not None else message.caption
    if text is None:  # a file without caption: keep collecting
        step = flow.step
        await store(update, context, step, draft)
        if step == STEP_CONFIRM:
            await show_summary(update, context, draft)
        else:
            await reply(context, "complaint_file_added", attachments=len(draft.attachments))
        return True
    appended = flow.step == STEP_CONFIRM and bool(draft.description)
    if appended:
        # People write in several messages: a text after the summary adds to the description
        # (shown again in full, so nothing changes unseen; "Edit" replaces it).
        text = f"{draft.description}\n{text.strip()}"
    description, problem = check_description(text)
    if description is None:
        assert problem is not None
        await store(update, context, flow.step, draft)  # keeps a file that came with it
        await reply(context, problem, length=len(text.strip()), limit=MAX_DESCRIPTION_LENGTH)
        return True
    draft.description = description
    await store(update, context, STEP_CONFIRM, draft)
    await show_summary(update, context, draft, hint=appended)
    return True


async def on_category(update: Update, context: DeskContext) -> None:
    await answer_query(update)
    try:
        callback = parse(update.callback_query.data if update.callback_query else None)
        token, category = callback.arg(0), ComplaintCategory(callback.arg(1))
    except (CallbackDataError, ValueError):
        await reply(context, "flow_expired")
        return
    flow = await load_flow(update, context)
    if flow is None or flow.step not in ACTIVE_STEPS or flow.data.get("token") != token:
        await drop_buttons(update)
        await reply(context, "flow_expired")
        return
    draft = ComplaintDraft.from_data(flow.data)
    draft.category = category.value
    await drop_buttons(update)
    if draft.description:  # changing the category of a written complaint
        await store(update, context, STEP_CONFIRM, draft)
        await show_summary(update, context, draft)
        return
    await store(update, context, STEP_DESCRIPTION, draft)
    await ask_description(update, context, draft)


async def on_confirm(update: Update, context: DeskContext) -> None:
    await answer_query(update)
    try:
        callback = parse(update.callback_query.data if update.callback_query else None)
        token, action = callback.arg(0), callback.arg(1)
    except CallbackDataError:
        await reply(context, "flow_expired")
        return
    flow = await load_flow(update, context)
    if flow is None or flow.data.get("token") != token:
        await drop_buttons(update)
        marker = await filed_marker(update, context)
        if marker is not None and marker.data.get("token") == token:
            reference = str(marker.data.get("reference") or "")
            await reply(context, "complaint_already_filed", reference=reference)
        else:
            await reply(context, "flow_expired")
        return
    draft = ComplaintDraft.from_data(flow.data)
    if action == CANCEL:
        await end_flow(update, context)
        await drop_buttons(update)
        await reply(context, "complaint_cancelled")
    elif action == EDIT:
        await drop_buttons(update)
        await store(update, context, STEP_DESCRIPTION, draft)
        await reply(
            context,
            "complaint_edit",
            description=draft.description or "",
            reply_markup=category_keyboard(context, draft.token),
        )
    elif action == SUBMIT and flow.step == STEP_CONFIRM and draft.description:
        await submit(update, context, draft)
    else:
        await reply(context, "flow_expired")


async def submit(update: Update, context: DeskContext, draft: ComplaintDraft) -> None:
    assert draft.category is not None and draft.description is not None
    customer_id = context.customer_id
    assert customer_id is not None
    config = context.deps.config
    policy = sla_policy(config)
    if not await clear_flow(
        session=context.session, channel=Channel.telegram, chat_key=chat_key(update)
    ):
        # Another bot instance took this very draft a moment ago (a double tap served by two
        # instances); it files the complaint and answers. Filing here too would make two.
        await drop_buttons(update)
        return
    try:
        complaint = await file_complaint(
            session=context.session,
            customer_id=customer_id,
            category=draft.category,
            description=draft.description,
            severity=Severity.medium,
            attachments=draft.attachments,
            sla=policy,
        )
    except Exception:
        await store(update, context, STEP_CONFIRM, draft)  # keep the draft: Submit works again
        raise
    assert complaint.id is not None
    draft.reference = complaint.reference
    await save_flow(
        session=context.session,
        channel=Channel.telegram,
        chat_key=chat_key(update) + FILED_KEY_SUFFIX,
        customer_id=customer_id,
        flow=FILED_FLOW_NAME,
        step=STEP_DONE,
        data={"token": draft.token, "reference": complaint.reference},
        ttl=config.flow_ttl,
    )
    await drop_buttons(update)
    hours = policy.hours_for(complaint.category, complaint.severity)
    await reply(
        context,
        "complaint_filed",
        reference=complaint.reference,
        sla=format_hours(hours),
        due=format_when(complaint.sla_due_at),
        complaint_id=complaint.id,
    )
    await announce.announce_complaint(context, complaint_id=complaint.id)


async def cancel(update: Update, context: DeskContext) -> None:
    """/cancel: leave whatever flow is in progress."""
    flow = await get_flow(
        session=context.session, channel=Channel.telegram, chat_key=chat_key(update)
    )
    if flow is None:
        if not await customer_handoff.withdraw_request(context):
            await reply(context, "cancel_nothing")
        return
    await end_flow(update, context)
    await reply(context, "complaint_cancelled" if flow.flow == FLOW_NAME else "flow_cancelled")


async def on_flow_media(update: Update, context: DeskContext) -> None:
    """A photo or document outside a flow: nothing to attach it to."""
    if await take_message(update, context):
        return
    await unsupported_content(update, context)


async def sweep_expired_flows(context: DeskContext) -> None:
    """Sweeper: delete abandoned flows (their TTL passed)."""
    purged = await purge_expired_flows(session=context.session)
    if purged:
        log.info("purged %d expired conversation flow(s)", purged)


def build_handlers(config: DeskConfig, texts: Texts) -> list[BaseHandler[Any, Any, Any]]:
    # New messages only: editing an old "/complaint" must not start anything again.
    private = filters.ChatType.PRIVATE & filters.UpdateType.MESSAGE
    return [
        CommandHandler("complaint", start_complaint, filters=private),
        CommandHandler("cancel", cancel, filters=private),
        MessageHandler(private & menu_button_filter(texts, MenuAction.COMPLAINT), start_complaint),
        CallbackQueryHandler(on_category, pattern=pattern(Prefix.COMPLAINT_CATEGORY)),
        CallbackQueryHandler(on_confirm, pattern=pattern(Prefix.COMPLAINT_CONFIRM)),
        MessageHandler(private & (filters.PHOTO | filters.Document.ALL), on_flow_media),
    ]
