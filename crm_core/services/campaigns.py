"""Campaigns: a message to the customers of a segment, sent once each, measured against a
random hold-out group of the same segment.

- **Targeting** (:func:`audience_query`) is one SQL query: the criteria combined with AND,
  minus everyone who may not or cannot be written to (opted out, blocked the bot since they
  last wrote, erased, merged away, no Telegram chat).
- **Starting** (:func:`start_sending`) freezes the segment: one ``campaign_recipient`` row per
  customer, a reproducible share of them (seeded by the campaign) in the hold-out, never sent.
- **Sending** is claimed one recipient at a time (:func:`claim_next`: ``pending`` ->
  ``sending``, committed before the message goes out, then ``sent`` or ``failed``). A process
  killed between the two leaves a ``sending`` row; :func:`settle_stale_claims` later marks it
  ``sent`` if the message's Interaction was logged, else ``failed`` with reason
  ``unknown_after_crash``: never sent again, since Telegram may have delivered it.
- **Attribution and report** (:func:`campaign_report`): sends, button presses and opt-outs are
  Interactions with ``campaign_id``; replies (any inbound message) and purchases are attributed
  by time window (``started_at`` .. + ``attribution_days``) in the report's SQL, for both
  cohorts alike, so the hold-out measures what would have happened anyway.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Awaitable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Text,
    and_,
    case,
    cast,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.clock import as_utc, utcnow
from crm_core.errors import InvalidInput, NotFound
from crm_core.models import (
    Campaign,
    CampaignRecipient,
    CampaignStatus,
    Channel,
    ChannelIdentity,
    Complaint,
    ComplaintStatus,
    Customer,
    Direction,
    Interaction,
    InteractionKind,
    Purchase,
    RecipientGroup,
    RecipientStatus,
)
from crm_core.services._sql import dialect_insert, unit_of_work
from crm_core.services.app_state import get_state, set_state
from crm_core.services.rfm import DEFAULT_WINDOW_DAYS, segment_for
from crm_core.services.segments import SEGMENT_ORDER, score_source

CRITERIA_KEYS = (
    "segment", "tag", "purchased_before", "purchased_after", "open_complaint", "language",
)  # fmt: skip
BUTTON_KINDS = ("link", "talk", "stop")
MAX_HOLDOUT_SHARE = 0.5
UNKNOWN_AFTER_CRASH = "unknown_after_crash"
_YES = {"yes", "true", "1", "y", "ja"}
_NO = {"no", "false", "0", "n", "nein"}


def _core(session: AsyncSession, stmt: Any) -> Awaitable[Any]:
    """``session.exec`` for SQLAlchemy Core selects (SQLModel's overloads type only its own)."""
    return session.exec(stmt)


class CampaignNotFound(NotFound):
    pass


class InvalidCampaign(InvalidInput):
    """Criteria, buttons or a campaign's state that do not allow what was asked."""


# --------------------------------------------------------------------------------------------
# Criteria
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Criteria:
    segment: str | None = None
    tag: str | None = None
    purchased_before: date | None = None
    purchased_after: date | None = None
    open_complaint: bool | None = None
    language: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if v is not None}
        for key in ("purchased_before", "purchased_after"):
            if key in data:
                data[key] = data[key].isoformat()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Criteria:
        return parse_criteria({k: str(v) for k, v in data.items()})


def segment_name(text: str) -> str:
    """``at_risk`` / ``AT RISK`` -> ``At risk``; raises for an unknown segment."""
    wanted = text.strip().replace("_", " ").lower()
    for name in SEGMENT_ORDER:
        if name.lower() == wanted:
            return name
    known = ", ".join(SEGMENT_ORDER)
    raise InvalidCampaign(f"There is no segment {text!r}. Segments: {known}.")


def parse_criteria(values: dict[str, str]) -> Criteria:
    """Criteria from ``{key: text}``; a clear :class:`InvalidCampaign` for anything wrong."""
    unknown = sorted(set(values) - set(CRITERIA_KEYS))
    if unknown:
        raise InvalidCampaign(
            f"Unknown criterion {', '.join(unknown)}; use {', '.join(CRITERIA_KEYS)}."
        )
    fields: dict[str, Any] = {}
    for key, raw in values.items():
        text = raw.strip()
        if not text:
            raise InvalidCampaign(f"The criterion {key} has no value.")
        if key == "segment":
            fields[key] = segment_name(text)
        elif key in ("purchased_before", "purchased_after"):
            try:
                fields[key] = date.fromisoformat(text)
            except ValueError:
                raise InvalidCampaign(
                    f"{key} needs a date like 2026-01-31, not {text!r}."
                ) from None
        elif key == "open_complaint":
            if text.lower() not in _YES | _NO:
                raise InvalidCampaign(f"open_complaint is yes or no, not {text!r}.")
            fields[key] = text.lower() in _YES
        elif key == "tag":
            fields[key] = text.lower()
        else:
            if not re.fullmatch(r"[A-Za-z]{2,3}", text):
                raise InvalidCampaign(f"language is a code like en or de, not {text!r}.")
            fields[key] = text.lower()
    return Criteria(**fields)


