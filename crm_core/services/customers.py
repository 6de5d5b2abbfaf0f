"""Who is this? Customers, their channel identities, contact data, merges and search.

Merge policy (``link_phone``/``link_email``): when the phone or e-mail being linked already
belongs to another customer, the customer being linked SURVIVES and absorbs the other one. The
caller holds the survivor's id (it is the person in the conversation right now), so nothing the
caller keeps (flow state, buttons) goes stale; the absorbed row stays as a tombstone pointing at
the survivor, so an old id (an agent's note, an import's external id) still resolves.

Safety: an *unverified* phone/e-mail (typed by the user) only merges with a customer that has no
live channel identity (e.g. an imported record). Taking over another live account needs proof
(a Telegram contact share passes ``verified=True``); otherwise :class:`ContactInUse` is raised.
"""

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, exists, func, literal, or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.clock import utcnow
from crm_core.errors import InvalidInput, InvalidPhone
from crm_core.models import (
    Channel,
    ChannelIdentity,
    Complaint,
    Customer,
    Direction,
    FlowState,
    Handoff,
    HandoffStatus,
    Interaction,
    InteractionKind,
    Purchase,
)
from crm_core.normalize import normalize_email, normalize_phone
from crm_core.services._sql import MAX_MERGE_HOPS, resolve_customer, unit_of_work

_IDENTIFY_ATTEMPTS = 3
MAX_TAG_LENGTH = 50


class ContactInUse(InvalidInput):
    """The phone/e-mail belongs to another live customer and was not verified."""


@dataclass
class LinkResult:
    customer: Customer
    value: str
    merged_customer_ids: list[int] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Lookup
# --------------------------------------------------------------------------------------------


async def get_customer(*, session: AsyncSession, customer_id: int) -> Customer:
    async with unit_of_work(session):
        customer = await resolve_customer(session, customer_id)
    return customer


# --------------------------------------------------------------------------------------------
# identify_customer
# --------------------------------------------------------------------------------------------


async def identify_customer(
    *,
    session: AsyncSession,
    channel: str,
    external_id: str,
    name: str | None = None,
    username: str | None = None,
    language: str | None = None,
    now: datetime | None = None,
) -> Customer:
    """The customer behind ``(channel, external_id)``, created on first contact.

    ``name`` fills the customer's name only while it is empty (an imported or agent-entered
    name is better than a Telegram nickname); the identity's display name and username always
    follow the channel. Two concurrent first updates of the same user yield one customer: the
    loser of the race hits the identity's unique constraint, rolls back its savepoint and
    reads the winner's.
    """
    async with unit_of_work(session):
        return await identify_customer_no_commit(
            session,
            channel=channel,
            external_id=external_id,
            name=name,
            username=username,
            language=language,
            now=now,
        )


async def identify_customer_no_commit(
    session: AsyncSession,
    *,
    channel: str,
    external_id: str,
    name: str | None = None,
    username: str | None = None,
    language: str | None = None,
    now: datetime | None = None,
) -> Customer:
    """:func:`identify_customer` inside the caller's transaction (a known customer costs one
    query: the identity and its customer are read together)."""
    customer = await identify_sender_no_commit(
        session,
        channel=channel,
        external_id=external_id,
        name=name,
        username=username,
        language=language,
        now=now,
    )
    assert customer is not None  # no event key: never a duplicate
    return customer


