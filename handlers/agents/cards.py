"""The cards agents see, and their buttons: who the customer is, what they are worth, what
went wrong before, what the bot already tried, and what they said — in one Telegram message.

Data is gathered into plain dicts (view models) and rendered by the ``card_*`` templates; the
transcript is trimmed (oldest lines first) until the card fits Telegram's 4096 characters.
Cards are built here; posting them into the group is ``handlers.agents.announce``'s job, and
keeping them current ``handlers.agents.live_cards``'.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update

from crm_core.clock import as_utc
from crm_core.models import (
    Agent,
    Complaint,
    ComplaintStatus,
    Customer,
    Direction,
    Handoff,
    HandoffStatus,
    InteractionKind,
    InteractionPublic,
)
from crm_core.services.complaints import list_customer_complaints
from crm_core.services.customer360 import Customer360, get_customer_360
from crm_core.services.interactions import recent_interactions
from handlers.core.callbacks import Prefix, build
from handlers.core.context import DeskContext
from handlers.core.format import (
    clip,
    display_name,
    format_date,
    format_money,
    format_when,
    status_label,
    utf16_len,
)
from handlers.core.send import answer_query, plain_text

log = logging.getLogger(__name__)

MESSAGE_LIMIT = 4096
# Room kept free for what the claim edit or a topic name adds, and for safety.
CARD_LIMIT = MESSAGE_LIMIT - 96
TRANSCRIPT_LINES = 12
TRANSCRIPT_LINE_CHARS = 300
BOT_LINE_CHARS = 120
RECENT_COMPLAINTS = 5
KB_KINDS = (InteractionKind.kb_answer, InteractionKind.kb_suggest, InteractionKind.kb_feedback)
TRANSCRIPT_KINDS = (
    InteractionKind.message, InteractionKind.command, InteractionKind.kb_answer,
    InteractionKind.kb_suggest, InteractionKind.kb_none, InteractionKind.agent_reply,
)  # fmt: skip
VALUABLE_TIERS = frozenset({"top", "high"})


async def customer_name(context: DeskContext, customer_id: int | None) -> str:
    """How agents see the customer named (``Customer #12`` when the record has no name)."""
    customer = await context.session.get(Customer, customer_id) if customer_id else None
    await context.session.commit()  # read only: do not hold SQLite's write lock
    return display_name(customer.name if customer else None, customer_id)


async def is_erased(context: DeskContext, customer_id: int | None) -> bool:
    """Did the customer ask to be forgotten? Their name is then shown nowhere."""
    customer = await context.session.get(Customer, customer_id) if customer_id else None
    await context.session.commit()
    return customer is not None and customer.anonymized_at is not None


@dataclass
class CustomerView:
    """What the customer part of every card shows."""

    id: int
    name: str
    username: str | None
    phone: str | None
    email: str | None
    # Telegram vouches for a phone the customer shared from their own account; an e-mail is
    # typed (or imported) and never verified.
    phone_verified: bool
    email_verified: bool
    external_id: str | None
    tags: list[str]
    since: str
    segment: str | None
    tier: str | None
    lifetime_value: str | None
    purchases: int
    last_purchase: str
    open_complaints: list[dict[str, str]]
    recent_complaints: list[dict[str, str]]
    past_handoffs: list[dict[str, Any]]

    @property
    def valuable(self) -> bool:
        return self.tier in VALUABLE_TIERS


async def customer_view(
    context: DeskContext, customer_id: int, *, now: datetime | None = None
) -> tuple[CustomerView, Customer360]:
    session = context.session
    c360 = await get_customer_360(session=session, customer_id=customer_id, now=now)
    customer = c360.customer
    complaints = await list_customer_complaints(session=session, customer_id=customer.id)
    username = next((i.username for i in reversed(c360.identities) if i.username), None)
    open_refs = {c.reference for c in c360.open_complaints}
    view = CustomerView(
        id=customer.id,
        name=display_name(customer.name, customer.id),
        username=username,
        phone=customer.phone,
        email=customer.email,
        phone_verified=customer.phone is not None and customer.identity_verified,
        email_verified=False,
        external_id=customer.external_id,
        tags=list(customer.tags or []),
        since=format_date(customer_since(customer.first_seen_at, customer.created_at, c360)),
        segment=c360.rfm.segment if c360.rfm else None,
        tier=c360.rfm.tier if c360.rfm else None,
        lifetime_value=(
            format_money(c360.lifetime_value_minor, c360.currency) if c360.purchase_count else None
        ),
        purchases=c360.purchase_count,
        last_purchase=format_date(c360.last_purchase_at),
        open_complaints=[_complaint_line(c) for c in c360.open_complaints],
        recent_complaints=[_complaint_line(c) for c in complaints if c.reference not in open_refs][
            :RECENT_COMPLAINTS
        ],
        past_handoffs=[
            {
                "reference": f"H-{h.id}",
                "closed": format_date(h.closed_at),
                "score": h.csat_score,
                "comment": clip(h.csat_comment, 120) if h.csat_comment else None,
            }
            for h in c360.past_handoffs
        ],
    )
    return view, c360


def customer_since(first_seen: datetime | None, created: datetime, c360: Customer360) -> datetime:
    """When the relationship began: the first purchase or first contact, whichever came
    first (an imported customer's record is younger than the customer)."""
    moments = [m for m in (first_seen, c360.first_purchase_at) if m is not None]
    return min((as_utc(m) for m in moments), default=as_utc(created))


def _complaint_line(complaint: Any) -> dict[str, str]:
    return {
        "reference": str(complaint.reference),
        "status": status_label(complaint.status) if hasattr(complaint.status, "value") else "",
        "category": str(getattr(complaint.category, "value", complaint.category)),
        "severity": str(getattr(complaint.severity, "value", complaint.severity)),
        "description": clip(complaint.description, 80),
    }


def kb_attempts(interactions: list[InteractionPublic]) -> list[dict[str, Any]]:
    """Articles the bot offered, in order, with how confident it was and whether they helped."""
    found: dict[str, dict[str, Any]] = {}
    for item in interactions:
        details = item.details or {}
        listed = details.get("candidates") or details.get("articles")
        entries = listed if isinstance(listed, list) else None
        for entry in entries or [details]:
            if not isinstance(entry, dict) or not entry.get("article_id"):
                continue
            article_id = str(entry["article_id"])
            row = found.setdefault(
                article_id,
                {"title": article_id, "how": None, "confidence": None, "helpful": None},
            )
            if entry.get("title"):
                row["title"] = clip(str(entry["title"]), 80)
            if item.kind == InteractionKind.kb_feedback:
                helpful = entry.get("helpful", details.get("helpful"))
                if isinstance(helpful, bool):
                    row["helpful"] = helpful
                continue
            how = "answered" if item.kind == InteractionKind.kb_answer else "suggested"
            row["how"] = "answered" if row["how"] == "answered" else how
            confidence = entry.get("confidence", details.get("confidence"))
            if isinstance(confidence, int | float):
                row["confidence"] = f"{float(confidence):.0%}"
    return list(found.values())


def transcript_lines(
    interactions: list[InteractionPublic], customer_name: str
) -> list[dict[str, str]]:
    lines = []
    for item in interactions:
        if item.kind not in TRANSCRIPT_KINDS or not (item.text or "").strip():
            continue
        text = item.text
        if item.direction == Direction.inbound:
            who = customer_name
        elif item.kind == InteractionKind.agent_reply:
            details = item.details or {}
            who = str(details.get("agent_name") or "Agent")
            # What the agent wrote, not the signed message ("Sam (support team): ...").
            text = str(details.get("agent_text") or text)
        else:
            who = "Bot"
        when = as_utc(item.occurred_at).strftime("%H:%M")
        # The bot's answers are articles the agents can look up: a glimpse is enough.
        limit = BOT_LINE_CHARS if who == "Bot" else TRANSCRIPT_LINE_CHARS
        lines.append({"who": who, "when": when, "text": clip(text, limit)})
    return lines


def fit_card(render: Any, transcript: list[dict[str, str]]) -> str:
    """Render with as much of the transcript (newest kept) as fits one message."""
    lines = list(transcript[-TRANSCRIPT_LINES:])
    while True:
        html = str(render(transcript=lines, trimmed=len(lines) < len(transcript)))
        if utf16_len(plain_text(html)) <= CARD_LIMIT or not lines:
            return html
        lines = lines[max(1, len(lines) // 4) :] if len(lines) > 8 else lines[1:]


async def handoff_card_html(context: DeskContext, handoff: Handoff) -> str:
    """The full context card that opens a handoff in the agents' group."""
    assert handoff.customer_id is not None
    view, _ = await customer_view(context, handoff.customer_id)
    kb_rows = await recent_interactions(
        session=context.session, customer_id=view.id, limit=30, kinds=KB_KINDS
    )
    convo = await recent_interactions(
        session=context.session, customer_id=view.id, limit=40, kinds=TRANSCRIPT_KINDS
    )
    complaint = await _complaint(context.session, handoff.complaint_id)
    kb = kb_attempts([InteractionPublic.model_validate(i) for i in kb_rows])
    transcript = transcript_lines([InteractionPublic.model_validate(i) for i in convo], view.name)
    texts, lang = context.deps.texts, context.deps.config.default_language

    def render(**extra: Any) -> str:
        return texts.render(
            "card_handoff",
            lang,
            c=view,
            handoff=handoff,
            reference=handoff_reference(handoff, complaint),
            complaint=complaint,
            reason=clip(handoff.reason, 600) if handoff.reason else None,
            last_question=_last_question(transcript, view.name),
            kb=kb,
            requested=format_when(handoff.requested_at, context.deps.config.zone),
            **extra,
        )

    return fit_card(render, transcript)


def _last_question(transcript: list[dict[str, str]], customer_name: str) -> str | None:
    """What the customer last asked (not a command): the likely reason for the handoff."""
    for line in reversed(transcript):
        if line["who"] == customer_name and not line["text"].startswith("/"):
            return clip(line["text"], 300)
    return None


async def complaint_card_html(context: DeskContext, complaint: Complaint) -> str:
    """A new complaint, with the customer's context, for the agents' group."""
    assert complaint.customer_id is not None
    view, _ = await customer_view(context, complaint.customer_id)
    others = [c for c in view.open_complaints if c["reference"] != complaint.reference]
    view.open_complaints = others
    html = context.deps.texts.render(
        "card_complaint",
        context.deps.config.default_language,
        c=view,
        complaint=complaint,
        status=status_label(complaint.status),
        description=clip(complaint.description, 1500),
        sla_due=format_when(complaint.sla_due_at, context.deps.config.zone),
        attachments=len(complaint.attachments or []),
    )
    return html


async def customer_card_html(context: DeskContext, customer_id: int) -> str:
    """The 360° view for ``/customer``."""
    view, c360 = await customer_view(context, customer_id)
    transcript = transcript_lines(c360.recent_interactions, view.name)
    texts, lang = context.deps.texts, context.deps.config.default_language
    handoff = c360.open_handoff

    def render(**extra: Any) -> str:
        return texts.render("card_customer_360", lang, c=view, handoff=handoff, **extra)

    return fit_card(render, transcript)


async def _complaint(session: AsyncSession, complaint_id: int | None) -> Complaint | None:
    if complaint_id is None:
        return None
    complaint = await session.get(Complaint, complaint_id)
    await session.commit()
    return complaint


def handoff_reference(handoff: Handoff, complaint: Complaint | None = None) -> str:
    """How agents name a handoff: ``H-12`` (with the complaint's reference when it has one)."""
    base = f"H-{handoff.id}"
    return f"{base} / {complaint.reference}" if complaint is not None else base


# --------------------------------------------------------------------------------------------
# Buttons on cards, and refreshing them
# --------------------------------------------------------------------------------------------


def claim_keyboard(context: DeskContext, handoff: Handoff) -> InlineKeyboardMarkup:
    label = context.deps.texts.render_plain(
        "agent_claim_button", context.deps.config.default_language
    )
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(label, callback_data=build(Prefix.HANDOFF_CLAIM, handoff.id))]]
    )


