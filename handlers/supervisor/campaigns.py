"""Campaigns, for supervisors: ``/campaign new`` (a flow of four messages in a private chat:
name, criteria, message, buttons), ``list``, ``preview <id>`` (the message rendered for three
real recipients, and how many there are), ``send <id>`` (a confirm button), ``cancel <id>``,
``report <id>``. Sending itself is :mod:`handlers.supervisor.campaign_sender` (a sweeper).

The message is a supervisor-written Jinja2 text rendered in the staff sandbox
(``Texts.render_text``) with the customer's fields; one that does not render is refused with
the reason when it is written, and previewed with the reason per recipient.
"""

from __future__ import annotations

from typing import Any

import jinja2
from telegram import InlineKeyboardMarkup, Update
from telegram.constants import ChatType

from crm_core.models import Campaign, CampaignStatus, Customer, FlowState
from crm_core.services.campaigns import (
    Criteria,
    InvalidCampaign,
    audience,
    campaign_report,
    cancel_campaign,
    configure_campaign,
    create_campaign,
    get_campaign,
    list_campaigns,
    parse_buttons,
    parse_criteria_text,
    start_sending,
)
from crm_core.services.segments import SEGMENT_ORDER
from handlers.agents.threads import command_rest
from handlers.core.callbacks import CallbackDataError, Prefix, build, parse
from handlers.core.context import DeskContext
from handlers.core.flows import FlowName, end_flow, save_step
from handlers.core.format import format_date, format_when
from handlers.core.guards import supervisor_only
from handlers.core.keyboards import inline_button
from handlers.core.send import answer_query, drop_buttons, reply
from handlers.supervisor.figures import money, share

YES, NO = "yes", "no"
STEPS = ("name", "criteria", "template", "buttons")
SAMPLE_FIELDS: dict[str, Any] = {
    "name": "Alex Example",
    "first_name": "Alex",
    "language": "en",
    "tags": ["vip"],
}
MAX_TEMPLATE_CHARS = 3500  # room for the buttons' text within one Telegram message


def customer_fields(customer: Customer) -> dict[str, Any]:
    """What a campaign's message may use of a customer (nothing that identifies them beyond
    their name: no phone, no e-mail)."""
    name = customer.name or ""
    return {
        "name": name,
        "first_name": name.split(" ")[0] if name else "",
        "language": customer.language or "",
        "tags": list(customer.tags or []),
    }


def render_for(context: DeskContext, template: str, customer: Customer) -> str:
    """The campaign's text for one customer (raises ``jinja2.TemplateError``)."""
    return context.deps.texts.render_text(template, **customer_fields(customer))


def template_problem(context: DeskContext, template: str) -> str | None:
    if len(template) > MAX_TEMPLATE_CHARS:
        return f"it is longer than {MAX_TEMPLATE_CHARS} characters"
    try:
        sample = context.deps.texts.render_text(template, **SAMPLE_FIELDS)
    except jinja2.TemplateError as error:
        return str(error.message or error)
    return None if sample else "it comes out empty"


# --------------------------------------------------------------------------------------------
# /campaign <action>
# --------------------------------------------------------------------------------------------


@supervisor_only
async def on_campaign(update: Update, context: DeskContext) -> None:
    message = update.effective_message
    assert message is not None
    words = command_rest(message).split()
    action = words[0].lower() if words else ""
    if action == "new" and len(words) == 1:
        await start_new(update, context)
    elif action == "list" and len(words) == 1:
        await show_list(context)
    elif action == "set" and len(words) >= 3:
        await configure(context, words[1], words[2:])
    elif action in ("preview", "send", "cancel", "report") and len(words) == 2:
        try:
            campaign_id = int(words[1].lstrip("#"))
        except ValueError:
            await reply(context, "supervisor_campaign_usage")
            return
        actions = {
            "preview": show_preview,
            "send": ask_to_send,
            "cancel": cancel,
            "report": show_report,
        }
        await actions[action](context, campaign_id)
    else:
        await reply(context, "supervisor_campaign_usage")


async def configure(context: DeskContext, campaign: str, settings: list[str]) -> None:
    """``/campaign set ID holdout=20% days=30``."""
    try:
        campaign_id = int(campaign.lstrip("#"))
        values = dict(item.split("=", 1) for item in settings)
    except ValueError:
        await reply(context, "supervisor_campaign_usage")
        return
    unknown = set(values) - {"holdout", "days"}
    if unknown:
        raise InvalidCampaign(f"Only holdout= and days= can be set, not {', '.join(unknown)}.")
    try:
        raw = values.get("holdout")
        holdout = float(raw.rstrip("%")) / 100 if raw and raw.endswith("%") else None
        holdout = float(raw) if raw and holdout is None else holdout
        days = int(values["days"]) if "days" in values else None
    except ValueError:
        raise InvalidCampaign("Write holdout=20% (or 0.2) and days=30.") from None
    changed = await configure_campaign(
        session=context.session,
        campaign_id=campaign_id,
        holdout_share=holdout,
        attribution_days=days,
    )
    await reply(
        context,
        "supervisor_campaign_set",
        id=campaign_id,
        share=share(changed.holdout_share),
        days=changed.attribution_days,
    )


