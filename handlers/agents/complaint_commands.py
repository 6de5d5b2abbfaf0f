"""What agents do with complaints: ``/status [reference] <in_progress|resolved|closed> [note]``,
``/assign [reference]``, ``/severity [reference] <level>`` and the buttons on a complaint's
card. In a complaint's topic (or a reply to its card) the reference is implied. The customer
hears of every status change, with its note."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from telegram import Update

from crm_core.models import ActorType, Agent, Complaint, ComplaintStatus, InteractionKind
from crm_core.services.complaints import (
    assign_complaint,
    get_complaint,
    set_complaint_severity,
    transition_complaint,
)
from handlers.agents.announce import (
    ComplaintSubject,
    post_html,
    send_html_to,
    set_topic_open,
)
from handlers.agents.live_cards import refresh_complaint
from handlers.agents.threads import command_rest, complaint_here, here
from handlers.core.callbacks import CallbackDataError, Prefix, parse
from handlers.core.context import DeskContext
from handlers.core.format import format_when, status_label
from handlers.core.guards import agent_only
from handlers.core.send import Delivery, answer_query, reply, tell_customer


@agent_only
async def on_status_command(update: Update, context: DeskContext, agent: Agent) -> None:
    message = update.effective_message
    assert message is not None
    # Split the words off the text as typed, so the note keeps its line breaks.
    args = command_rest(message).split(maxsplit=2)
    if args and _is_status(args[0]):  # in a complaint's topic/thread the reference is implied
        complaint = await complaint_here(context, update)
        if complaint is not None:
            args = [complaint.reference, *command_rest(message).split(maxsplit=1)]
    if len(args) < 2:
        await reply(context, "agent_status_usage")
        return
    reference, status = args[0], args[1]
    note = args[2].strip() if len(args) > 2 and args[2].strip() else None
    await change_status(update, context, agent, reference, status, note)


def _is_status(word: str) -> bool:
    cleaned = word.strip().lower().replace("-", "_")
    return cleaned in {s.value for s in ComplaintStatus}


async def change_status(
    update: Update,
    context: DeskContext,
    agent: Agent,
    reference: str,
    status: str,
    note: str | None,
) -> None:
    async def post_here(complaint: Complaint, html: str) -> None:
        await post_to_complaint_or_here(update, context, complaint, html)

    await apply_status_change(
        context,
        reference=reference,
        status=status,
        note=note,
        actor_type=ActorType.agent,
        actor_id=agent.id,
        actor_name=agent.display_name,
        post=post_here,
    )


async def apply_status_change(
    context: DeskContext,
    *,
    reference: str,
    status: str,
    note: str | None,
    actor_type: ActorType,
    actor_id: int | None,
    actor_name: str,
    details: dict[str, Any] | None = None,
    post: Callable[[Complaint, str], Awaitable[None]] | None = None,
) -> Delivery:
    """A complaint's status change, wherever it is made (an agent's /status or button, the
    console): the CRM service (a move the lifecycle forbids raises its DomainError, nothing
    changed), the customer told in plain words, the agents told in the complaint's place
    (``post``, by default its topic or card), its card and topic following. Returns whether the
    customer was told."""
    before = await get_complaint(session=context.session, reference=reference)
    was_closed = before.status == ComplaintStatus.closed
    complaint = await transition_complaint(
        session=context.session,
        reference=reference,
        to_status=status,
        actor_type=actor_type,
        actor_id=actor_id,
        note=note,
    )
    assert complaint.id is not None
    delivery = await tell_customer(
        context,
        complaint.customer_id,
        "agent_complaint_status_customer",
        reference=complaint.reference,
        status=complaint.status.value,
        note=note,
        idempotency_key=None,
        kind=InteractionKind.message,
        details={"status": complaint.status, **(details or {})},
        complaint_id=complaint.id,
    )
    lang = context.deps.config.default_language
    html = context.deps.texts.render(
        "agent_complaint_status",
        lang,
        agent=actor_name,
        reference=complaint.reference,
        status=status_label(complaint.status),
        note=note,
    )
    if delivery is not Delivery.SENT:
        html += "\n" + context.deps.texts.render(
            "agent_complaint_customer_unreachable", lang, reference=complaint.reference
        )
    if was_closed:  # reopened: agents can write in its topic again
        await set_topic_open(context, complaint.group_chat_id, complaint.group_topic_id, True)
    if post is not None:
        await post(complaint, html)
    else:
        await post_html(context, ComplaintSubject(complaint.id), html)
    await refresh_complaint(context, complaint.id)
    if complaint.status == ComplaintStatus.closed:
        await set_topic_open(context, complaint.group_chat_id, complaint.group_topic_id, False)
    return delivery


async def post_to_complaint_or_here(
    update: Update, context: DeskContext, complaint: Complaint, html: str
) -> None:
    """Post in the complaint's place; also here when the command came from elsewhere."""
    assert complaint.id is not None
    message = update.effective_message
    ids = await post_html(context, ComplaintSubject(complaint.id), html)
    topic = complaint.group_topic_id
    in_place = (
        message is not None
        and complaint.group_chat_id == message.chat_id
        and (
            (topic is not None and message.message_thread_id == topic)
            or (topic is None and message.reply_to_message is not None)
        )
    )
    if message is not None and (ids is None or not in_place):
        await send_html_to(context, here(update), html)