# The status buttons a complaint's card offers, by its status (the moves the lifecycle allows;
# "reopen" is the status it goes back to).
STATUS_BUTTONS: dict[ComplaintStatus, tuple[tuple[str, ComplaintStatus], ...]] = {
    ComplaintStatus.open: (
        ("agent_btn_in_progress", ComplaintStatus.in_progress),
        ("agent_btn_resolved", ComplaintStatus.resolved),
    ),
    ComplaintStatus.in_progress: (("agent_btn_resolved", ComplaintStatus.resolved),),
    ComplaintStatus.resolved: (
        ("agent_btn_closed", ComplaintStatus.closed),
        ("agent_btn_reopen", ComplaintStatus.in_progress),
    ),
    ComplaintStatus.closed: (("agent_btn_reopen", ComplaintStatus.open),),
}
SEVERITY_MARKS = {"critical": "🔴", "high": "🟠", "medium": "🟡", "low": "🟢"}
DONE_MARK = "✅"
HANDOFF_MARKS = {
    HandoffStatus.waiting: "🙋",
    HandoffStatus.claimed: "💬",
    HandoffStatus.closed: DONE_MARK,
}
TOPIC_NAME_LIMIT = 128


def complaint_keyboard(context: DeskContext, complaint: Complaint) -> InlineKeyboardMarkup:
    """The buttons follow the complaint's state: only the moves it allows, and "assign to me"
    while nobody has it."""
    texts, lang = context.deps.texts, context.deps.config.default_language

    def button(label: str, data: str) -> InlineKeyboardButton:
        return InlineKeyboardButton(texts.render_plain(label, lang), callback_data=data)

    rows = [
        [
            button(label, build(Prefix.COMPLAINT_STATUS, complaint.id, target.value))
            for label, target in STATUS_BUTTONS[ComplaintStatus(complaint.status)]
        ]
    ]
    if complaint.assignee_id is None and complaint.status != ComplaintStatus.closed:
        rows.append([button("agent_btn_assign", build(Prefix.COMPLAINT_ASSIGN, complaint.id))])
    return InlineKeyboardMarkup(rows)


