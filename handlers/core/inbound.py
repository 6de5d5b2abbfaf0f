"""The edge every private-chat update passes first (``Group.INBOUND``).

For an update from a person in a private chat it
1. identifies the customer (creating them on first contact) and updates last-seen,
2. writes the inbound Interaction with idempotency key ``tg:<update_id>`` — before any handler
   runs, so the CRM keeps the message even if handling fails later,
3. stops a duplicate (Telegram redelivering an update already logged) with
   ``ApplicationHandlerStop``, so no handler runs twice,
4. puts the customer on the update scope: later handlers read ``context.customer`` /
   ``context.customer_id`` / ``context.lang`` without another query.

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

from crm_core.models import Channel, Direction, Interaction, InteractionKind
from crm_core.services.customers import identify_customer
from crm_core.services.interactions import log_interaction
from handlers.core.context import DeskContext, UpdateScope, current_scope

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
    assert user is not None
    scope = current_scope()
    resuming = False
    if await _already_recorded(scope, inbound_key(update.update_id)):
        # Checked before identifying: a redelivered update of a customer who has since been
        # erased (/forgetme) must not bring them back as a new customer.
        resuming = RESUMING_INTERRUPTED.get() and not await _answered(scope, update.update_id)
        if not resuming:
            raise ApplicationHandlerStop
    customer = await identify_customer(
        session=scope.session,
        channel=Channel.telegram,
        external_id=str(user.id),
        name=user.full_name,
        username=user.username,
        language=user.language_code,
    )
    scope.customer = customer
    scope.lang = customer.language or user.language_code
    kind, text, details = describe_inbound(update)
    logged = await log_interaction(
        session=scope.session,
        customer_id=customer.id,
        channel=Channel.telegram,
        direction=Direction.inbound,
        kind=kind,
        text=text,
        details=details,
        idempotency_key=inbound_key(update.update_id),
    )
    if not logged.created and not resuming:
        raise ApplicationHandlerStop


async def _already_recorded(scope: UpdateScope, key: str) -> bool:
    stmt = select(Interaction.id).where(Interaction.idempotency_key == key).limit(1)
    return (await scope.session.exec(stmt)).first() is not None


async def _answered(scope: UpdateScope, update_id: int) -> bool:
    """Whether anything was sent (and logged) while handling this update."""
    key = Interaction.idempotency_key
    stmt = select(Interaction.id).where(key.like(f"tg:{update_id}:%")).limit(1)  # type: ignore[union-attr]
    return (await scope.session.exec(stmt)).first() is not None


def build_handlers() -> list[BaseHandler[Any, Any, Any]]:
    """For ``Group.INBOUND``: the recorder sees every update before any other handler."""
    return [TypeHandler(Update, record_inbound)]