_CRITERION = re.compile(rf"\b({'|'.join(CRITERIA_KEYS)}|[a-z_]+)\s*=")


def parse_criteria_text(text: str) -> Criteria:
    """``segment=At risk tag=vip open_complaint=no`` (values may hold spaces); ``all`` or an
    empty text is every reachable customer."""
    text = text.strip()
    if text.lower() in ("", "all", "-"):
        return Criteria()
    matches = list(_CRITERION.finditer(text))
    if not matches or matches[0].start() != 0:
        raise InvalidCampaign(
            "Write the criteria as key=value, e.g. segment=At risk tag=vip language=de, "
            "or all for every customer."
        )
    values: dict[str, str] = {}
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        key = match.group(1)
        if key in values:
            raise InvalidCampaign(f"The criterion {key} is given twice.")
        values[key] = text[match.end() : end]
    return parse_criteria(values)


def parse_buttons(text: str) -> list[dict[str, Any]]:
    """One button a line: ``link Label https://...``, ``talk``, ``stop``; ``none`` for none."""
    buttons: list[dict[str, Any]] = []
    for line in text.strip().splitlines():
        words = line.split()
        if not words or (len(words) == 1 and words[0].lower() in ("none", "-")):
            continue
        kind = words[0].lower()
        if kind == "link":
            url = words[-1] if len(words) >= 3 else ""
            if not re.fullmatch(r"https?://\S+", url):
                raise InvalidCampaign("A link button is: link Label https://example.com/page")
            buttons.append({"kind": "link", "label": " ".join(words[1:-1])[:40], "url": url})
        elif kind in ("talk", "stop") and len(words) == 1:
            if any(b["kind"] == kind for b in buttons):
                raise InvalidCampaign(f"The {kind} button is given twice.")
            buttons.append({"kind": kind})
        else:
            raise InvalidCampaign(
                f"Unknown button {line.strip()!r}: use link Label URL, talk, stop or none."
            )
    return buttons


# --------------------------------------------------------------------------------------------
# Targeting
# --------------------------------------------------------------------------------------------


def reachable_clause() -> Any:
    """Whom a campaign may write to at all (consent, erasure, a chat, not blocked)."""
    has_chat = exists().where(
        col(ChannelIdentity.customer_id) == col(Customer.id),
        col(ChannelIdentity.channel) == Channel.telegram,
    )
    return and_(
        col(Customer.merged_into_id).is_(None),
        col(Customer.anonymized_at).is_(None),
        col(Customer.marketing_opt_out_at).is_(None),
        or_(
            col(Customer.unreachable_at).is_(None),
            col(Customer.last_seen_at) > col(Customer.unreachable_at),
        ),
        has_chat,
    )


def _day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


async def audience_query(session: AsyncSession, criteria: Criteria) -> Any:
    """``SELECT customer.id`` of the reachable customers matching every criterion."""
    stmt: Any = select(col(Customer.id)).where(reachable_clause())
    if criteria.segment is not None:
        source = await score_source(session, None, DEFAULT_WINDOW_DAYS)
        scores = source.query.subquery()
        cells = [
            and_(scores.c.r == r, scores.c.f == f)
            for r in range(1, 6)
            for f in range(1, 6)
            if segment_for(r, f) == criteria.segment
        ]
        stmt = stmt.where(col(Customer.id).in_(select(scores.c.customer_id).where(or_(*cells))))
    if criteria.tag is not None:
        # Tags are a JSON list of strings; its text holds the tag as a quoted JSON string,
        # which no other tag's text can contain (quotes inside a tag are escaped).
        stmt = stmt.where(
            cast(col(Customer.tags), Text).contains(json.dumps(criteria.tag), autoescape=True)
        )
    if criteria.purchased_before is not None or criteria.purchased_after is not None:
        last = (
            select(
                col(Purchase.customer_id).label("customer_id"),
                func.max(col(Purchase.purchased_at)).label("last_at"),
            )
            .where(col(Purchase.amount_minor) > 0)
            .group_by(col(Purchase.customer_id))
            .subquery()
        )
        stmt = stmt.join(last, last.c.customer_id == col(Customer.id))
        if criteria.purchased_before is not None:
            stmt = stmt.where(last.c.last_at < _day_start(criteria.purchased_before))
        if criteria.purchased_after is not None:
            stmt = stmt.where(last.c.last_at >= _day_start(criteria.purchased_after))
    if criteria.open_complaint is not None:
        open_complaint = exists().where(
            col(Complaint.customer_id) == col(Customer.id),
            col(Complaint.status).in_([ComplaintStatus.open, ComplaintStatus.in_progress]),
        )
        stmt = stmt.where(open_complaint if criteria.open_complaint else ~open_complaint)
    if criteria.language is not None:
        language = func.lower(col(Customer.language))
        stmt = stmt.where(
            or_(language == criteria.language, language.like(f"{criteria.language}-%"))
        )
    return stmt


