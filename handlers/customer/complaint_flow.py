"""/complaint: a guided flow — category, description (photos and documents may be attached),
summary with submit / edit / cancel. Its steps are declared in :data:`STEPS` (what a message
does at each step) and the two button handlers (category, confirm).

State lives in the database (``handlers.core.flows``) and every save renews its TTL
(``config.flow_ttl``): a restart in the middle loses nothing, an abandoned flow expires (the
``sweep_expired_flows`` sweeper purges it).

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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler, MessageHandler, filters

from crm_core.models import ComplaintCategory, FlowState, Severity
from crm_core.services.complaints import MAX_ATTACHMENTS, MAX_DESCRIPTION_LENGTH, file_complaint
from crm_core.services.flows import purge_expired_flows
from crm_core.sla import SlaPolicy
from handlers.agents.announce import announce_complaint
from handlers.core.callbacks import CallbackDataError, MenuAction, Prefix, build, parse, pattern
from handlers.core.config import DeskConfig
from handlers.core.context import DeskContext
from handlers.core.flows import FlowName, end_flow, load_flow, save_step
from handlers.core.format import button_label, format_hours, format_when
from handlers.core.inbound import attachment_of
from handlers.core.keyboards import chunked
from handlers.core.send import answer_query, drop_buttons, reply
from handlers.core.texts import Texts
from handlers.customer.menu import menu_action_for_text, menu_button_filter

log = logging.getLogger(__name__)

STEP_CATEGORY = "category"
STEP_DESCRIPTION = "description"
STEP_CONFIRM = "confirm"
FILED_KEY_SUFFIX = ":filed"
STEP_DONE = "done"

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


def sla_policy(config: DeskConfig) -> SlaPolicy:
    return config.sla


def check_description(text: str | None) -> tuple[str | None, str | None]:
    """(cleaned description, None) or (None, template of the problem)."""
    cleaned = (text or "").strip()
    if not cleaned:
        return None, "complaint_description_empty"
    if len(cleaned) > MAX_DESCRIPTION_LENGTH:
        return None, "complaint_description_too_long"
    return cleaned, None


# --------------------------------------------------------------------------------------------
# State
# --------------------------------------------------------------------------------------------


async def store(update: Update, context: DeskContext, step: str, draft: ComplaintDraft) -> None:
    await save_step(update, context, FlowName.COMPLAINT, step, draft.to_data())


async def filed_marker(update: Update, context: DeskContext) -> FlowState | None:
    """What the last submit in this chat left behind (token and reference), if not expired."""
    return await load_flow(update, context, FlowName.COMPLAINT_FILED, suffix=FILED_KEY_SUFFIX)


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


async def remind_category(
    update: Update, context: DeskContext, message: Message, step: str, draft: ComplaintDraft
) -> None:
    """Step "category": a message before a category was picked asks for the category again."""
    await reply(
        context, "complaint_pick_category", reply_markup=category_keyboard(context, draft.token)
    )
    await store(update, context, STEP_CATEGORY, draft)  # still here: renew the TTL


async def take_description(
    update: Update, context: DeskContext, message: Message, step: str, draft: ComplaintDraft
) -> None:
    """Steps "description" and "confirm": text is the description (after the summary it is
    added to it), photos and documents are attached."""
    if draft.category is None:
        await remind_category(update, context, message, step, draft)
        return
    file_id = attachment_of(message)
    if file_id is not None:
        if len(draft.attachments) >= MAX_ATTACHMENTS:
            await reply(context, "complaint_too_many_files", limit=MAX_ATTACHMENTS)
            return
        draft.attachments.append(file_id)
    text = message.text if message.text is not None else message.caption
    if text is None:  # a file without caption: keep collecting
        await store(update, context, step, draft)
        if step == STEP_CONFIRM:
            await show_summary(update, context, draft)
        else:
            await reply(context, "complaint_file_added", attachments=len(draft.attachments))
        return
    appended = step == STEP_CONFIRM and bool(draft.description)
    if appended:
        # People write in several messages: a text after the summary adds to the description
        # (shown again in full, so nothing changes unseen; "Edit" replaces it).
        text = f"{draft.description}\n{text.strip()}"
    description, problem = check_description(text)
    if description is None:
        assert problem is not None
        await store(update, context, step, draft)  # keeps a file that came with it
        await reply(context, problem, length=len(text.strip()), limit=MAX_DESCRIPTION_LENGTH)
        return
    draft.description = description
    await store(update, context, STEP_CONFIRM, draft)
    await show_summary(update, context, draft, hint=appended)


Step = Callable[[Update, DeskContext, Message, str, ComplaintDraft], Awaitable[None]]

# What a message does at each step of the flow (the buttons are handled by on_category and
# on_confirm below).
STEPS: dict[str, Step] = {
    STEP_CATEGORY: remind_category,
    STEP_DESCRIPTION: take_description,
    STEP_CONFIRM: take_description,
}


def is_flow_content(context: DeskContext, message: Message) -> bool:
    """Text, photos and documents are the flow's; a menu button press is a new request, and
    other content (stickers, voice...) is answered as unsupported."""
    if message.text is not None:
        return menu_action_for_text(context.deps.texts, message.text) is None
    return attachment_of(message) is not None


async def take_message(update: Update, context: DeskContext, flow: FlowState) -> bool:
    """The flow dispatcher's step for this flow: True when the message was one of its steps."""
    message = update.effective_message
    step = STEPS.get(flow.step)
    if message is None or step is None or not is_flow_content(context, message):
        return False
    await step(update, context, message, flow.step, ComplaintDraft.from_data(flow.data))
    return True


async def on_category(update: Update, context: DeskContext) -> None:
    await answer_query(update)
    try:
        callback = parse(update.callback_query.data if update.callback_query else None)
        token, category = callback.arg(0), ComplaintCategory(callback.arg(1))
    except (CallbackDataError, ValueError):
        await reply(context, "flow_expired")
        return
    flow = await load_flow(update, context, FlowName.COMPLAINT)
    if flow is None or flow.step not in STEPS or flow.data.get("token") != token:
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
    flow = await load_flow(update, context, FlowName.COMPLAINT)
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
    if not await end_flow(update, context):
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
    await save_step(
        update,
        context,
        FlowName.COMPLAINT_FILED,
        STEP_DONE,
        {"token": draft.token, "reference": complaint.reference},
        suffix=FILED_KEY_SUFFIX,
    )
    await drop_buttons(update)
    hours = policy.hours_for(complaint.category, complaint.severity)
    await reply(
        context,
        "complaint_filed",
        reference=complaint.reference,
        sla=format_hours(hours),
        due=format_when(complaint.sla_due_at, config.zone),
        complaint_id=complaint.id,
    )
    await announce_complaint(context, complaint_id=complaint.id)


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
        MessageHandler(private & menu_button_filter(texts, MenuAction.COMPLAINT), start_complaint),
        CallbackQueryHandler(on_category, pattern=pattern(Prefix.COMPLAINT_CATEGORY)),
        CallbackQueryHandler(on_confirm, pattern=pattern(Prefix.COMPLAINT_CONFIRM)),
    ]
