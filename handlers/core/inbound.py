"""The edge every private-chat update passes first (``Group.INBOUND``).

For an update from a person in a private chat it
1. identifies the customer (creating them on first contact) and updates last-seen,
2. writes the inbound Interaction with idempotency key ``tg:<update_id>`` — before any handler
   runs, so the CRM keeps the message even if handling fails later,
3. stops a duplicate (Telegram redelivering an update already logged) with
   ``ApplicationHandlerStop``, so no handler runs twice,
4. puts the customer on the update scope: later handlers read ``context.customer`` /
   ``context.customer_id`` / ``context.lang`` without another query; and so the chat's flow
   and (with an agents' group) the customer's open handoff, for the flow dispatcher and the
   relay that run next.

All of it is one transaction (one commit): this runs for every message a customer sends.

Trade-off: an update logged and then crashed mid-handling is not retried on redelivery
(at-most-once handling, exactly-once logging); the error handler has apologised already.
Except when the process died mid-handling (the runtime sets :data:`RESUMING_INTERRUPTED`): if
nothing was sent for the update yet, it is handled again, so the customer still gets an answer.

Group chats (the agents' group) are not customers and pass through untouched.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from sqlmodel import select
from telegram import Message, Update
from telegram.constants import ChatType
from telegram.ext import ApplicationHandlerStop, BaseHandler, TypeHandler

from crm_core.models import Channel, Customer, Direction, Interaction, InteractionKind
from crm_core.services.customers import identify_sender_no_commit
from crm_core.services.flows import get_flow_no_commit
from crm_core.services.handoffs import get_open_handoff_no_commit
from crm_core.services.interactions import add_interaction_no_commit
from crm_core.services.transactions import unit_of_work
from handlers.core.context import DeskContext, UpdateScope, current_scope
from handlers.core.flows import chat_key

# True while the runtime handles an update again whose earlier attempt was cut off.
RESUMING_INTERRUPTED: ContextVar[bool] = ContextVar("deskbot_resuming_interrupted", default=False)


def inbound_key(update_id: int) -> str:
    return f"tg:{update_id}"


def _is_private_customer_update(update: Update) -> bool:
    chat, user = update.effective_chat, update.effective_user
    if chat is None or user is None:
        return False
    return chat.type == ChatType.PRIVATE and not user.is_bot


def message_content_type(message: Message) -> str:
    """A short name for what a message carries (text, photo, sticker, ...)."""
    for attr in (
        "text", "photo", "document", "sticker", "voice", "video", "video_note", "audio",
        "animation", "contact", "location", "venue", "poll", "dice",
    ):  # fmt: skip
        if getattr(message, attr, None):
            return attr
    return "other"


def attachment_of(message: Message) -> str | None:
    """The file id a message carries (largest photo size, or the document)."""
    if message.photo:
        return message.photo[-1].file_id
    if message.document is not None:
        return message.document.file_id
    return None


def describe_inbound(update: Update) -> tuple[InteractionKind, str | None, dict[str, Any]]:
    """Interaction kind, text and details for an inbound update."""
    details: dict[str, Any] = {"update_id": update.update_id}
    if update.effective_chat is not None:
        details["chat_id"] = update.effective_chat.id
    if update.callback_query is not None:
        query = update.callback_query
        details.update(type="callback", callback_data=query.data)
        if query.message is not None:
            details["message_id"] = query.message.message_id
        return InteractionKind.message, None, details
    message = update.effective_message
    if message is None:
        details["type"] = next(
            (name for name, value in update.to_dict().items() if name != "update_id" and value),
            "unknown",
        )
        return InteractionKind.system, None, details
    content = message_content_type(message)
    details.update(type="edited_message" if update.edited_message else "message")
    details.update(message_id=message.message_id, content=content)
    text = message.text or message.caption
    if message.contact is not None:
        text = message.contact.phone_number
    file_id = attachment_of(message)
    if file_id is not None:
        details["file_ids"] = [file_id]
    is_command = (message.text or "").startswith("/")
    kind = InteractionKind.command if is_command else InteractionKind.message
    return kind, text, details


async def record_inbound(update: Update, context: DeskContext) -> None:
    if not _is_private_customer_update(update):
        return
    user = update.effective_user
    chat = update.effective_chat
    assert user is not None and chat is not None
    scope = current_scope()
    key = inbound_key(update.update_id)
    kind, text, details = describe_inbound(update)
    # One transaction for the whole edge: the duplicate check, the customer, the inbound row,
    # the chat's flow and the open handoff (which the flow dispatcher and the relay read next).
    async with unit_of_work(scope.session):
        # None when the update was logged already: checked before identifying, so that a
        # redelivered update of a customer since erased (/forgetme) does not bring them back.
        customer = await identify_sender_no_commit(
            scope.session,
            channel=Channel.telegram,
            external_id=str(user.id),
            event_key=key,
            name=user.full_name,
            username=user.username,
            language=user.language_code,
        )
        duplicate = customer is None
        if customer is not None:
            logged = await add_interaction_no_commit(
                scope.session,
                customer_id=customer.id,
                channel=Channel.telegram,
                direction=Direction.inbound,
                kind=kind,
                text=text,
                details=details,
                idempotency_key=key,
            )
            duplicate = not logged.created
            if not duplicate:
                flow_key = chat_key(chat.id)
                scope.flows[flow_key] = await get_flow_no_commit(
                    scope.session, channel=Channel.telegram, chat_key=flow_key
                )
                if _may_be_relayed(update, context):
                    assert customer.id is not None
                    scope.open_handoff = await get_open_handoff_no_commit(
                        scope.session, customer.id
                    )
                    scope.open_handoff_known = True
    if duplicate or customer is None:
        # Logged already: a redelivery (stop), unless the runtime hands back an update whose
        # handling was cut off (a crash) before anything was sent for it: then it goes on.
        customer = await _resumed_customer(scope, update.update_id) if resuming() else None
        if customer is None:
            raise ApplicationHandlerStop
    scope.customer = customer
    scope.lang = customer.language or user.language_code


def _may_be_relayed(update: Update, context: DeskContext) -> bool:
    """A message the relay will look at (there is an agents' group to relay to)."""
    return context.deps.config.agent_chat_id is not None and update.callback_query is None


def resuming() -> bool:
    return RESUMING_INTERRUPTED.get()


async def _resumed_customer(scope: UpdateScope, update_id: int) -> Customer | None:
    """The customer of an interrupted update, when it may be handled again: logged before the
    crash, nothing sent for it since, and the customer not erased meanwhile (their record is
    never brought back)."""
    session = scope.session
    key = inbound_key(update_id)
    sent = Interaction.idempotency_key
    answered = select(Interaction.id).where(sent.like(f"{key}:%")).limit(1)  # type: ignore[union-attr]
    if (await session.exec(answered)).first() is not None:
        await session.commit()
        return None
    logged = (await session.exec(select(Interaction).where(sent == key))).first()
    customer = (
        await session.get(Customer, logged.customer_id) if logged and logged.customer_id else None
    )
    await session.commit()
    if customer is None or customer.anonymized_at is not None or customer.merged_into_id:
        return None
    return customer


def build_handlers() -> list[BaseHandler[Any, Any, Any]]:
    """For ``Group.INBOUND``: the recorder sees every update before any other handler."""
    return [TypeHandler(Update, record_inbound)]