def complaint_topic_name(complaint: Complaint, customer: str | None) -> str:
    """``🔴 C-000123 · Ann K · in progress``: state and priority readable in the topic list,
    cut to Telegram's 128 characters (the reference always stays). Without a customer name
    (erased at their request) the reference and state alone."""
    done = complaint.status in (ComplaintStatus.resolved, ComplaintStatus.closed)
    mark = DONE_MARK if done else SEVERITY_MARKS.get(str(complaint.severity.value), "")
    return _topic_title(mark, complaint.reference, customer, status_label(complaint.status))


def handoff_topic_name(
    status: HandoffStatus, reference: str, customer: str | None, agent: str | None = None
) -> str:
    """``🙋 H-12 · Ann K · waiting``, ``💬 H-12 · Ann K · with Sam``, ``✅ H-12 · Ann K ·
    closed``: who is waiting for a person, and who has whom, readable in the topic list."""
    if status == HandoffStatus.claimed:
        state = f"with {' '.join((agent or 'an agent').split())}"
    else:
        state = status_label(status)
    return _topic_title(HANDOFF_MARKS.get(status, ""), reference, customer, state)


def _topic_title(mark: str, reference: str, customer: str | None, state: str) -> str:
    """``mark reference · customer · state`` within Telegram's limit: the state is cut
    first, then the customer's name; the reference always stays whole."""
    head = f"{mark} {reference}".strip()
    state = clip(state, max(TOPIC_NAME_LIMIT // 3, 1))
    if customer is None:
        return f"{head} · {state}"[:TOPIC_NAME_LIMIT]
    name = " ".join(customer.split()) or "Customer"
    room = TOPIC_NAME_LIMIT - len(head) - len(state) - 6
    return f"{head} · {clip(name, max(room, 1))} · {state}"[:TOPIC_NAME_LIMIT]


def digest(*parts: object) -> str:
    """A short fingerprint of what a message shows (text and buttons)."""
    blob = json.dumps([p.to_dict() if hasattr(p, "to_dict") else p for p in parts], default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def label_markup(context: DeskContext, template: str, **values: Any) -> InlineKeyboardMarkup:
    """A keyboard whose only button is a label (pressing it does nothing)."""
    label = context.deps.texts.render_plain(
        template, context.deps.config.default_language, **values
    )
    return InlineKeyboardMarkup([[InlineKeyboardButton(label, callback_data=build(Prefix.NOOP))]])


def claimed_markup(context: DeskContext, agent: Agent) -> InlineKeyboardMarkup:
    return label_markup(context, "agent_claimed_button", name=agent.display_name)


async def on_label_button(update: Update, context: DeskContext) -> None:
    """A label button (e.g. "Sam is on it"): just stop the spinner."""
    await answer_query(update)
