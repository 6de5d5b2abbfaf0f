"""Who is writing: "share my phone" (Telegram's contact-request button) and ``/email``.

A shared contact is accepted only when it is the sender's own (``contact.user_id`` equals the
sender): Telegram vouches for that number, so it is linked as *verified* and a CRM customer
already holding it (e.g. imported from the shop) is merged into this one. Anybody else's
contact card is refused politely. ``/email`` records an address (validated, not verified).

An unverified address never merges: typing a shop customer's e-mail must not hand their record
(phone, purchases, complaints) to whoever knows it — ``/mydata`` would export it. When another
record holds the address, the customer is asked to share their phone instead (verified).
"""

from __future__ import annotations

from typing import Any

from sqlmodel import col, select
from telegram import Update
from telegram.ext import BaseHandler, CommandHandler, MessageHandler, filters

from crm_core.errors import InvalidEmail, InvalidPhone
from crm_core.models import Customer
from crm_core.normalize import normalize_email
from crm_core.services.customers import link_email, link_phone
from handlers.agents.live_cards import refresh_handoff_card
from handlers.core.callbacks import MenuAction
from handlers.core.config import DeskConfig
from handlers.core.context import DeskContext
from handlers.core.send import reply
from handlers.core.texts import Texts
from handlers.customer.menu import menu_button_filter, menu_keyboard


def mask_phone(phone: str) -> str:
    """``+4915112345678`` -> ``+49 ••• •••• 78``: enough to recognise, not to read out."""
    if len(phone) <= 6:
        return "•" * len(phone)
    return f"{phone[:3]} ••• •••• {phone[-2:]}"


def contact_phone(raw: str) -> str:
    """Telegram gives a shared contact's number in international format but usually without
    the leading ``+`` (``"4915112345678"``): add it, so no default region is guessed."""
    text = raw.strip()
    digits = text.replace(" ", "")
    if digits.isdigit():
        return "+" + digits
    return text


async def on_contact(update: Update, context: DeskContext) -> None:
    message, user = update.effective_message, update.effective_user
    assert message is not None and message.contact is not None and user is not None
    contact = message.contact
    keyboard = menu_keyboard(context.deps.texts, context.lang)
    if contact.user_id != user.id:
        await reply(context, "contact_not_own", reply_markup=keyboard)
        return
    customer_id = context.customer_id
    assert customer_id is not None
    try:
        result = await link_phone(
            session=context.session,
            customer_id=customer_id,
            phone=contact_phone(contact.phone_number),
            verified=True,
            default_region=context.deps.config.default_phone_region,
        )
    except InvalidPhone as error:
        await reply(context, "contact_invalid", message=str(error), reply_markup=keyboard)
        return
    assert result.customer.id is not None
    await refresh_handoff_card(context, result.customer.id)  # the agents see who this is now
    await reply(
        context,
        "contact_linked",
        phone=mask_phone(result.value),
        merged=bool(result.merged_customer_ids),
        reply_markup=keyboard,
        details={"merged_customer_ids": result.merged_customer_ids},
    )


async def share_phone_prompt(update: Update, context: DeskContext) -> None:
    """The "share my phone" label arrived as text (or the inline menu asked): explain, and show
    the keyboard whose button shares the contact."""
    await reply(
        context, "contact_prompt", reply_markup=menu_keyboard(context.deps.texts, context.lang)
    )


async def email_command(update: Update, context: DeskContext) -> None:
    address = " ".join(context.args or []).strip()
    if not address:
        await reply(context, "email_usage")
        return
    customer_id = context.customer_id
    assert customer_id is not None
    try:
        if await email_held_by_another(context, normalize_email(address), customer_id):
            keyboard = menu_keyboard(context.deps.texts, context.lang)
            await reply(context, "email_in_use", reply_markup=keyboard)
            return
        result = await link_email(
            session=context.session, customer_id=customer_id, email=address, verified=False
        )
    except InvalidEmail as error:
        await reply(context, "email_invalid", message=str(error))
        return
    await reply(
        context,
        "email_linked",
        email=result.value,
        merged=bool(result.merged_customer_ids),
        details={"merged_customer_ids": result.merged_customer_ids},
    )


async def email_held_by_another(context: DeskContext, email: str, customer_id: int) -> bool:
    stmt = (
        select(Customer.id)
        .where(Customer.email == email, col(Customer.id) != customer_id)
        .where(col(Customer.merged_into_id).is_(None))
        .limit(1)
    )
    return (await context.session.exec(stmt)).first() is not None


def build_handlers(config: DeskConfig, texts: Texts) -> list[BaseHandler[Any, Any, Any]]:
    # New messages only: an edited old message must not act again.
    private = filters.ChatType.PRIVATE & filters.UpdateType.MESSAGE
    return [
        MessageHandler(private & filters.CONTACT, on_contact),
        CommandHandler("email", email_command, filters=private),
        MessageHandler(
            private & menu_button_filter(texts, MenuAction.SHARE_PHONE), share_phone_prompt
        ),
    ]
