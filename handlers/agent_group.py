"""The agents' group: claiming handoffs, talking to customers, notes, resolving, complaints.

Every action checks that the person is a member of the group (``handlers.membership``); a
non-member is refused and nothing changes. Commands work in a handoff's forum topic, or as a
reply to any bot message of the handoff in a plain group:

- ``✋ Claim`` (button on the card): the first agent owns the handoff; later presses are told
  who has it (an alert).
- any other message: sent to the customer (see ``handlers.relay``); ``/note text`` or ``!text``:
  internal note.
- ``/resolve [summary]``: close the handoff (and its topic), ask the customer for a rating.
- ``/status <reference> <in_progress|resolved|closed> [note]``, ``/assign <reference>`` and the
  buttons on a complaint's card; ``/customer <query>``: the 360° view; ``/queue``.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from telegram import (
    Bot,
    BotCommand,
    BotCommandScopeChat,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    Update,
)
from telegram.constants import ChatMemberStatus
from telegram.error import ChatMigrated, Forbidden, TelegramError
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler, MessageHandler, filters

from crm_core.errors import DomainError
from crm_core.models import (
    ActorType,
    Agent,
    Complaint,
    ComplaintStatus,
    Customer,
    Handoff,
    HandoffStatus,
    InteractionKind,
)
from crm_core.services.complaints import (
    assign_complaint,
    comment_complaint,
    get_complaint,
    set_complaint_severity,
    transition_complaint,
)
from crm_core.services.customers import find_customers
from crm_core.services.handoffs import (
    claim_handoff,
    close_handoff,
    find_by_group_message,
    get_handoff,
)
from crm_core.sla import SlaPolicy
from handlers import csat, queue, relay
from handlers.announce import (
    ComplaintSubject,
    HandoffSubject,
    Place,
    post_html,
    release,
    send_html_to,
)
from handlers.callbacks import CallbackDataError, Prefix, build, parse, pattern
from handlers.context_card import customer_card_html, customer_chat_id
from handlers.customer_common import format_when
from handlers.deps import DeskContext
from handlers.membership import acting_agent, agent_chat_id, follow_migration, in_agent_chat
from handlers.messaging import deliver, reply
from handlers.texts import Texts
from handlers.updates import message_content_type

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# Claiming
# --------------------------------------------------------------------------------------------


async def on_claim(update: Update, context: DeskContext) -> None:
    query = update.callback_query
    assert query is not None
    agent = await acting_agent(update, context)
    if agent is None or agent.id is None:
        return
    try:
        handoff_id = parse(query.data).int_arg(0)
        before = await get_handoff(session=context.session, handoff_id=handoff_id)
        # Read now: the claim below refreshes this very object.
        was_claimed = before.status == HandoffStatus.claimed
        handoff = await claim_handoff(
            session=context.session, handoff_id=handoff_id, agent_id=agent.id
        )
    except (DomainError, CallbackDataError) as error:
        text = str(error) if isinstance(error, DomainError) else "This button is out of date."
        with contextlib.suppress(TelegramError):
            await query.answer(text, show_alert=True)
        return
    if was_claimed:  # pressed again by its owner: nothing new
        with contextlib.suppress(TelegramError):
            await query.answer(
                context.deps.texts.render_plain("agent_claimed_already", context.lang)
            )
        return
    with contextlib.suppress(TelegramError):
        await query.answer()
    await show_claimed(context, handoff, agent, tell_customer=True)
    # A reminder's button was pressed: it shows the owner too.
    pressed = query.message
    if pressed is not None and pressed.message_id != handoff.card_message_id:
        with contextlib.suppress(TelegramError):
            await query.edit_message_reply_markup(reply_markup=claimed_markup(context, agent))


async def on_noop(update: Update, context: DeskContext) -> None:
    """A label button (e.g. "Sam is on it"): just stop the spinner."""
    if update.callback_query is not None:
        with contextlib.suppress(TelegramError):
            await update.callback_query.answer()


def label_markup(context: DeskContext, template: str, **values: Any) -> InlineKeyboardMarkup:
    """A keyboard whose only button is a label (pressing it does nothing)."""
    label = context.deps.texts.render_plain(
        template, context.deps.config.default_language, **values
    )
    return InlineKeyboardMarkup([[InlineKeyboardButton(label, callback_data=build(Prefix.NOOP))]])


def claimed_markup(context: DeskContext, agent: Agent) -> InlineKeyboardMarkup:
    return label_markup(context, "agent_claimed_button", name=agent.display_name)


async def relabel_card(
    context: DeskContext, handoff: Handoff, template: str, **values: Any
) -> None:
    """Show the handoff's state on its card's button (best effort: the card may be gone)."""
    if handoff.chat_id is None or handoff.card_message_id is None:
        return
    await release(context)
    try:
        await context.bot.edit_message_reply_markup(
            chat_id=handoff.chat_id,
            message_id=handoff.card_message_id,
            reply_markup=label_markup(context, template, **values),
        )
    except TelegramError as error:
        log.info("could not relabel the card of handoff %s: %s", handoff.id, error)


async def show_claimed(
    context: DeskContext, handoff: Handoff, agent: Agent, *, tell_customer: bool
) -> None:
    """The card now names the owner (its button becomes a label); the topic hears it, and the
    customer learns a person has joined."""
    assert handoff.id is not None
    texts, lang = context.deps.texts, context.deps.config.default_language
    await relabel_card(context, handoff, "agent_claimed_button", name=agent.display_name)
    html = texts.render("agent_claimed", lang, name=agent.display_name)
    await post_html(context, HandoffSubject(handoff.id), html)
    if tell_customer:
        await tell_customer_joined(context, handoff, agent)


async def tell_customer_joined(context: DeskContext, handoff: Handoff, agent: Agent) -> None:
    chat_id = await customer_chat_id(context.session, handoff.customer_id)
    customer = await context.session.get(Customer, handoff.customer_id)
    await context.session.commit()
    if chat_id is None or customer is None:
        return
    lang = customer.language or context.deps.config.default_language
    name = None
    if context.deps.config.agent_signature != "none":
        name = agent.display_name.split()[0]
    html = context.deps.texts.render("agent_joined", lang, name=name)
    try:
        await deliver(
            context.bot,
            session=context.session,
            chat_id=chat_id,
            html=html,
            customer_id=customer.id,
            idempotency_key=f"handoff:{handoff.id}:joined",
            details={"template": "agent_joined"},
            handoff_id=handoff.id,
        )
    except Forbidden:
        await relay.customer_unreachable(context, handoff, customer)


# --------------------------------------------------------------------------------------------
# Messages in the group
# --------------------------------------------------------------------------------------------


def command_rest(message: Message) -> str:
    """What follows the command, as typed (line breaks kept, unlike ``context.args``)."""
    return command_rest_of(message.text or "")


def command_rest_of(text: str) -> str:
    parts = text.split(maxsplit=1)
    return parts[1].strip() if len(parts) > 1 else ""


async def on_group_message(update: Update, context: DeskContext) -> None:
    """A message in the group: a note (``!``), or a reply to a customer (in a handoff's place)."""
    message = update.effective_message
    if message is None or await in_agent_chat(update, context) is None:
        return
    if message.from_user is None or message.from_user.is_bot:
        return
    handoff = await relay.handoff_for_message(context, message)
    if handoff is None:
        await note_on_complaint_here(update, context, message)
        return
    agent = await acting_agent(update, context)
    if agent is None:
        return
    # A photo captioned "!..." or "/note ..." is a note too: it must not reach the customer
    # (a caption is never a command, so /note does not catch it).
    text = message.text or message.caption or ""
    first_word = text.split(maxsplit=1)[0].split("@")[0] if text.strip() else ""
    if message.text is None and first_word == "/note":
        await relay.log_note(update, context, agent, handoff, command_rest_of(text))
        return
    if text.startswith(relay.NOTE_PREFIX):
        note = text[len(relay.NOTE_PREFIX) :].strip()
        if note or message.text is None:
            await relay.log_note(update, context, agent, handoff, note)
        return
    await relay.relay_agent_message(update, context, agent, handoff)


async def note_on_complaint_here(update: Update, context: DeskContext, message: Message) -> None:
    """In a complaint's topic (or a reply to its card) agents discuss the case: keep what they
    write as internal comments on the complaint, so the CRM has the whole story. Nothing reaches
    the customer from here; they hear of status changes and the notes given with them."""
    complaint = await complaint_here(context, update)
    if complaint is None:
        return  # chatter among agents elsewhere in the group
    agent = await acting_agent(update, context)
    if agent is None:
        return
    text = message.text or message.caption or f"[{message_content_type(message)}]"
    await comment_complaint(
        session=context.session,
        reference=complaint.reference,
        actor_type=ActorType.agent,
        actor_id=agent.id,
        text=text,
    )


async def on_note(update: Update, context: DeskContext) -> None:
    message = update.effective_message
    assert message is not None
    agent = await acting_agent(update, context)
    if agent is None:
        return
    handoff = await relay.handoff_for_message(context, message)
    if handoff is None:
        await reply(context, "agent_no_handoff")
        return
    note = command_rest(message)
    if not note:
        await reply(context, "agent_note_usage")
        return
    await relay.log_note(update, context, agent, handoff, note)


async def on_resolve(update: Update, context: DeskContext) -> None:
    message = update.effective_message
    assert message is not None
    agent = await acting_agent(update, context)
    if agent is None or agent.id is None:
        return
    handoff = await relay.handoff_for_message(context, message)
    if handoff is None or handoff.id is None:
        await reply(context, "agent_no_handoff")
        return
    summary = command_rest(message) or None
    closed = await close_handoff(
        session=context.session, handoff_id=handoff.id, agent_id=agent.id, summary=summary
    )
    html = context.deps.texts.render(
        "agent_resolved",
        context.deps.config.default_language,
        agent=agent.display_name,
        summary=closed.summary,
    )
    await post_html(context, HandoffSubject(handoff.id), html)
    await relabel_card(context, closed, "agent_resolved_button", name=agent.display_name)
    await close_topic(context, closed.chat_id, closed.topic_id)
    chat_id = await customer_chat_id(context.session, closed.customer_id)
    customer = await context.session.get(Customer, closed.customer_id)
    await context.session.commit()
    if chat_id is None or customer is None:
        return
    try:
        await csat.ask_for_rating(context, closed, customer, chat_id)
    except Forbidden:
        await relay.customer_unreachable(context, closed, customer)


# --------------------------------------------------------------------------------------------
# Complaints
# --------------------------------------------------------------------------------------------


async def on_status_command(update: Update, context: DeskContext) -> None:
    agent = await acting_agent(update, context)
    if agent is None:
        return
    message = update.effective_message
    assert message is not None
    # Split the words off the text as typed, so the note keeps its line breaks.
    args = command_rest(message).split(maxsplit=2)
    if args and _is_status(args[0]):  # in a complaint's topic/thread the reference is implied
        here = await complaint_here(context, update)
        if here is not None:
            args = [here.reference, *command_rest(message).split(maxsplit=1)]
    if len(args) < 2:
        await reply(context, "agent_status_usage")
        return
    reference, status = args[0], args[1]
    note = args[2].strip() if len(args) > 2 and args[2].strip() else None
    await change_status(update, context, agent, reference, status, note)


def _is_status(word: str) -> bool:
    cleaned = word.strip().lower().replace("-", "_")
    return cleaned in {s.value for s in ComplaintStatus}


async def complaint_here(context: DeskContext, update: Update) -> Complaint | None:
    """The complaint whose topic (or bot message) this message is in, if any."""
    message = update.effective_message
    if message is None:
        return None
    candidates = []
    if message.is_topic_message and message.message_thread_id is not None:
        candidates.append(message.message_thread_id)
    if message.reply_to_message is not None:
        candidates.append(message.reply_to_message.message_id)
    for message_id in candidates:
        link = await find_by_group_message(
            session=context.session, chat_id=message.chat_id, message_id=message_id
        )
        complaint_id = link.complaint_id if link else None
        if link is not None and complaint_id is None and link.handoff_id is not None:
            handoff = await get_handoff(session=context.session, handoff_id=link.handoff_id)
            complaint_id = handoff.complaint_id
        if complaint_id is not None:
            complaint = await context.session.get(Complaint, complaint_id)
            await context.session.commit()
            return complaint
    return None


async def change_status(
    update: Update,
    context: DeskContext,
    agent: Agent,
    reference: str,
    status: str,
    note: str | None,
) -> None:
    was_closed = (await get_complaint(session=context.session, reference=reference)).status == (
        ComplaintStatus.closed
    )
    complaint = await transition_complaint(
        session=context.session,
        reference=reference,
        to_status=status,
        actor_type=ActorType.agent,
        actor_id=agent.id,
        note=note,
    )
    assert complaint.id is not None
    notified = await notify_complaint_customer(context, complaint, note)
    lang = context.deps.config.default_language
    html = context.deps.texts.render(
        "agent_complaint_status",
        lang,
        agent=agent.display_name,
        reference=complaint.reference,
        status=complaint.status.value.replace("_", " "),
        note=note,
    )
    if not notified:
        html += "\n" + context.deps.texts.render(
            "agent_complaint_customer_unreachable", lang, reference=complaint.reference
        )
    if was_closed:  # reopened: agents can write in its topic again
        await reopen_topic(context, complaint.group_chat_id, complaint.group_topic_id)
    await post_to_complaint_or_here(update, context, complaint, html)
    if complaint.status == ComplaintStatus.closed:
        await close_topic(context, complaint.group_chat_id, complaint.group_topic_id)


async def reopen_topic(context: DeskContext, chat_id: int | None, topic_id: int | None) -> None:
    if chat_id is None or topic_id is None:
        return
    await release(context)
    try:
        await context.bot.reopen_forum_topic(chat_id, topic_id)
    except TelegramError as error:
        log.info("could not reopen topic %s in %s: %s", topic_id, chat_id, error)


async def close_topic(context: DeskContext, chat_id: int | None, topic_id: int | None) -> None:
    """Close a finished conversation's forum topic (best effort; reopened if needed later)."""
    if chat_id is None or topic_id is None:
        return
    await release(context)
    try:
        await context.bot.close_forum_topic(chat_id, topic_id)
    except TelegramError as error:
        log.info("could not close topic %s in %s: %s", topic_id, chat_id, error)


async def notify_complaint_customer(
    context: DeskContext, complaint: Complaint, note: str | None
) -> bool:
    """Tell the customer of a status change in plain words; False when they cannot be told."""
    chat_id = await customer_chat_id(context.session, complaint.customer_id)
    customer = await context.session.get(Customer, complaint.customer_id)
    await context.session.commit()
    if chat_id is None or customer is None:
        return False
    lang = customer.language or context.deps.config.default_language
    html = context.deps.texts.render(
        "agent_complaint_status_customer",
        lang,
        reference=complaint.reference,
        status=complaint.status.value,
        note=note,
    )
    try:
        await deliver(
            context.bot,
            session=context.session,
            chat_id=chat_id,
            html=html,
            customer_id=customer.id,
            idempotency_key=None,
            kind=InteractionKind.message,
            details={"template": "agent_complaint_status_customer", "status": complaint.status},
            complaint_id=complaint.id,
        )
    except Forbidden:
        log.info("customer of %s blocked the bot; not told", complaint.reference)
        return False
    return True


async def post_to_complaint_or_here(
    update: Update, context: DeskContext, complaint: Complaint, html: str
) -> None:
    """Post in the complaint's place; also here when the command came from elsewhere."""
    assert complaint.id is not None
    here = update.effective_message
    ids = await post_html(context, ComplaintSubject(complaint.id), html)
    topic = complaint.group_topic_id
    in_place = (
        here is not None
        and complaint.group_chat_id == here.chat_id
        and (
            (topic is not None and here.message_thread_id == topic)
            or (topic is None and here.reply_to_message is not None)
        )
    )
    if here is not None and (ids is None or not in_place):
        await send_html_to(context, _here(update), html)


async def on_assign_command(update: Update, context: DeskContext) -> None:
    agent = await acting_agent(update, context)
    if agent is None:
        return
    args = context.args or []
    here = await complaint_here(context, update) if not args else None
    reference = args[0] if args else (here.reference if here is not None else None)
    if reference is None:
        await reply(context, "agent_assign_usage")
        return
    await assign(update, context, agent, reference)


async def assign(update: Update, context: DeskContext, agent: Agent, reference: str) -> None:
    assert agent.id is not None
    complaint = await assign_complaint(
        session=context.session, reference=reference, agent_id=agent.id
    )
    html = context.deps.texts.render(
        "agent_complaint_assigned",
        context.deps.config.default_language,
        agent=agent.display_name,
        reference=complaint.reference,
    )
    await post_to_complaint_or_here(update, context, complaint, html)


async def on_severity_command(update: Update, context: DeskContext) -> None:
    """/severity [reference] <low|medium|high|critical>: triage a complaint (customers file
    at medium); its SLA due time follows the new severity."""
    agent = await acting_agent(update, context)
    if agent is None:
        return
    args = list(context.args or [])
    if len(args) == 1:  # in a complaint's topic/thread the reference is implied
        here = await complaint_here(context, update)
        args = [here.reference, args[0]] if here is not None else []
    if len(args) != 2:
        await reply(context, "agent_severity_usage")
        return
    assert agent.id is not None
    complaint = await set_complaint_severity(
        session=context.session,
        reference=args[0],
        severity=args[1],
        actor_type=ActorType.agent,
        actor_id=agent.id,
        sla=SlaPolicy.from_mapping(context.deps.config.sla_hours),
    )
    html = context.deps.texts.render(
        "agent_complaint_severity",
        context.deps.config.default_language,
        agent=agent.display_name,
        reference=complaint.reference,
        severity=complaint.severity.value,
        due=format_when(complaint.sla_due_at),
    )
    await post_to_complaint_or_here(update, context, complaint, html)


async def on_complaint_button(update: Update, context: DeskContext) -> None:
    query = update.callback_query
    assert query is not None
    agent = await acting_agent(update, context)
    if agent is None:
        return
    try:
        data = parse(query.data)
        complaint_id = data.int_arg(0)
    except CallbackDataError:
        with contextlib.suppress(TelegramError):
            await query.answer("This button is out of date.", show_alert=True)
        return
    complaint = await context.session.get(Complaint, complaint_id)
    await context.session.commit()
    if complaint is None:
        with contextlib.suppress(TelegramError):
            await query.answer("This complaint no longer exists.", show_alert=True)
        return
    try:
        if data.prefix is Prefix.COMPLAINT_ASSIGN:
            await assign(update, context, agent, complaint.reference)
        else:
            await change_status(update, context, agent, complaint.reference, data.arg(1), None)
    except DomainError as error:
        with contextlib.suppress(TelegramError):
            await query.answer(str(error), show_alert=True)
        return
    with contextlib.suppress(TelegramError):
        await query.answer()


async def on_customer_command(update: Update, context: DeskContext) -> None:
    agent = await acting_agent(update, context)
    if agent is None:
        return
    query = " ".join(context.args or []).strip()
    if not query:
        await reply(context, "agent_customer_usage")
        return
    found = await find_customers(session=context.session, query=query, limit=8)
    if not found:
        await reply(context, "agent_customer_not_found", query=query)
    elif len(found) == 1 and found[0].id is not None:
        html = await customer_card_html(context, found[0].id)
        await send_html_to(context, _here(update), html)
    else:
        await reply(context, "card_customer_list", query=query, customers=found)


def _here(update: Update) -> Place:
    message = update.effective_message
    assert message is not None
    thread = message.message_thread_id if message.is_topic_message else None
    return Place(message.chat_id, thread_id=thread)


# --------------------------------------------------------------------------------------------
# The group moving
# --------------------------------------------------------------------------------------------


async def on_migration(update: Update, context: DeskContext) -> None:
    """Telegram upgraded the group: follow it (service message in the old or the new chat)."""
    message = update.effective_message
    if message is None:
        return
    current = await agent_chat_id(context)
    if message.migrate_to_chat_id and message.chat_id == current:
        await follow_migration(context, message.chat_id, message.migrate_to_chat_id)
    elif message.migrate_from_chat_id and message.migrate_from_chat_id == current:
        await follow_migration(context, message.migrate_from_chat_id, message.chat_id)


# --------------------------------------------------------------------------------------------
# Start-up: command menu and a sanity check of the bot's rights
# --------------------------------------------------------------------------------------------

# The agents' command menu (setMyCommands for the group); descriptions: ``agent_cmd_<name>``.
AGENT_COMMANDS = (
    "queue", "customer", "note", "resolve", "status", "assign", "severity", "stats",
    "reload_kb",
)  # fmt: skip


def agent_command_menu(texts: Texts) -> list[BotCommand]:
    return [BotCommand(name, texts.render_plain(f"agent_cmd_{name}")) for name in AGENT_COMMANDS]


async def prepare_agent_chat(bot: Bot, chat_id: int | None, texts: Texts) -> None:
    """At start: offer the agents' commands in their group and warn (log) when the bot lacks
    the rights it needs there. Never raises: the customer side works without the group."""
    if chat_id is None:
        return
    try:
        try:
            await bot.set_my_commands(agent_command_menu(texts), scope=BotCommandScopeChat(chat_id))
        except ChatMigrated as error:  # followed for good on the first update; menu now
            chat_id = error.new_chat_id
            await bot.set_my_commands(agent_command_menu(texts), scope=BotCommandScopeChat(chat_id))
        me = await bot.get_chat_member(chat_id, bot.id)
        chat = await bot.get_chat(chat_id)
    except TelegramError as error:
        log.warning("agents' group %s is not usable: %s", chat_id, error)
        return
    if me.status != ChatMemberStatus.ADMINISTRATOR:
        log.warning("the bot is not an administrator of the agents' group %s", chat_id)
    elif chat.is_forum and not getattr(me, "can_manage_topics", False):
        log.warning("the bot cannot manage topics in the agents' forum %s", chat_id)


# --------------------------------------------------------------------------------------------
# Registration
# --------------------------------------------------------------------------------------------


def build_handlers(agent_chat_configured: bool) -> list[BaseHandler[Any, Any, Any]]:
    """Group-0 handlers for the agents' group (none without an agents' group)."""
    if not agent_chat_configured:
        return []
    groups = filters.ChatType.GROUPS
    return [
        MessageHandler(filters.StatusUpdate.MIGRATE, on_migration),
        CallbackQueryHandler(on_claim, pattern=pattern(Prefix.HANDOFF_CLAIM)),
        CallbackQueryHandler(on_noop, pattern=pattern(Prefix.NOOP)),
        CallbackQueryHandler(on_complaint_button, pattern=pattern(Prefix.COMPLAINT_STATUS)),
        CallbackQueryHandler(on_complaint_button, pattern=pattern(Prefix.COMPLAINT_ASSIGN)),
        CommandHandler("note", on_note, filters=groups),
        CommandHandler("resolve", on_resolve, filters=groups),
        CommandHandler("status", on_status_command, filters=groups),
        CommandHandler("assign", on_assign_command, filters=groups),
        CommandHandler("severity", on_severity_command, filters=groups),
        CommandHandler("customer", on_customer_command, filters=groups),
        CommandHandler("queue", queue.on_queue, filters=groups),
        MessageHandler(groups & filters.UpdateType.MESSAGE & ~filters.COMMAND, on_group_message),
    ]