async def identify_sender_no_commit(
    session: AsyncSession,
    *,
    channel: str,
    external_id: str,
    event_key: str | None = None,
    name: str | None = None,
    username: str | None = None,
    language: str | None = None,
    now: datetime | None = None,
) -> Customer | None:
    """:func:`identify_customer_no_commit` for the sender of an event, unless the event was
    logged already (an Interaction with idempotency key ``event_key`` exists): then None,
    and nothing is created or touched (an erased customer's redelivered update must not bring
    them back). A known sender costs one query for both questions."""
    now = now or utcnow()
    external_id = str(external_id)
    name = _clip(name, 200)
    username = _clip(username.lstrip("@") if username else None, 100)
    language = _clip(language, 16)
    for attempt in range(_IDENTIFY_ATTEMPTS):
        found = await _find_identity_and_customer(session, channel, external_id, event_key)
        if found is not None:
            identity, customer, seen = found
            if seen:
                return None
            return await _touch_known(session, identity, customer, name, username, language, now)
        if event_key is not None and await _event_logged(session, event_key):
            return None
        try:
            # A savepoint: losing the race undoes only this insert, not the caller's state.
            async with session.begin_nested():
                return await _create_with_identity(
                    session, channel, external_id, name, username, language, now
                )
        except IntegrityError:
            if attempt == _IDENTIFY_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _identity_and_customer(with_event: bool) -> Any:
    # Built once, values as bind parameters: this runs for every inbound message, and
    # building a statement (and its cache key) costs more than running it.
    seen = (
        exists().where(col(Interaction.idempotency_key) == bindparam("event_key"))
        if with_event
        else literal(False)
    )
    return (
        select(ChannelIdentity, Customer, seen.label("seen"))
        .join(Customer, col(Customer.id) == col(ChannelIdentity.customer_id))
        .where(
            col(ChannelIdentity.channel) == bindparam("channel"),
            col(ChannelIdentity.external_id) == bindparam("external_id"),
        )
    )


_IDENTITY_AND_CUSTOMER = {True: _identity_and_customer(True), False: _identity_and_customer(False)}


async def _find_identity_and_customer(
    session: AsyncSession, channel: str, external_id: str, event_key: str | None
) -> tuple[ChannelIdentity, Customer, bool] | None:
    """The identity, its customer and whether ``event_key`` was logged, in one query."""
    params: dict[str, Any] = {"channel": channel, "external_id": external_id}
    if event_key is not None:
        params["event_key"] = event_key
    stmt = _IDENTITY_AND_CUSTOMER[event_key is not None]
    row = (await session.exec(stmt, params=params)).first()
    return (row[0], row[1], bool(row[2])) if row is not None else None


async def _event_logged(session: AsyncSession, event_key: str) -> bool:
    stmt = select(Interaction.id).where(Interaction.idempotency_key == event_key).limit(1)
    return (await session.exec(stmt)).first() is not None


def _clip(value: str | None, limit: int) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value[:limit] or None


async def _touch_known(
    session: AsyncSession,
    identity: ChannelIdentity,
    customer: Customer,
    name: str | None,
    username: str | None,
    language: str | None,
    now: datetime,
) -> Customer:
    if customer.merged_into_id is not None:  # absorbed: the survivor is the person
        customer = await resolve_customer(session, customer.merged_into_id)
    if identity.customer_id != customer.id:  # a merge left it behind (should not happen)
        identity.customer_id = customer.id  # type: ignore[assignment]
    if name and identity.display_name != name:
        identity.display_name = name
    if username and identity.username != username:
        identity.username = username
    if name and not customer.name:
        customer.name = name
    if language and customer.language != language:
        customer.language = language
    if customer.first_seen_at is None:
        customer.first_seen_at = now
    customer.last_seen_at = now
    return customer


async def _create_with_identity(
    session: AsyncSession,
    channel: str,
    external_id: str,
    name: str | None,
    username: str | None,
    language: str | None,
    now: datetime,
) -> Customer:
    customer = Customer(name=name, language=language, first_seen_at=now, last_seen_at=now)
    session.add(customer)
    await session.flush()
    assert customer.id is not None
    session.add(
        ChannelIdentity(
            channel=channel,
            external_id=external_id,
            username=username,
            display_name=name,
            customer_id=customer.id,
        )
    )
    await session.flush()
    return customer


# --------------------------------------------------------------------------------------------
# Contact data and merging
# --------------------------------------------------------------------------------------------


async def link_phone(
    *,
    session: AsyncSession,
    customer_id: int,
    phone: str,
    verified: bool,
    default_region: str | None = None,
) -> LinkResult:
    """Attach a phone number (normalised to E.164); merges the customer who already has it."""
    value = normalize_phone(phone, default_region)
    return await _link(session, customer_id, "phone", value, verified)


async def link_email(
    *, session: AsyncSession, customer_id: int, email: str, verified: bool = False
) -> LinkResult:
    """Attach an e-mail address (normalised, lower-case); merges the customer who has it."""
    value = normalize_email(email)
    return await _link(session, customer_id, "email", value, verified)