@dataclass(frozen=True)
class Audience:
    count: int
    sample: list[Customer]  # the first few, to preview the message on


async def audience(*, session: AsyncSession, criteria: Criteria, sample_size: int = 3) -> Audience:
    """How many customers the criteria reach now, and a few of them (random, reproducible)."""
    async with unit_of_work(session):
        ids = await _audience_ids(session, criteria)
        picked = random.Random(len(ids)).sample(ids, min(sample_size, len(ids)))
        sample = [c for c in [await session.get(Customer, i) for i in sorted(picked)] if c]
    return Audience(count=len(ids), sample=sample)


async def _audience_ids(session: AsyncSession, criteria: Criteria) -> list[int]:
    stmt = await audience_query(session, criteria)
    return sorted(int(i) for i in (await session.exec(stmt)).scalars().all())


def split_holdout(customer_ids: Sequence[int], share: float, seed: int) -> set[int]:
    """The hold-out: ``round(share * n)`` of the ids, drawn by a generator seeded with the
    campaign, so the same campaign and segment always give the same draw."""
    ordered = sorted(customer_ids)
    rng = random.Random(f"campaign:{seed}")
    return set(rng.sample(ordered, round(len(ordered) * share)))


# --------------------------------------------------------------------------------------------
# The campaign's life
# --------------------------------------------------------------------------------------------


async def create_campaign(
    *,
    session: AsyncSession,
    name: str,
    criteria: Criteria,
    template: str,
    buttons: list[dict[str, Any]],
    created_by: int | None,
    holdout_share: float = 0.1,
    attribution_days: int = 14,
) -> Campaign:
    check_measurement(holdout_share, attribution_days)
    if not name.strip() or len(name.strip()) > 100:
        raise InvalidCampaign("A campaign's name is 1 to 100 characters.")
    for button in buttons:
        if button.get("kind") not in BUTTON_KINDS:
            raise InvalidCampaign(f"Unknown button {button!r}.")
    campaign = Campaign(
        name=name.strip(),
        criteria=criteria.to_json(),
        template=template,
        buttons=buttons,
        holdout_share=holdout_share,
        attribution_days=attribution_days,
        created_by=created_by,
    )
    async with unit_of_work(session):
        session.add(campaign)
        await session.flush()
    return campaign


def check_measurement(holdout_share: float, attribution_days: int) -> None:
    if not 0 <= holdout_share <= MAX_HOLDOUT_SHARE:
        raise InvalidCampaign(f"The hold-out share is between 0% and {MAX_HOLDOUT_SHARE:.0%}.")
    if not 1 <= attribution_days <= 365:
        raise InvalidCampaign("The attribution window is 1 to 365 days.")


async def configure_campaign(
    *,
    session: AsyncSession,
    campaign_id: int,
    holdout_share: float | None = None,
    attribution_days: int | None = None,
) -> Campaign:
    """Change how a campaign is measured: its hold-out share (while it is a draft: the draw
    happens at the start) and its attribution window (any time: it only changes the report)."""
    async with unit_of_work(session):
        campaign = await session.get(Campaign, campaign_id, populate_existing=True)
        if campaign is None:
            raise CampaignNotFound(f"There is no campaign #{campaign_id}.")
        if holdout_share is not None and campaign.status != CampaignStatus.draft:
            raise InvalidCampaign(
                f"Campaign #{campaign_id} is {campaign.status}: its hold-out is drawn already."
            )
        share = campaign.holdout_share if holdout_share is None else holdout_share
        days = campaign.attribution_days if attribution_days is None else attribution_days
        check_measurement(share, days)
        campaign.holdout_share, campaign.attribution_days = share, days
        await session.flush()
    return campaign


async def get_campaign(*, session: AsyncSession, campaign_id: int) -> Campaign:
    async with unit_of_work(session):
        campaign = await session.get(Campaign, campaign_id, populate_existing=True)
    if campaign is None:
        raise CampaignNotFound(f"There is no campaign #{campaign_id}.")
    return campaign


async def list_campaigns(*, session: AsyncSession, limit: int = 20) -> list[Campaign]:
    async with unit_of_work(session):
        stmt = select(Campaign).order_by(col(Campaign.id).desc()).limit(limit)
        return list((await _core(session, stmt)).scalars().all())