async def show_list(context: DeskContext) -> None:
    campaigns = await list_campaigns(session=context.session)
    rows = [
        {"id": c.id, "name": c.name, "status": c.status, "created": format_date(c.created_at)}
        for c in campaigns
    ]
    await reply(context, "supervisor_campaign_list", campaigns=rows)


def describe_criteria(criteria: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in criteria.items()) or "everyone reachable"


def describe_buttons(buttons: list[dict[str, Any]]) -> str:
    return ", ".join(
        f"{b['label']} ({b['url']})" if b["kind"] == "link" else b["kind"] for b in buttons
    )


async def show_preview(context: DeskContext, campaign_id: int) -> None:
    campaign = await get_campaign(session=context.session, campaign_id=campaign_id)
    await reply_preview(context, campaign)


async def preview(context: DeskContext, campaign: Campaign) -> tuple[int, list[dict[str, Any]]]:
    """How many the campaign reaches now, and its message rendered for three of them (with
    the reason where it cannot be filled in): for ``/campaign preview`` and the console."""
    found = await audience(session=context.session, criteria=Criteria.from_json(campaign.criteria))
    samples = []
    for customer in found.sample:
        try:
            text, problem = render_for(context, campaign.template, customer), None
        except jinja2.TemplateError as error:
            text, problem = "", str(error.message or error)
        samples.append(
            {
                "name": customer.name or f"#{customer.id}",
                "language": customer.language or context.deps.config.default_language,
                "text": text,
                "problem": problem,
            }
        )
    return found.count, samples


async def reply_preview(context: DeskContext, campaign: Campaign) -> None:
    count, samples = await preview(context, campaign)
    await reply(
        context,
        "supervisor_campaign_preview",
        id=campaign.id,
        name=campaign.name,
        status=campaign.status,
        criteria=describe_criteria(campaign.criteria),
        count=count,
        holdout=round(count * campaign.holdout_share),
        share=share(campaign.holdout_share),
        buttons=describe_buttons(campaign.buttons),
        samples=samples,
        draft=campaign.status == CampaignStatus.draft,
    )


async def ask_to_send(context: DeskContext, campaign_id: int) -> None:
    campaign = await get_campaign(session=context.session, campaign_id=campaign_id)
    if campaign.status != CampaignStatus.draft:
        raise InvalidCampaign(f"Campaign #{campaign_id} is {campaign.status}, not a draft.")
    found = await audience(
        session=context.session, criteria=Criteria.from_json(campaign.criteria), sample_size=0
    )
    if not found.count:
        raise InvalidCampaign("Nobody matches this campaign's criteria: nothing to send.")
    keyboard = InlineKeyboardMarkup(
        [
            [
                inline_button(
                    context,
                    "supervisor_campaign_send",
                    build(Prefix.CAMPAIGN_SEND, campaign_id, YES),
                ),
                inline_button(
                    context,
                    "supervisor_campaign_keep",
                    build(Prefix.CAMPAIGN_SEND, campaign_id, NO),
                ),
            ]
        ]
    )
    holdout = round(found.count * campaign.holdout_share)
    await reply(
        context,
        "supervisor_campaign_confirm",
        reply_markup=keyboard,
        id=campaign_id,
        name=campaign.name,
        count=found.count - holdout,
        holdout=holdout,
    )


@supervisor_only
async def on_send_choice(update: Update, context: DeskContext) -> None:
    """``cs:<campaign_id>:<yes|no>``: the confirm button of ``/campaign send``."""
    await answer_query(update)
    await drop_buttons(update)
    try:
        callback = parse(update.callback_query.data if update.callback_query else None)
        campaign_id, choice = callback.int_arg(0), callback.arg(1)
    except CallbackDataError:
        await reply(context, "flow_expired")
        return
    if choice != YES:
        await reply(context, "supervisor_campaign_started", id=campaign_id, started=False)
        return
    treatment, holdout = await start_sending(session=context.session, campaign_id=campaign_id)
    await reply(
        context,
        "supervisor_campaign_started",
        id=campaign_id,
        started=True,
        treatment=treatment,
        holdout=holdout,
        rate=f"{context.deps.config.campaign_rate_per_second:g}",
    )


async def cancel(context: DeskContext, campaign_id: int) -> None:
    unsent = await cancel_campaign(session=context.session, campaign_id=campaign_id)
    await reply(context, "supervisor_campaign_cancelled", id=campaign_id, unsent=unsent)