@agent_only
async def on_assign_command(update: Update, context: DeskContext, agent: Agent) -> None:
    args = context.args or []
    complaint = await complaint_here(context, update) if not args else None
    reference = args[0] if args else (complaint.reference if complaint is not None else None)
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
    assert complaint.id is not None
    await refresh_complaint(context, complaint.id)


@agent_only
async def on_severity_command(update: Update, context: DeskContext, agent: Agent) -> None:
    """/severity [reference] <low|medium|high|critical>: triage a complaint (customers file
    at medium); its SLA due time follows the new severity."""
    args = list(context.args or [])
    if len(args) == 1:  # in a complaint's topic/thread the reference is implied
        complaint = await complaint_here(context, update)
        args = [complaint.reference, args[0]] if complaint is not None else []
    if len(args) != 2:
        await reply(context, "agent_severity_usage")
        return
    assert agent.id is not None
    changed = await set_complaint_severity(
        session=context.session,
        reference=args[0],
        severity=args[1],
        actor_type=ActorType.agent,
        actor_id=agent.id,
        sla=context.deps.config.sla,
    )
    html = context.deps.texts.render(
        "agent_complaint_severity",
        context.deps.config.default_language,
        agent=agent.display_name,
        reference=changed.reference,
        severity=changed.severity.value,
        due=format_when(changed.sla_due_at, context.deps.config.zone),
    )
    await post_to_complaint_or_here(update, context, changed, html)
    assert changed.id is not None
    await refresh_complaint(context, changed.id)


@agent_only
async def on_complaint_button(update: Update, context: DeskContext, agent: Agent) -> None:
    """A status or assign button on a complaint's card. The press is answered first (the work
    after it sends several messages, and Telegram drops a query answered late); a move the
    complaint no longer allows (someone else changed it meanwhile) is explained in the chat by
    the central error handler."""
    query = update.callback_query
    assert query is not None
    try:
        data = parse(query.data)
        complaint_id = data.int_arg(0)
    except CallbackDataError:
        await answer_query(update, "This button is out of date.", alert=True)
        return
    complaint = await context.session.get(Complaint, complaint_id)
    await context.session.commit()
    if complaint is None:
        await answer_query(update, "This complaint no longer exists.", alert=True)
        return
    await answer_query(update)
    if data.prefix is Prefix.COMPLAINT_ASSIGN:
        await assign(update, context, agent, complaint.reference)
    else:
        await change_status(update, context, agent, complaint.reference, data.arg(1), None)
