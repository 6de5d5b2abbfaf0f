"""Cards that follow their subject's state, within the agents' group's edit budget.

A card (a complaint's, a handoff's) shows its subject's state: text, buttons that follow the
state, and its forum topic's title (state and priority). Whatever changes that state calls
:func:`card_changed` (or :func:`refresh_complaint`, :func:`refresh_handoff_card`,
:func:`relabel_card`, :func:`erase_from_group`): the card is marked stale in the database
(``crm_core.services.card_refresh``) and then

- shown at once, in the same update, when it may be: not edited in the last
  ``card_refresh_seconds`` and room left in the group's ``card_edits_per_minute``. The first
  change after a quiet spell (an agent's button press) is therefore on screen before the
  agent's update is done;
- otherwise left to the refresher (:func:`refresh_cards_forever`, run by the application;
  :func:`sweep_stale_cards` does the same every sweep, for cards an instance left behind), which
  renders it when it is due from what the database holds *then*. A burst of 50 changes to one
  complaint is a few edits, the last showing the final state; a restart mid-burst loses
  nothing (the mark is in the database); two instances share the work (a lease per card, the
  group's budget counted in one locked row).

Edits and topic renames both spend the budget; a refresh that would change nothing sends
nothing (each message's digest, ``GroupMessageLink.shown_digest``), so Telegram never answers
"not modified". Opening and closing topics is not an edit of what a card shows and stays
immediate (agents must be able to write in a reopened topic at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from telegram.constants import ParseMode
from telegram.error import BadRequest, NetworkError, RetryAfter, TelegramError
from telegram.ext import Application

from crm_core.clock import utcnow
from crm_core.models import Handoff, HandoffStatus
from crm_core.services.agents import get_agent
from crm_core.services.card_refresh import (
    DueCard,
    finish_card,
    mark_card_stale,
    next_card_due,
    release_card,
    spend_edit_budget,
    take_due_cards,
)
from crm_core.services.complaints import list_customer_complaints
from crm_core.services.handoffs import (
    get_handoff,
    get_open_handoff,
    list_announced_handoffs,
    set_shown_digest,
    shown_digest,
)
from handlers.agents.announce import ComplaintSubject, HandoffSubject
from handlers.agents.cards import (
    claim_keyboard,
    claimed_markup,
    digest,
    handoff_card_html,
    handoff_reference,
    handoff_topic_name,
    is_erased,
    label_markup,
)
from handlers.core.context import DeskContext, update_scope
from handlers.core.send import release
from handlers.core.texts import split_telegram_html

log = logging.getLogger(__name__)

COMPLAINT = "complaint"
HANDOFF = "handoff"
WAKE_KEY = "deskbot.live_cards.wake"
PASS_KEY = "deskbot.live_cards.pass"
# The refresher looks for cards another instance left stale at least this often (seconds).
IDLE_POLL = 30.0
# After Telegram failed to answer (network), try the card again this much later.
NETWORK_RETRY = timedelta(seconds=5)


# --------------------------------------------------------------------------------------------
# Marking changes (called where the state changes)
# --------------------------------------------------------------------------------------------


async def card_changed(
    context: DeskContext, kind: str, subject_id: int, *, label: dict[str, Any] | None = None
) -> None:
    """What the card of ``kind`` ``subject_id`` shows has changed: mark it, and show it now
    if it may be edited now. Best effort: never raises."""
    try:
        await mark_card_stale(
            session=context.session, kind=kind, subject_id=subject_id, label=label
        )
        await refresh_stale_cards(context, only=(kind, subject_id))
    except Exception:
        log.exception("could not refresh the card of %s %s", kind, subject_id)
        with contextlib.suppress(Exception):
            await context.session.rollback()
    wake = context.application.bot_data.get(WAKE_KEY)
    if isinstance(wake, asyncio.Event):  # the refresher re-reads when the next card is due
        wake.set()


async def refresh_complaint(context: DeskContext, complaint_id: int) -> None:
    """The complaint's card (text, buttons) and topic title (state, priority) follow it."""
    await card_changed(context, COMPLAINT, complaint_id)


async def relabel_card(
    context: DeskContext, handoff: Handoff, template: str, **values: Any
) -> None:
    """The handoff's card button says ``template`` (rendered with ``values``) while the handoff
    keeps its present status (who resolved it, withdrawn...); the rest follows its state."""
    if handoff.id is None or handoff.chat_id is None:
        return
    label = {"status": handoff.status.value, "template": template, "values": values}
    await card_changed(context, HANDOFF, handoff.id, label=label)


async def refresh_handoff_card(context: DeskContext, customer_id: int) -> None:
    """The customer's open conversation shows who they are now (after sharing a phone that
    merged an imported record, the card gains its purchases and complaints)."""
    try:
        handoff = await get_open_handoff(session=context.session, customer_id=customer_id)
    except Exception:
        log.exception("could not find the conversation of customer %s", customer_id)
        return
    if handoff is not None and handoff.id is not None and handoff.chat_id is not None:
        await card_changed(context, HANDOFF, handoff.id)