async def show_report(context: DeskContext, campaign_id: int) -> None:
    report = await campaign_report(session=context.session, campaign_id=campaign_id)
    campaign, zone = report.campaign, context.deps.config.zone
    t, h = report.treatment, report.holdout

    def lift(value: float | None) -> str:
        return f"{value:+.0%}" if value is not None else "—"

    await reply(
        context,
        "supervisor_campaign_report",
        id=campaign.id,
        name=campaign.name,
        status=campaign.status,
        started=report.window_start is not None,
        start=format_when(report.window_start, zone),
        end=format_when(report.window_end, zone),
        days=campaign.attribution_days,
        t=t,
        h=h,
        pending=report.pending,
        unknown=report.unknown,
        presses=report.presses,
        tied_replies=report.tied_replies,
        tied_purchases=report.tied_purchases,
        t_revenue=money(t.revenue_minor),
        h_revenue=money(h.revenue_minor),
        t_per=money(round(t.revenue_per_recipient)),
        h_per=money(round(h.revenue_per_recipient)),
        revenue_lift=lift(report.revenue_lift),
        conversion_lift=lift(report.conversion_lift),
        incremental=money(round(report.incremental_revenue_minor)),
    )


# --------------------------------------------------------------------------------------------
# /campaign new: the flow (state in the database, one step a message)
# --------------------------------------------------------------------------------------------


async def start_new(update: Update, context: DeskContext) -> None:
    chat = update.effective_chat
    if chat is None or chat.type != ChatType.PRIVATE or context.customer is None:
        await reply(context, "supervisor_campaign_private")
        return
    await save_step(update, context, FlowName.CAMPAIGN, "name", {})
    await ask(context, "name")


async def ask(context: DeskContext, step: str, **values: Any) -> None:
    await reply(
        context, "supervisor_campaign_ask", step=step, segments=", ".join(SEGMENT_ORDER), **values
    )


async def take_message(update: Update, context: DeskContext, flow: FlowState) -> bool:
    """The flow's step for the supervisor's next message (``FLOW_STEPS``)."""
    user, message = update.effective_user, update.effective_message
    if user is None or message is None or not context.deps.config.is_supervisor(user.id):
        await end_flow(update, context)  # no longer a supervisor: the draft goes
        return False
    text = (message.text or "").strip()
    if not text:
        await reply(context, "supervisor_campaign_invalid", problem="Please write it as text.")
        return True
    data = dict(flow.data)
    try:
        next_step = await take_step(context, flow.step, text, data)
    except InvalidCampaign as error:
        await reply(context, "supervisor_campaign_invalid", problem=str(error))
        return True
    if next_step is None:
        await finish(update, context, data, created_by=user.id)
        return True
    await save_step(update, context, FlowName.CAMPAIGN, next_step, data)
    if next_step == "template":
        found = await audience(
            session=context.session,
            criteria=Criteria.from_json(data["criteria"]),
            sample_size=0,
        )
        await ask(context, next_step, count=found.count)
    else:
        await ask(context, next_step)
    return True


async def take_step(context: DeskContext, step: str, text: str, data: dict[str, Any]) -> str | None:
    """Check ``text`` as the answer to ``step`` and keep it in ``data``; the next step (None
    after the last). Raises :class:`InvalidCampaign` with the reason."""
    if step == "name":
        if len(text) > 100:
            raise InvalidCampaign("A campaign's name is at most 100 characters.")
        data["name"] = text
    elif step == "criteria":
        data["criteria"] = parse_criteria_text(text).to_json()
    elif step == "template":
        problem = template_problem(context, text)
        if problem is not None:
            raise InvalidCampaign(f"This message cannot be filled in: {problem}.")
        data["template"] = text
    elif step == "buttons":
        data["buttons"] = parse_buttons(text)
    else:  # a step of an older version: start again
        raise InvalidCampaign("This draft is from an older version; /cancel and start again.")
    following = STEPS.index(step) + 1
    return STEPS[following] if following < len(STEPS) else None


async def create_from_answers(
    context: DeskContext, data: dict[str, Any], *, created_by: int | None, **measurement: Any
) -> Campaign:
    """The draft from the checked answers of every step (``take_step``): the flow's last
    step, and the console's form."""
    return await create_campaign(
        session=context.session,
        name=data["name"],
        criteria=Criteria.from_json(data["criteria"]),
        template=data["template"],
        buttons=data["buttons"],
        created_by=created_by,
        **measurement,
    )


async def finish(
    update: Update, context: DeskContext, data: dict[str, Any], *, created_by: int
) -> None:
    campaign = await create_from_answers(context, data, created_by=created_by)
    await end_flow(update, context)
    await reply_preview(context, campaign)