async def _link(
    session: AsyncSession, customer_id: int, field_name: str, value: str, verified: bool
) -> LinkResult:
    for attempt in range(2):
        try:
            async with unit_of_work(session):
                return await _link_no_commit(session, customer_id, field_name, value, verified)
        except IntegrityError:
            # Another customer took the value between our read and our write: go again, this
            # time the read sees them (and merges or refuses).
            if attempt == 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


async def _link_no_commit(
    session: AsyncSession, customer_id: int, field_name: str, value: str, verified: bool
) -> LinkResult:
    customer = await resolve_customer(session, customer_id)
    column = getattr(Customer, field_name)
    holder = (
        await session.exec(select(Customer).where(column == value, col(Customer.id) != customer.id))
    ).first()
    merged: list[int] = []
    if holder is not None:
        if not verified and await _has_live_identity(session, holder):
            label = "phone number" if field_name == "phone" else "e-mail address"
            raise ContactInUse(
                f"This {label} already belongs to another customer. "
                "Please confirm it (e.g. share your contact) so we can link the accounts."
            )
        assert holder.id is not None
        customer, absorbed = await _merge_no_commit(session, customer, holder)
        if absorbed is not None:
            merged.append(absorbed)
    if getattr(customer, field_name) != value:
        setattr(customer, field_name, value)
    if verified:
        customer.identity_verified = True
    await session.flush()
    return LinkResult(customer=customer, value=value, merged_customer_ids=merged)


async def _has_live_identity(session: AsyncSession, customer: Customer) -> bool:
    stmt = select(func.count()).where(
        ChannelIdentity.customer_id == customer.id,
        ChannelIdentity.channel != Channel.import_.value,
    )
    return bool((await session.exec(stmt)).one())


async def merge_customers(
    *, session: AsyncSession, survivor_id: int, absorbed_id: int, now: datetime | None = None
) -> Customer:
    """Fold ``absorbed_id`` into ``survivor_id``; every row of both ends up on the survivor."""
    async with unit_of_work(session):
        survivor = await resolve_customer(session, survivor_id)
        absorbed = await resolve_customer(session, absorbed_id)
        if survivor.id != absorbed.id:
            survivor, _ = await _merge_no_commit(session, survivor, absorbed, now=now)
    return survivor


_MOVED_MODELS: tuple[Any, ...] = (Interaction, Complaint, Purchase, ChannelIdentity, FlowState)