async def start_sending(
    *, session: AsyncSession, campaign_id: int, now: datetime | None = None
) -> tuple[int, int]:
    """Freeze the segment into recipients (treatment and hold-out) and let the sender go;
    returns (treatment, hold-out) counts. Only a draft starts (a second press does nothing
    twice: the status changes from draft in one conditional UPDATE)."""
    now = now or utcnow()
    async with unit_of_work(session):
        campaign = await session.get(Campaign, campaign_id, populate_existing=True)
        if campaign is None:
            raise CampaignNotFound(f"There is no campaign #{campaign_id}.")
        started = await session.exec(
            update(Campaign)
            .where(col(Campaign.id) == campaign_id, col(Campaign.status) == CampaignStatus.draft)
            .values(status=CampaignStatus.sending, started_at=now, updated_at=now)
        )
        if started.rowcount != 1:
            raise InvalidCampaign(f"Campaign #{campaign_id} is {campaign.status}, not a draft.")
        ids = await _audience_ids(session, Criteria.from_json(campaign.criteria))
        if not ids:
            raise InvalidCampaign("Nobody matches this campaign's criteria: nothing to send.")
        holdout = split_holdout(ids, campaign.holdout_share, campaign_id)
        rows = [
            {
                "campaign_id": campaign_id,
                "customer_id": cid,
                "cohort": RecipientGroup.holdout if cid in holdout else RecipientGroup.treatment,
                "status": RecipientStatus.skipped if cid in holdout else RecipientStatus.pending,
                "reason": "holdout" if cid in holdout else None,
                "created_at": now,
            }
            for cid in ids
        ]
        # Core executemany (not the ORM's bulk path): a large segment is written in seconds.
        connection = await session.connection()
        await connection.execute(insert(CampaignRecipient.__table__), rows)  # type: ignore[attr-defined]
    return len(ids) - len(holdout), len(holdout)


async def cancel_campaign(
    *, session: AsyncSession, campaign_id: int, now: datetime | None = None
) -> int:
    """Stop a draft or a sending campaign; returns how many recipients will not be sent."""
    now = now or utcnow()
    async with unit_of_work(session):
        cancelled = await session.exec(
            update(Campaign)
            .where(
                col(Campaign.id) == campaign_id,
                col(Campaign.status).in_([CampaignStatus.draft, CampaignStatus.sending]),
            )
            .values(status=CampaignStatus.cancelled, finished_at=now, updated_at=now)
        )
        if cancelled.rowcount != 1:
            campaign = await session.get(Campaign, campaign_id)
            if campaign is None:
                raise CampaignNotFound(f"There is no campaign #{campaign_id}.")
            raise InvalidCampaign(f"Campaign #{campaign_id} is {campaign.status} already.")
        unsent = await session.exec(
            update(CampaignRecipient)
            .where(
                col(CampaignRecipient.campaign_id) == campaign_id,
                col(CampaignRecipient.status) == RecipientStatus.pending,
            )
            .values(status=RecipientStatus.skipped, reason="cancelled")
        )
    return int(unsent.rowcount or 0)


# --------------------------------------------------------------------------------------------
# Sending
# --------------------------------------------------------------------------------------------


def recipient_key(campaign_id: int, customer_id: int) -> str:
    """The idempotency key of a recipient's message (its Interaction)."""
    return f"campaign:{campaign_id}:{customer_id}"


@dataclass(frozen=True)
class Claimed:
    recipient_id: int
    campaign_id: int
    customer_id: int
    key: str


async def sending_campaigns(*, session: AsyncSession) -> list[Campaign]:
    async with unit_of_work(session):
        stmt = (
            select(Campaign)
            .where(col(Campaign.status) == CampaignStatus.sending)
            .order_by(col(Campaign.id))
        )
        return list((await _core(session, stmt)).scalars().all())


async def claim_next(
    *, session: AsyncSession, campaign_id: int, now: datetime | None = None
) -> Claimed | None:
    """Take the campaign's next pending recipient (``sending``, committed), skipping those who
    became unreachable since the start; None when none is left."""
    now = now or utcnow()
    while True:
        async with unit_of_work(session):
            # One round trip: the next pending recipient and whether they may still be sent to.
            reachable = (
                select(col(Customer.id))
                .where(col(Customer.id) == col(CampaignRecipient.customer_id), reachable_clause())
                .exists()
            )
            row = (
                await _core(
                    session,
                    select(
                        col(CampaignRecipient.id),
                        col(CampaignRecipient.customer_id),
                        case((reachable, 1), else_=0),
                    )
                    .join(Campaign, col(Campaign.id) == col(CampaignRecipient.campaign_id))
                    .where(
                        col(CampaignRecipient.campaign_id) == campaign_id,
                        col(CampaignRecipient.status) == RecipientStatus.pending,
                        col(Campaign.status) == CampaignStatus.sending,
                    )
                    .order_by(col(CampaignRecipient.id))
                    .limit(1),
                )
            ).first()
            if row is None:
                return None
            recipient_id, customer_id = int(row[0]), int(row[1])
            still_reachable = bool(row[2])
            status = RecipientStatus.sending if still_reachable else RecipientStatus.skipped
            taken = await session.exec(
                update(CampaignRecipient)
                .where(
                    col(CampaignRecipient.id) == recipient_id,
                    col(CampaignRecipient.status) == RecipientStatus.pending,
                )
                .values(
                    status=status,
                    claimed_at=now,
                    reason=None if still_reachable else "unreachable_since_start",
                )
            )
        if taken.rowcount == 1 and still_reachable:
            return Claimed(
                recipient_id, campaign_id, customer_id, recipient_key(campaign_id, customer_id)
            )
        # Someone else took it, or it was skipped: the next one.


