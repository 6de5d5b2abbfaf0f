"""The customer's own data: /mycomplaints (with each complaint's history), /mydata (everything
we hold, as a JSON file) and /forgetme (erase it, after a confirmation).

History visibility: a complaint event's note is shown only when the desk logged it as reaching
the customer — the customer's own words, status changes an agent made (the customer is told of
those) and agent comments marked visible. Internal agent comments and who was assigned are
never shown.

Forgetting and this very update: the inbound Interaction of the "yes" press was written before
the handler ran, so ``forget_customer`` wipes it with the rest. Afterwards we must not tie the
Telegram account to the erased record again, so the confirmation is sent *without* an outbound
Interaction (that would store the chat id on the anonymised customer), and the scope forgets the
customer. The erased update keeps its idempotency key on an anonymous row (no customer, no
text), and the inbound recorder checks that key *before* identifying the sender, so a
redelivery of the "yes" is dropped instead of re-creating the person as a new customer. The
next genuinely new message does start a new customer (``forget_customer`` deleted the channel
identity): that is what the customer asked for, and the confirmation says so.
"""

from __future__ import annotations

import json
from datetime import tzinfo
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ParseMode
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler, MessageHandler, filters

from crm_core.models import (
    ActorType,
    Channel,
    Complaint,
    ComplaintEvent,
    Direction,
    Interaction,
    InteractionKind,
)
from crm_core.services.complaints import complaint_history, list_customer_complaints
from crm_core.services.interactions import log_interaction, recent_interactions
from crm_core.services.privacy import export_customer_data, forget_customer
from handlers.agents.live_cards import erase_from_group
from handlers.core.callbacks import CallbackDataError, MenuAction, Prefix, build, parse, pattern
from handlers.core.config import DeskConfig
from handlers.core.context import DeskContext
from handlers.core.format import button_label, format_when, status_label
from handlers.core.inbound import inbound_key
from handlers.core.keyboards import inline_button
from handlers.core.send import (
    Priority,
    answer_query,
    drop_buttons,
    plain_text,
    reply,
    send_file,
)
from handlers.core.texts import Texts
from handlers.customer.menu import menu_button_filter

MAX_LISTED_COMPLAINTS = 10
EXPORT_FILENAME = "deskbot-my-data.json"
YES, NO = "yes", "no"
# Events a customer may see, and which of them may show their note.
SHOWN_ACTIONS = frozenset({"filed", "assigned", "status_changed", "comment"})
NOTE_ACTIONS = frozenset({"status_changed", "comment"})
HISTORY_SCAN_LIMIT = 1000


# --------------------------------------------------------------------------------------------
# /mycomplaints
# --------------------------------------------------------------------------------------------


async def my_complaints(update: Update, context: DeskContext) -> None:
    customer_id = context.customer_id
    assert customer_id is not None
    complaints = await list_customer_complaints(session=context.session, customer_id=customer_id)
    if not complaints:
        await reply(context, "mycomplaints_none")
        return
    shown = complaints[:MAX_LISTED_COMPLAINTS]
    rows = [
        {
            "reference": c.reference,
            "category": c.category.value,
            "status": status_label(c.status),
            "changed": format_when(c.updated_at, context.deps.config.zone),
        }
        for c in shown
    ]
    buttons = [
        [
            InlineKeyboardButton(
                button_label(
                    context.deps.texts.render_plain(
                        "complaint_view_label",
                        context.lang,
                        reference=c.reference,
                        status=status_label(c.status),
                    )
                ),
                callback_data=build(Prefix.COMPLAINT_VIEW, c.id),
            )
        ]
        for c in shown
    ]
    await reply(
        context,
        "mycomplaints_list",
        complaints=rows,
        more=len(complaints) - len(shown),
        reply_markup=InlineKeyboardMarkup(buttons),
    )


def visible_notes(interactions: list[Interaction], complaint_id: int) -> set[tuple[str, str]]:
    """(action, note) pairs the desk logged as seen by the customer for this complaint."""
    seen: set[tuple[str, str]] = set()
    for row in interactions:
        if row.complaint_id != complaint_id or row.direction == Direction.internal:
            continue
        action, note = row.details.get("action"), row.details.get("note")
        if isinstance(action, str) and isinstance(note, str):
            seen.add((action, note))
    return seen


def history_lines(
    events: list[ComplaintEvent], shown_notes: set[tuple[str, str]], zone: tzinfo | None = None
) -> list[dict[str, Any]]:
    """The events a customer may see, each with the note only if it reached them."""
    lines = []
    for event in events:
        if event.action not in SHOWN_ACTIONS:
            continue
        note = event.note if event.action in NOTE_ACTIONS else None
        own = event.actor_type == ActorType.customer
        if note is not None and not own and (event.action, note) not in shown_notes:
            note = None
        if event.action == "comment" and note is None:
            continue  # an internal comment: not even that it exists
        lines.append(
            {
                "when": format_when(event.created_at, zone),
                "action": event.action,
                "actor": str(event.actor_type),
                "to_status": status_label(event.to_status) if event.to_status else None,
                "note": note,
            }
        )
    return lines