async def erase_from_group(context: DeskContext, customer_id: int) -> None:
    """After /forgetme: the agents' group keeps no name of the customer in its topic list or on
    its cards. Every complaint's card is re-rendered (now without personal data) and its topic
    named by reference and state; every handoff's card is replaced by a short note and its
    topic named by its reference. Best effort: never raises."""
    try:
        handoffs = await list_announced_handoffs(session=context.session, customer_id=customer_id)
        complaints = await list_customer_complaints(
            session=context.session, customer_id=customer_id
        )
    except Exception:
        log.exception("could not erase customer %s from the agents' group", customer_id)
        return
    for handoff in handoffs:
        assert handoff.id is not None
        await card_changed(context, HANDOFF, handoff.id)
    for complaint in complaints:
        if complaint.group_chat_id is not None and complaint.id is not None:
            await card_changed(context, COMPLAINT, complaint.id)


# --------------------------------------------------------------------------------------------
# Refreshing (in the update that changed something, and in the refresher)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CardView:
    """What a card should show now: its message's text and buttons, its topic's title."""

    chat_id: int
    message_id: int | None
    html: str
    markup: Any
    topic_id: int | None = None
    topic_name: str | None = None


@dataclass(frozen=True)
class Edit:
    """One call to Telegram that makes a message (or topic, by its id) show ``digest``."""

    message_id: int
    digest: str
    send: Callable[[], Awaitable[object]]


async def refresh_stale_cards(
    context: DeskContext, *, only: tuple[str, int] | None = None
) -> datetime | None:
    """Refresh the stale cards that are due (``only``: this one, if it is). Returns when the
    next stale card will be due (None: none is stale)."""
    config = context.deps.config
    interval = timedelta(seconds=config.card_refresh_seconds)
    blocked: datetime | None = None
    for card in await take_due_cards(session=context.session, interval=interval, only=only):
        later = await _refresh(context, card)
        if later is not None:
            blocked = later if blocked is None else min(blocked, later)
    due = await next_card_due(session=context.session, interval=interval)
    if due is None or blocked is None:
        return due
    return max(due, blocked)  # one agents' group: its budget paces every card


async def _refresh(context: DeskContext, card: DueCard) -> datetime | None:
    """Render ``card`` and send what changed; None when done, else when to try again (the
    card stays stale)."""
    session = context.session
    try:
        view = await _render(context, card)
    except Exception:  # its subject is gone, or a bug: do not retry it forever
        log.exception("could not render the card of %s %s", card.kind, card.subject_id)
        await session.rollback()
        await finish_card(session=session, card=card, edited=False)
        return None
    edits = await _edits(context, view) if view is not None else []
    if not edits:
        await finish_card(session=session, card=card, edited=False)
        return None
    assert view is not None
    free_at = await spend_edit_budget(
        session=session,
        chat_id=view.chat_id,
        edits=len(edits),
        per_minute=context.deps.config.card_edits_per_minute,
    )
    if free_at is not None:
        await release_card(session=session, card=card)
        return free_at
    later = await _send(context, view.chat_id, edits)
    if later is not None:
        await release_card(session=session, card=card)
        return later
    await finish_card(session=session, card=card, edited=True)
    return None


async def _send(context: DeskContext, chat_id: int, edits: list[Edit]) -> datetime | None:
    """Send ``edits``, remembering what each message shows; None when done, else when to try
    again (Telegram said "later" or did not answer)."""
    for edit in edits:
        await release(context)
        try:
            await edit.send()
        except BadRequest as error:
            if "not modified" not in error.message.lower():  # deleted by hand, too old...
                log.info("could not edit %s in %s: %s", edit.message_id, chat_id, error)
                continue
        except RetryAfter as error:
            return utcnow() + _seconds(error.retry_after)
        except NetworkError as error:
            log.info("could not edit %s in %s: %s", edit.message_id, chat_id, error)
            return utcnow() + NETWORK_RETRY
        except TelegramError as error:  # the group migrated, the bot was removed...
            log.info("could not edit %s in %s: %s", edit.message_id, chat_id, error)
            continue
        await set_shown_digest(
            session=context.session, chat_id=chat_id, message_id=edit.message_id, digest=edit.digest
        )
    return None


def _seconds(value: int | timedelta) -> timedelta:
    return value if isinstance(value, timedelta) else timedelta(seconds=value)