async def mark_sent(
    *, session: AsyncSession, claimed: Claimed, now: datetime | None = None
) -> None:
    """The message went out: the recipient is ``sent`` and its Interaction tied to the
    campaign (found by its idempotency key)."""
    now = now or utcnow()
    async with unit_of_work(session):
        await session.exec(
            update(CampaignRecipient)
            .where(col(CampaignRecipient.id) == claimed.recipient_id)
            .values(status=RecipientStatus.sent, sent_at=now, reason=None)
        )
        await session.exec(
            update(Interaction)
            .where(col(Interaction.idempotency_key) == claimed.key)
            .values(campaign_id=claimed.campaign_id)
        )


async def release_claim(*, session: AsyncSession, claimed: Claimed) -> None:
    """Nothing was sent (Telegram asked to wait): the recipient is pending again."""
    async with unit_of_work(session):
        await session.exec(
            update(CampaignRecipient)
            .where(
                col(CampaignRecipient.id) == claimed.recipient_id,
                col(CampaignRecipient.status) == RecipientStatus.sending,
            )
            .values(status=RecipientStatus.pending, claimed_at=None)
        )


async def mark_failed(
    *,
    session: AsyncSession,
    claimed: Claimed,
    reason: str,
    blocked: bool = False,
    now: datetime | None = None,
) -> None:
    """The message did not go out (``blocked``: Telegram refused it; the customer is recorded
    as unreachable until they write again)."""
    now = now or utcnow()
    async with unit_of_work(session):
        await session.exec(
            update(CampaignRecipient)
            .where(col(CampaignRecipient.id) == claimed.recipient_id)
            .values(status=RecipientStatus.failed, reason=reason[:64])
        )
        if blocked:
            await session.exec(
                update(Customer)
                .where(col(Customer.id) == claimed.customer_id)
                .values(unreachable_at=now)
            )


async def settle_stale_claims(
    *, session: AsyncSession, older_than: timedelta, now: datetime | None = None
) -> int:
    """``sending`` rows claimed longer ago than ``older_than`` were cut off by a crash. Those
    whose message was logged are ``sent``; the others ``failed`` (``unknown_after_crash``):
    Telegram may have delivered them, so they are never sent again. Returns how many."""
    now = now or utcnow()
    cutoff = now - older_than
    stale = and_(
        col(CampaignRecipient.status) == RecipientStatus.sending,
        col(CampaignRecipient.claimed_at) < cutoff,
    )
    async with unit_of_work(session):
        rows = (
            await _core(
                session,
                select(
                    col(CampaignRecipient.id),
                    col(CampaignRecipient.campaign_id),
                    col(CampaignRecipient.customer_id),
                ).where(stale),
            )
        ).all()
        for recipient_id, campaign_id, customer_id in rows:
            key = recipient_key(int(campaign_id), int(customer_id))
            logged = (
                await _core(
                    session,
                    select(col(Interaction.occurred_at)).where(
                        col(Interaction.idempotency_key) == key
                    ),
                )
            ).scalar()
            values: dict[str, Any] = (
                {"status": RecipientStatus.sent, "sent_at": logged}
                if logged is not None
                else {"status": RecipientStatus.failed, "reason": UNKNOWN_AFTER_CRASH}
            )
            await session.exec(
                update(CampaignRecipient)
                .where(col(CampaignRecipient.id) == recipient_id, stale)
                .values(**values)
            )
            if logged is not None:
                await session.exec(
                    update(Interaction)
                    .where(col(Interaction.idempotency_key) == key)
                    .values(campaign_id=campaign_id)
                )
    return len(rows)


async def finish_if_complete(
    *, session: AsyncSession, campaign_id: int, now: datetime | None = None
) -> bool:
    """A sending campaign with nobody pending or in flight is done; True when it was closed."""
    now = now or utcnow()
    async with unit_of_work(session):
        open_rows = exists().where(
            col(CampaignRecipient.campaign_id) == campaign_id,
            col(CampaignRecipient.status).in_([RecipientStatus.pending, RecipientStatus.sending]),
        )
        done = await session.exec(
            update(Campaign)
            .where(
                col(Campaign.id) == campaign_id,
                col(Campaign.status) == CampaignStatus.sending,
                ~open_rows,
            )
            .values(status=CampaignStatus.done, finished_at=now, updated_at=now)
        )
    return done.rowcount == 1


# --------------------------------------------------------------------------------------------
# Consent
# --------------------------------------------------------------------------------------------