async def _lock_pair(
    session: AsyncSession, survivor_id: int, absorbed_id: int
) -> tuple[Customer, Customer]:
    """Lock both rows (in id order, so two merges of the same pair queue instead of
    deadlocking) and re-resolve them: a concurrent merge may have just made one a tombstone.
    SQLite needs no row locks: its write transactions are serialised already."""
    for _ in range(MAX_MERGE_HOPS):
        stmt = (
            select(Customer)
            .where(col(Customer.id).in_([survivor_id, absorbed_id]))
            .order_by(col(Customer.id))
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        rows = {c.id: c for c in (await session.exec(stmt)).all()}
        survivor, absorbed = rows[survivor_id], rows[absorbed_id]
        if survivor.merged_into_id is None and absorbed.merged_into_id is None:
            return survivor, absorbed
        survivor_id = survivor.merged_into_id or survivor_id
        absorbed_id = absorbed.merged_into_id or absorbed_id
        if survivor_id == absorbed_id:
            final = await resolve_customer(session, survivor_id)
            return final, final
    raise AssertionError("merge chain too long")  # pragma: no cover


async def _merge_no_commit(
    session: AsyncSession, survivor: Customer, absorbed: Customer, *, now: datetime | None = None
) -> tuple[Customer, int | None]:
    """Returns the survivor and the id it absorbed (None if a concurrent merge did it)."""
    now = now or utcnow()
    assert survivor.id is not None and absorbed.id is not None
    survivor, absorbed = await _lock_pair(session, survivor.id, absorbed.id)
    if survivor.id == absorbed.id:
        return survivor, None
    assert survivor.id is not None and absorbed.id is not None
    closed_handoff = await _close_duplicate_open_handoff(session, survivor.id, absorbed.id, now)
    for model in (*_MOVED_MODELS, Handoff):
        await session.exec(
            update(model).where(model.customer_id == absorbed.id).values(customer_id=survivor.id)
        )
    # Older tombstones that pointed at the absorbed customer now point at the survivor directly.
    await session.exec(
        update(Customer)
        .where(col(Customer.merged_into_id) == absorbed.id)
        .values(merged_into_id=survivor.id)
    )
    taken = {"phone": absorbed.phone, "email": absorbed.email, "external_id": absorbed.external_id}
    # Unique columns must leave the tombstone before the survivor may take them.
    absorbed.phone = absorbed.email = absorbed.external_id = None
    absorbed.merged_into_id = survivor.id
    await session.flush()
    _fill_survivor(survivor, absorbed, taken)
    details: dict[str, Any] = {"event": "merged", "absorbed_customer_id": absorbed.id}
    # Unique contact data the survivor already had its own of would otherwise vanish with the
    # tombstone's columns: keep it on the timeline (forgetting the person wipes it too).
    displaced = {k: v for k, v in taken.items() if v is not None and getattr(survivor, k) != v}
    if displaced:
        details["absorbed_contact"] = displaced
    if closed_handoff is not None:
        details["closed_handoff_id"] = closed_handoff
    session.add(
        Interaction(
            customer_id=survivor.id,
            channel="system",
            direction=Direction.internal,
            kind=InteractionKind.identity,
            text=f"Customer #{absorbed.id} was merged into this customer.",
            details=details,
            occurred_at=now,
        )
    )
    await session.flush()
    return survivor, absorbed.id


def _fill_survivor(survivor: Customer, absorbed: Customer, taken: dict[str, str | None]) -> None:
    for name, value in taken.items():
        if getattr(survivor, name) is None and value is not None:
            setattr(survivor, name, value)
    if not survivor.name and absorbed.name:
        survivor.name = absorbed.name
    if not survivor.language and absorbed.language:
        survivor.language = absorbed.language
    survivor.identity_verified = survivor.identity_verified or absorbed.identity_verified
    survivor.tags = _unique_tags([*survivor.tags, *absorbed.tags])
    survivor.first_seen_at = _earliest(survivor.first_seen_at, absorbed.first_seen_at)
    survivor.last_seen_at = _latest(survivor.last_seen_at, absorbed.last_seen_at)
    # One person: an opt-out from campaigns on either record holds for both (the first kept).
    if absorbed.marketing_opt_out_at and (
        survivor.marketing_opt_out_at is None
        or absorbed.marketing_opt_out_at < survivor.marketing_opt_out_at
    ):
        survivor.marketing_opt_out_at = absorbed.marketing_opt_out_at
        survivor.marketing_opt_out_source = absorbed.marketing_opt_out_source
    survivor.unreachable_at = _latest(survivor.unreachable_at, absorbed.unreachable_at)


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    return min(a, b) if a and b else (a or b)


def _latest(a: datetime | None, b: datetime | None) -> datetime | None:
    return max(a, b) if a and b else (a or b)


async def _close_duplicate_open_handoff(
    session: AsyncSession, survivor_id: int, absorbed_id: int, now: datetime
) -> int | None:
    """At most one open handoff per customer: if both have one, the absorbed one is closed (and
    the reason logged on its timeline) before it moves, so the unique index holds."""
    open_rows = (
        await session.exec(
            select(Handoff).where(
                col(Handoff.customer_id).in_([survivor_id, absorbed_id]),
                Handoff.status != HandoffStatus.closed,
            )
        )
    ).all()
    by_owner = {h.customer_id: h for h in open_rows}
    if survivor_id not in by_owner or absorbed_id not in by_owner:
        return None
    loser, keeper = by_owner[absorbed_id], by_owner[survivor_id]
    loser.status = HandoffStatus.closed
    loser.closed_at = now
    loser.next_reminder_at = None
    session.add(
        Interaction(
            customer_id=absorbed_id,  # moved to the survivor with the rest just after
            channel="system",
            direction=Direction.internal,
            kind=InteractionKind.handoff_event,
            handoff_id=loser.id,
            text=(
                f"Handoff closed automatically: customer #{absorbed_id} was merged into "
                f"#{survivor_id}, whose handoff #{keeper.id} stays open."
            ),
            details={"event": "closed_by_merge", "kept_handoff_id": keeper.id},
            occurred_at=now,
        )
    )
    await session.flush()
    return loser.id


# --------------------------------------------------------------------------------------------
# Search
# --------------------------------------------------------------------------------------------


def _like_pattern(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def find_customers(
    *, session: AsyncSession, query: str, limit: int = 10, default_region: str | None = None
) -> list[Customer]:
    """Customers matching ``query``: exact matches (id, phone, e-mail, @username, external id,
    channel id) first, then name / e-mail / username substrings, most recently seen first.
    Merged tombstones and erased customers are never returned. A phone number without its
    country code is read in ``default_region`` (as the desk's agents write it), else as
    international.

    Name matching is case-insensitive on PostgreSQL; SQLite's ``lower()`` folds ASCII only.
    """
    text = query.strip()
    found: dict[int, Customer] = {}
    async with unit_of_work(session):
        for stmt in (_exact_match_query(text, default_region), _substring_query(text)):
            if not text or stmt is None or len(found) >= limit:
                continue
            stmt = stmt.where(
                col(Customer.merged_into_id).is_(None), col(Customer.anonymized_at).is_(None)
            ).order_by(col(Customer.last_seen_at).desc().nulls_last(), col(Customer.id).desc())
            for customer in (await session.exec(stmt.limit(limit))).all():
                assert customer.id is not None
                found.setdefault(customer.id, customer)
    return list(found.values())[:limit]


def _exact_match_query(text: str, default_region: str | None = None) -> Any:
    handle = text.lstrip("@")
    conditions: list[Any] = [
        col(Customer.external_id) == text,
        col(Customer.id).in_(
            select(ChannelIdentity.customer_id).where(
                or_(
                    col(ChannelIdentity.external_id) == text,
                    func.lower(ChannelIdentity.username) == handle.lower(),
                )
            )
        ),
    ]
    digits = text.lstrip("#")
    # isdecimal, not isdigit: "²" and "①" are digits that int() refuses.
    if digits.isdecimal() and int(digits) < 2**31:  # ids are 32-bit INTEGER on PostgreSQL
        conditions.append(col(Customer.id) == int(digits))
    for phone in _phone_readings(text, default_region):
        conditions.append(col(Customer.phone) == phone)
    if "@" in text.strip("@"):
        conditions.append(col(Customer.email) == text.lower())
    return select(Customer).where(or_(*conditions))


def _substring_query(text: str) -> Any:
    if len(text) < 2:
        return None
    pattern = _like_pattern(text.lstrip("@"))
    return select(Customer).where(
        or_(
            func.lower(Customer.name).like(pattern, escape="\\"),
            func.lower(Customer.email).like(pattern, escape="\\"),
            col(Customer.id).in_(
                select(ChannelIdentity.customer_id).where(
                    func.lower(ChannelIdentity.username).like(pattern, escape="\\")
                )
            ),
        )
    )


def _phone_readings(text: str, default_region: str | None) -> list[str]:
    """The E.164 numbers ``text`` may mean: in the desk's region (``0151 1234567``) and as an
    international number typed without its ``+`` (``4915112345678``)."""
    if not re.fullmatch(r"[+\d][\d\s().\-/]{5,}", text):
        return []
    candidates: list[tuple[str, str | None]] = []
    if default_region and not text.startswith("+"):
        candidates.append((text, default_region))
    candidates.append((text if text.startswith("+") else "+" + text, None))
    readings = []
    for candidate, region in candidates:
        try:
            readings.append(normalize_phone(candidate, region))
        except InvalidPhone:
            continue
    return list(dict.fromkeys(readings))


# --------------------------------------------------------------------------------------------
# Tags
# --------------------------------------------------------------------------------------------


def _unique_tags(tags: Iterable[str]) -> list[str]:
    """Trimmed, lower-cased, de-duplicated tags in first-seen order."""
    seen: dict[str, None] = {}
    for tag in tags:
        clean = tag.strip().lower()[:MAX_TAG_LENGTH]
        if clean:
            seen.setdefault(clean, None)
    return list(seen)


async def set_customer_tags(
    *, session: AsyncSession, customer_id: int, tags: Sequence[str]
) -> Customer:
    """Replace the customer's tags."""
    async with unit_of_work(session):
        customer = await resolve_customer(session, customer_id)
        customer.tags = _unique_tags(tags)
    return customer


async def add_tags(*, session: AsyncSession, customer_id: int, tags: Sequence[str]) -> Customer:
    """Add tags, keeping the existing ones."""
    async with unit_of_work(session):
        customer = await resolve_customer(session, customer_id)
        customer.tags = _unique_tags([*customer.tags, *tags])
    return customer