async def _edits(context: DeskContext, view: CardView) -> list[Edit]:
    """The calls that make the group show ``view`` (none for what it shows already)."""
    bot, chat_id = context.bot, view.chat_id
    wanted: list[Edit] = []
    if view.message_id is not None:
        message_id, html, markup = view.message_id, view.html, view.markup

        async def edit_text() -> object:
            return await bot.edit_message_text(
                chat_id=chat_id,
                message_id=message_id,
                text=split_telegram_html(html)[0],
                parse_mode=ParseMode.HTML,
                reply_markup=markup,
            )

        wanted.append(Edit(message_id, digest(html, markup), edit_text))
    if view.topic_id is not None and view.topic_name is not None:
        topic_id, name = view.topic_id, view.topic_name

        async def rename() -> object:
            return await bot.edit_forum_topic(
                chat_id=chat_id, message_thread_id=topic_id, name=name
            )

        wanted.append(Edit(topic_id, digest(name), rename))
    session = context.session
    return [
        edit
        for edit in wanted
        if await shown_digest(session=session, chat_id=chat_id, message_id=edit.message_id)
        != edit.digest
    ]


async def _render(context: DeskContext, card: DueCard) -> CardView | None:
    """What the card should show, from the database now (None: it has no place to show)."""
    if card.kind == COMPLAINT:
        return await _complaint_view(context, card.subject_id)
    if card.kind == HANDOFF:
        return await _handoff_view(context, card.subject_id, card.label)
    raise ValueError(f"unknown card kind {card.kind!r}")


async def _complaint_view(context: DeskContext, complaint_id: int) -> CardView | None:
    subject = ComplaintSubject(complaint_id)
    complaint = await subject.complaint(context)
    if complaint.group_chat_id is None:
        return None
    html, markup = await subject.short_card(context)
    topic_id = complaint.group_topic_id
    name = await subject.topic_name(context) if topic_id is not None else None
    return CardView(
        complaint.group_chat_id, complaint.group_message_id, html, markup, topic_id, name
    )


async def _handoff_view(
    context: DeskContext, handoff_id: int, label: dict[str, Any] | None
) -> CardView | None:
    handoff = await get_handoff(session=context.session, handoff_id=handoff_id)
    if handoff.chat_id is None:
        return None
    if await is_erased(context, handoff.customer_id):  # a short note, named by reference
        reference = handoff_reference(handoff)
        html = context.deps.texts.render(
            "card_erased", context.deps.config.default_language, reference=reference
        )
        anonymous = handoff_topic_name(handoff.status, reference, None)
        return CardView(
            handoff.chat_id, handoff.card_message_id, html, None, handoff.topic_id, anonymous
        )
    html = await handoff_card_html(context, handoff)
    markup = await handoff_card_markup(context, handoff, label)
    name = await HandoffSubject(handoff_id).topic_name(context) if handoff.topic_id else None
    return CardView(handoff.chat_id, handoff.card_message_id, html, markup, handoff.topic_id, name)


async def handoff_card_markup(
    context: DeskContext, handoff: Handoff, label: dict[str, Any] | None = None
) -> Any:
    """The buttons a handoff's card shows in its state: Claim while waiting, who has it once
    claimed (a label), and the label set for its status (``relabel_card``: "Resolved by Sam",
    "Withdrawn"...), which a later status (a reopened conversation) overrides."""
    if label is not None and label.get("status") == handoff.status.value:
        return label_markup(context, str(label["template"]), **dict(label.get("values") or {}))
    if handoff.status == HandoffStatus.waiting:
        return claim_keyboard(context, handoff)
    agent = (
        await get_agent(session=context.session, agent_id=handoff.agent_id)
        if (handoff.agent_id is not None)
        else None
    )
    if agent is None or handoff.status == HandoffStatus.closed:
        return None
    return claimed_markup(context, agent)


# --------------------------------------------------------------------------------------------
# The refresher
# --------------------------------------------------------------------------------------------


async def sweep_stale_cards(context: DeskContext) -> None:
    """Every sweep: cards left stale (an instance stopped before it could show them)."""
    await refresh_stale_cards(context)


def next_pass(application: Application[Any, Any, Any, Any, Any, Any]) -> asyncio.Event:
    """Set when the refresher's pass in flight (or its next one) has finished (tests wait on
    it to know no card is half-way through a refresh)."""
    event = application.bot_data.setdefault(PASS_KEY, asyncio.Event())
    assert isinstance(event, asyncio.Event)
    return event


async def refresh_cards_forever(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
    """Show each stale card when it is due, until cancelled; woken early by a change made in
    this instance (:func:`card_changed`), and looking again at least every ``IDLE_POLL``."""
    wake = application.bot_data.setdefault(WAKE_KEY, asyncio.Event())
    assert isinstance(wake, asyncio.Event)
    deps = DeskContext(application).deps
    while True:
        wake.clear()
        delay = IDLE_POLL
        try:
            async with update_scope(deps.session_factory):
                due = await refresh_stale_cards(DeskContext(application))
            if due is not None:
                delay = min(max((due - utcnow()).total_seconds(), 0.05), IDLE_POLL)
        except Exception:
            log.exception("the card refresher failed; trying again in %s s", IDLE_POLL)
        finished = next_pass(application)
        application.bot_data[PASS_KEY] = asyncio.Event()
        finished.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), delay)