async def opt_out(
    *,
    session: AsyncSession,
    customer_id: int,
    source: str,
    campaign_id: int | None = None,
    now: datetime | None = None,
) -> bool:
    """Record that the customer wants no campaigns (kept with where it came from and when);
    False when they had opted out already (the first time and source stay)."""
    now = now or utcnow()
    async with unit_of_work(session):
        changed = await session.exec(
            update(Customer)
            .where(col(Customer.id) == customer_id, col(Customer.marketing_opt_out_at).is_(None))
            .values(marketing_opt_out_at=now, marketing_opt_out_source=source[:64])
        )
        if changed.rowcount == 1:
            session.add(
                Interaction(
                    customer_id=customer_id,
                    channel=Channel.telegram,
                    direction=Direction.inbound,
                    kind=InteractionKind.campaign,
                    details={"event": "opt_out", "source": source},
                    campaign_id=campaign_id,
                    occurred_at=now,
                )
            )
    return changed.rowcount == 1


async def opt_in(*, session: AsyncSession, customer_id: int, now: datetime | None = None) -> bool:
    """The customer asked for campaigns again (their own /subscribe); False if they had not
    opted out."""
    now = now or utcnow()
    async with unit_of_work(session):
        changed = await session.exec(
            update(Customer)
            .where(col(Customer.id) == customer_id, col(Customer.marketing_opt_out_at).is_not(None))
            .values(marketing_opt_out_at=None, marketing_opt_out_source=None)
        )
        if changed.rowcount == 1:
            session.add(
                Interaction(
                    customer_id=customer_id,
                    channel=Channel.telegram,
                    direction=Direction.inbound,
                    kind=InteractionKind.campaign,
                    details={"event": "opt_in"},
                    occurred_at=now,
                )
            )
    return changed.rowcount == 1


async def record_press(
    *, session: AsyncSession, customer_id: int, campaign_id: int, button: str
) -> None:
    """A press of a campaign's button, on the customer's timeline and the campaign's count."""
    async with unit_of_work(session):
        session.add(
            Interaction(
                customer_id=customer_id,
                channel=Channel.telegram,
                direction=Direction.inbound,
                kind=InteractionKind.campaign,
                details={"event": "button", "button": button},
                campaign_id=campaign_id,
            )
        )


# --------------------------------------------------------------------------------------------
# Attribution: what recipients did after the message, tied to the campaign
# --------------------------------------------------------------------------------------------

# Windows that ended up to this long ago are still swept (a sweeper that was down catches up).
ATTRIBUTION_GRACE = timedelta(days=7)
ATTRIBUTION_OVERLAP = timedelta(minutes=10)
ATTRIBUTION_STATE = "campaign_attribution"
# What a reply is: the customer wrote (a button press is counted as such already).
REPLY_KINDS = (InteractionKind.message, InteractionKind.command)


@dataclass(frozen=True)
class Attributed:
    replies: int = 0  # inbound Interactions given the campaign's id
    purchases: int = 0  # purchases recorded as the campaign's Interactions


PURCHASE_KEY = "campaign-purchase:"


def purchase_key(purchase_id: int) -> str:
    """A purchase is tied to one campaign at most (the newest whose window holds it)."""
    return f"{PURCHASE_KEY}{purchase_id}"


async def attribute_responses(*, session: AsyncSession, now: datetime | None = None) -> Attributed:
    """Tie what treatment recipients did within a campaign's window (from their message to
    ``started_at + attribution_days``) to the campaign: their inbound messages get its
    ``campaign_id``, and each purchase becomes an internal Interaction of the campaign
    (``details``: purchase id and amount). The newest campaign takes what two could claim.
    Idempotent, so the sweep may run any number of times; the report's cohort figures still
    count by time window for both cohorts alike (the hold-out gets no such rows)."""
    now = now or utcnow()
    replies = purchases = 0
    mark = await get_state(session=session, key=ATTRIBUTION_STATE)
    # Messages are looked at once (since the last run, with an overlap for transactions that
    # committed late), not the whole window every sweep; purchases, fewer and sometimes
    # imported late, are looked at over the whole window.
    since = datetime.fromisoformat(mark["at"]) - ATTRIBUTION_OVERLAP if mark else None
    async with unit_of_work(session):
        recent = (
            select(Campaign)
            .where(
                col(Campaign.started_at).is_not(None),
                col(Campaign.started_at) >= now - timedelta(days=366) - ATTRIBUTION_GRACE,
            )
            .order_by(col(Campaign.started_at).desc(), col(Campaign.id).desc())
        )
        started = (await _core(session, recent)).scalars().all()
        for campaign in started:
            start = as_utc(campaign.started_at) if campaign.started_at else now
            end = min(start + timedelta(days=campaign.attribution_days), now)
            if campaign.id is None or end < now - ATTRIBUTION_GRACE or end <= start:
                continue
            replies += await _tie_replies(session, campaign.id, max(start, since or start), end)
            purchases += await _tie_purchases(session, campaign.id, start, end)
    await set_state(session=session, key=ATTRIBUTION_STATE, value={"at": now.isoformat()})
    return Attributed(replies=replies, purchases=purchases)