async def view_complaint(update: Update, context: DeskContext) -> None:
    """``cv:<complaint_id>``: one complaint's history — only for its own customer."""
    await answer_query(update)
    query = update.callback_query
    try:
        complaint_id = parse(query.data if query else None).int_arg(0)
    except CallbackDataError:
        complaint_id = 0
    complaint = await context.session.get(Complaint, complaint_id, populate_existing=True)
    customer_id = context.customer_id
    if complaint is None or customer_id is None or complaint.customer_id != customer_id:
        await reply(context, "complaint_not_yours")
        return
    events = await complaint_history(session=context.session, reference=complaint.reference)
    interactions = await recent_interactions(
        session=context.session,
        customer_id=customer_id,
        limit=HISTORY_SCAN_LIMIT,
        kinds=[InteractionKind.complaint_event],
    )
    assert complaint.id is not None
    await reply(
        context,
        "complaint_history",
        reference=complaint.reference,
        category=complaint.category.value,
        status=status_label(complaint.status),
        description=complaint.description,
        attachments=len(complaint.attachments),
        events=history_lines(
            events, visible_notes(interactions, complaint.id), context.deps.config.zone
        ),
        complaint_id=complaint.id,
    )


# --------------------------------------------------------------------------------------------
# /mydata
# --------------------------------------------------------------------------------------------


async def my_data(update: Update, context: DeskContext) -> None:
    customer_id = context.customer_id
    chat = update.effective_chat
    assert customer_id is not None and chat is not None
    data = await export_customer_data(session=context.session, customer_id=customer_id)
    payload = json.dumps(data, ensure_ascii=False, indent=2).encode()
    caption = context.deps.texts.render("mydata_caption", context.lang)
    scope = context.scope
    message_ids = await send_file(
        context,
        "send_document",
        priority=Priority.CUSTOMER,
        customer_id=customer_id,
        chat_id=chat.id,
        document=payload,
        filename=EXPORT_FILENAME,
        caption=caption,
        parse_mode=ParseMode.HTML.value,
    )
    await log_interaction(
        session=context.session,
        customer_id=customer_id,
        channel=Channel.telegram,
        direction=Direction.outbound,
        kind=InteractionKind.message,
        text=plain_text(caption),
        details={
            "chat_id": chat.id,
            "message_ids": message_ids,  # none yet when it waits in the outbox
            "template": "mydata_caption",
            "document": EXPORT_FILENAME,
            "bytes": len(payload),
        },
        idempotency_key=scope.next_outbound_key(),
    )


# --------------------------------------------------------------------------------------------
# /forgetme
# --------------------------------------------------------------------------------------------


async def forget_me(update: Update, context: DeskContext) -> None:
    customer_id = context.customer_id
    assert customer_id is not None
    yes = inline_button(context, "forget_yes", build(Prefix.CONFIRM_FORGET, YES, customer_id))
    no = inline_button(context, "forget_no", build(Prefix.CONFIRM_FORGET, NO, customer_id))
    keyboard = InlineKeyboardMarkup([[yes, no]])
    await reply(context, "forget_confirm", reply_markup=keyboard)


async def on_forget_choice(update: Update, context: DeskContext) -> None:
    """``fg:<yes|no>:<customer_id>``; a button of another (already erased) record is stale."""
    await answer_query(update)
    chat = update.effective_chat
    assert chat is not None
    try:
        callback = parse(update.callback_query.data if update.callback_query else None)
        choice, target = callback.arg(0), callback.int_arg(1)
    except CallbackDataError:
        choice, target = "", -1
    await drop_buttons(update)
    customer_id = context.customer_id
    if customer_id is None or target != customer_id or choice not in (YES, NO):
        await reply(context, "flow_expired")
        return
    if choice == NO:
        await reply(context, "forget_kept")
        return
    await forget_customer(session=context.session, customer_id=customer_id)
    await erase_from_group(context, customer_id)
    # Keep the update's key (see the module docstring), on a row that names nobody.
    if update.update_id is not None:
        await log_interaction(
            session=context.session,
            customer_id=None,
            channel=Channel.telegram,
            direction=Direction.inbound,
            kind=InteractionKind.system,
            details={"event": "erased_update"},
            idempotency_key=inbound_key(update.update_id),
        )
    context.scope.customer = None  # nothing after this may log onto the erased record
    await reply(context, "forget_done", chat_id=chat.id)


def build_handlers(config: DeskConfig, texts: Texts) -> list[BaseHandler[Any, Any, Any]]:
    # New messages only: an edited old message must not act again.
    private = filters.ChatType.PRIVATE & filters.UpdateType.MESSAGE
    return [
        CommandHandler("mycomplaints", my_complaints, filters=private),
        MessageHandler(
            private & menu_button_filter(texts, MenuAction.MY_COMPLAINTS), my_complaints
        ),
        CallbackQueryHandler(view_complaint, pattern=pattern(Prefix.COMPLAINT_VIEW)),
        CommandHandler("mydata", my_data, filters=private),
        CommandHandler("forgetme", forget_me, filters=private),
        CallbackQueryHandler(on_forget_choice, pattern=pattern(Prefix.CONFIRM_FORGET)),
    ]