def _sent_before(campaign_id: int, customer: Any, moment: Any) -> Any:
    """The customer was sent this campaign's message before ``moment``."""
    recipient = CampaignRecipient
    return exists().where(
        col(recipient.campaign_id) == campaign_id,
        col(recipient.customer_id) == customer,
        col(recipient.cohort) == RecipientGroup.treatment,
        col(recipient.status) == RecipientStatus.sent,
        col(recipient.sent_at) <= moment,
    )


async def _tie_replies(
    session: AsyncSession, campaign_id: int, start: datetime, end: datetime
) -> int:
    stmt = (
        update(Interaction)
        .where(
            col(Interaction.kind).in_(REPLY_KINDS),
            col(Interaction.occurred_at) >= start,
            col(Interaction.campaign_id).is_(None),
            col(Interaction.direction) == Direction.inbound,
            col(Interaction.text).is_not(None),  # written; a button press is counted apart
            col(Interaction.occurred_at) < end,
            col(Interaction.customer_id).is_not(None),
            _sent_before(campaign_id, col(Interaction.customer_id), col(Interaction.occurred_at)),
        )
        .values(campaign_id=campaign_id)
        .execution_options(synchronize_session=False)
    )
    return int((await session.exec(stmt)).rowcount or 0)


async def _tie_purchases(
    session: AsyncSession, campaign_id: int, start: datetime, end: datetime
) -> int:
    key = literal(PURCHASE_KEY) + cast(col(Purchase.id), Text)
    recipient = CampaignRecipient
    # Driven by the campaign's recipients (one row per customer), so each one's purchases are
    # an index seek (customer, time) rather than a scan of every purchase in the window.
    candidates = (
        await _core(
            session,
            select(
                col(Purchase.id),
                col(Purchase.customer_id),
                col(Purchase.amount_minor),
                col(Purchase.currency),
                col(Purchase.purchased_at),
            )
            .select_from(recipient)
            .join(Purchase, col(Purchase.customer_id) == col(recipient.customer_id))
            .where(
                col(recipient.campaign_id) == campaign_id,
                col(recipient.cohort) == RecipientGroup.treatment,
                col(recipient.status) == RecipientStatus.sent,
                col(Purchase.purchased_at) >= col(recipient.sent_at),
                col(Purchase.purchased_at) >= start,
                col(Purchase.purchased_at) < end,
                ~exists().where(col(Interaction.idempotency_key) == key),
            ),
        )
    ).all()
    rows = [
        {
            "customer_id": customer_id,
            "channel": Channel.telegram.value,
            "direction": Direction.internal.value,
            "kind": InteractionKind.campaign.value,
            "details": {
                "event": "purchase",
                "purchase_id": purchase_id,
                "amount_minor": int(amount),
                "currency": currency,
            },
            "occurred_at": as_utc(purchased_at),
            "campaign_id": campaign_id,
            "idempotency_key": purchase_key(purchase_id),
        }
        for purchase_id, customer_id, amount, currency, purchased_at in candidates
    ]
    for batch in range(0, len(rows), 500):
        stmt = (
            dialect_insert(session, Interaction)
            .values(rows[batch : batch + 500])
            .on_conflict_do_nothing(index_elements=["idempotency_key"])
        )
        await session.exec(stmt)
    return len(rows)


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CohortFigures:
    recipients: int = 0
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    responded: int = 0  # wrote to us or pressed a button within the window
    opted_out: int = 0
    buyers: int = 0
    revenue_minor: int = 0

    @property
    def revenue_per_recipient(self) -> float:
        return self.revenue_minor / self.recipients if self.recipients else 0.0

    @property
    def conversion(self) -> float:
        return self.buyers / self.recipients if self.recipients else 0.0


@dataclass(frozen=True)
class CampaignReport:
    campaign: Campaign
    window_start: datetime | None
    window_end: datetime | None
    treatment: CohortFigures
    holdout: CohortFigures
    presses: int
    pending: int
    unknown: int  # cut off by a crash: maybe delivered, never resent
    tied_replies: int = 0  # recipients' messages within the window, tied by the sweep
    tied_purchases: int = 0  # recipients' purchases within the window, tied by the sweep
    by_reason: dict[str, int] = field(default_factory=dict)

    @property
    def incremental_revenue_minor(self) -> float:
        """What the treatment group bought beyond the hold-out's rate, in minor units."""
        gain = self.treatment.revenue_per_recipient - self.holdout.revenue_per_recipient
        return gain * self.treatment.recipients

    @property
    def revenue_lift(self) -> float | None:
        """Relative lift of revenue per recipient over the hold-out (None without a base)."""
        base = self.holdout.revenue_per_recipient
        if not self.holdout.recipients or base == 0:
            return None
        return (self.treatment.revenue_per_recipient - base) / base

    @property
    def conversion_lift(self) -> float | None:
        base = self.holdout.conversion
        if not self.holdout.recipients or base == 0:
            return None
        return (self.treatment.conversion - base) / base


async def campaign_report(
    *, session: AsyncSession, campaign_id: int, now: datetime | None = None
) -> CampaignReport:
    """Reach, responses, opt-outs and revenue of treatment vs hold-out (see the module doc)."""
    now = now or utcnow()
    async with unit_of_work(session):
        campaign = await session.get(Campaign, campaign_id, populate_existing=True)
        if campaign is None:
            raise CampaignNotFound(f"There is no campaign #{campaign_id}.")
        start = as_utc(campaign.started_at) if campaign.started_at else None
        end = start + timedelta(days=campaign.attribution_days) if start else None
        cohorts: dict[str, CohortFigures] = {}
        if start is not None and end is not None:
            cohorts = await _cohort_figures(session, campaign_id, start, min(end, now))
        tied = (
            await _core(
                session,
                select(
                    count_where(
                        col(Interaction.direction) == Direction.inbound,
                        col(Interaction.kind) == InteractionKind.campaign,
                    ),
                    count_where(
                        col(Interaction.direction) == Direction.inbound,
                        col(Interaction.kind) != InteractionKind.campaign,
                    ),
                    count_where(col(Interaction.direction) == Direction.internal),
                ).where(col(Interaction.campaign_id) == campaign_id),
            )
        ).one()
        presses, tied_replies, tied_purchases = (int(n or 0) for n in tied)
        reasons = (
            await _core(
                session,
                select(col(CampaignRecipient.reason), func.count())
                .where(
                    col(CampaignRecipient.campaign_id) == campaign_id,
                    col(CampaignRecipient.cohort) == RecipientGroup.treatment,
                    col(CampaignRecipient.reason).is_not(None),
                )
                .group_by(col(CampaignRecipient.reason)),
            )
        ).all()
        pending = await _scalar(
            session,
            select(func.count()).where(
                col(CampaignRecipient.campaign_id) == campaign_id,
                col(CampaignRecipient.status).in_(
                    [RecipientStatus.pending, RecipientStatus.sending]
                ),
            ),
        )
    by_reason = {str(reason): int(n) for reason, n in reasons}
    return CampaignReport(
        campaign=campaign,
        window_start=start,
        window_end=end,
        treatment=cohorts.get(RecipientGroup.treatment, CohortFigures()),
        holdout=cohorts.get(RecipientGroup.holdout, CohortFigures()),
        presses=presses,
        tied_replies=tied_replies,
        tied_purchases=tied_purchases,
        pending=pending,
        unknown=by_reason.get(UNKNOWN_AFTER_CRASH, 0),
        by_reason=by_reason,
    )


def count_where(*conditions: Any) -> Any:
    return func.coalesce(func.sum(case((and_(*conditions), 1), else_=0)), 0)


async def _scalar(session: AsyncSession, stmt: Any) -> int:
    return int((await session.exec(stmt)).scalar_one() or 0)


async def _cohort_figures(
    session: AsyncSession, campaign_id: int, start: datetime, end: datetime
) -> dict[str, CohortFigures]:
    recipient = CampaignRecipient
    bought = (
        select(
            col(Purchase.customer_id).label("customer_id"),
            func.sum(col(Purchase.amount_minor)).label("revenue"),
            func.max(case((col(Purchase.amount_minor) > 0, 1), else_=0)).label("bought"),
        )
        .where(col(Purchase.purchased_at) >= start, col(Purchase.purchased_at) < end)
        .group_by(col(Purchase.customer_id))
        .subquery()
    )
    responded = exists().where(
        col(Interaction.customer_id) == col(recipient.customer_id),
        col(Interaction.direction) == Direction.inbound,
        col(Interaction.occurred_at) >= start,
        col(Interaction.occurred_at) < end,
        # presses of another campaign's buttons are not a response to this one
        or_(
            col(Interaction.kind) != InteractionKind.campaign,
            col(Interaction.campaign_id) == campaign_id,
        ),
    )
    opted = and_(
        col(Customer.marketing_opt_out_at) >= start, col(Customer.marketing_opt_out_at) < end
    )

    stmt = (
        select(
            col(recipient.cohort),
            func.count(),
            count_where(col(recipient.status) == RecipientStatus.sent),
            count_where(col(recipient.status) == RecipientStatus.failed),
            count_where(
                and_(
                    col(recipient.status) == RecipientStatus.skipped,
                    col(recipient.reason) != "holdout",
                )
            ),
            count_where(responded),
            count_where(opted),
            count_where(bought.c.bought == 1),
            func.coalesce(func.sum(bought.c.revenue), 0),
        )
        .select_from(recipient)
        .join(Customer, col(Customer.id) == col(recipient.customer_id))
        .outerjoin(bought, bought.c.customer_id == col(recipient.customer_id))
        .where(col(recipient.campaign_id) == campaign_id)
        .group_by(col(recipient.cohort))
    )
    figures: dict[str, CohortFigures] = {}
    for row in (await _core(session, stmt)).all():
        cohort, *numbers = row
        figures[str(cohort)] = CohortFigures(*(int(n) for n in numbers))
    return figures
