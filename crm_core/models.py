"""The CRM entities as SQLModel families: ``XBase`` -> ``X(table=True)`` -> ``XPublic``
(an ``XCreate`` joins a family when input arrives from outside the services, e.g. an API).

Conventions that hold on SQLite and PostgreSQL alike:
- every timestamp is an aware UTC datetime (``UTCDateTime``);
- Telegram ids (users, chats, messages) are ``BigInteger``: supergroup ids exceed 32 bits;
- money is an integer number of minor units (cents) plus an ISO 4217 currency code, so sums are
  exact on both databases;
- enums are stored as their string values (portable, readable in SQL, no native enum types to
  migrate).
"""

import inspect
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, FiniteFloat, StringConstraints
from pydantic import Field as PydanticField
from sqlalchemy import JSON, BigInteger, Index, Text, UniqueConstraint, text
from sqlalchemy import Enum as SAEnum
from sqlmodel import Field, SQLModel

from crm_core.clock import utcnow
from crm_core.types import UTCDateTime


def _ts(**kwargs: Any) -> Any:
    """A UTC timestamp column."""
    return Field(sa_type=UTCDateTime, **kwargs)


def _created() -> Any:
    return Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


def _updated() -> Any:
    return Field(
        default_factory=utcnow,
        sa_type=UTCDateTime,
        nullable=False,
        sa_column_kwargs={"onupdate": utcnow},
    )


def _enum(enum: type[StrEnum], **kwargs: Any) -> Any:
    """A string column holding the enum's *value* (``"in"``, not ``"inbound"``).

    Not a native PostgreSQL enum and no CHECK constraint: a new interaction kind or status is
    then a code change, not a migration, and raw SQL reads the same words the code uses.
    """
    column_type = SAEnum(
        enum,
        native_enum=False,
        create_constraint=False,
        length=32,
        values_callable=lambda members: [member.value for member in members],
    )
    return Field(sa_type=column_type, **kwargs)


def _no_arguments(factory: Callable[[], Any]) -> Callable[[], Any]:
    """``factory`` with its signature given up front. Pydantic asks ``inspect.signature`` of a
    default factory each time it fills one in (whether it wants the validated data); for a
    builtin like ``dict`` that means parsing its text signature, ~70 us, most of the cost of
    building an Interaction on the per-message path."""

    def make() -> Any:
        return factory()

    make.__signature__ = inspect.Signature()  # type: ignore[attr-defined]
    return make


_EMPTY_LIST, _EMPTY_DICT = _no_arguments(list), _no_arguments(dict)


def _json(default_factory: Any) -> Any:
    factory = {list: _EMPTY_LIST, dict: _EMPTY_DICT}.get(default_factory, default_factory)
    return Field(default_factory=factory, sa_type=JSON, nullable=False)


# --- Input from outside (``XCreate``): what the databases cannot store is refused up front ---


def _storable_text(value: str) -> str:
    # PostgreSQL's TEXT cannot hold NUL, and control characters in a CRM note are noise from a
    # broken client rather than anything a person wrote (tabs and line breaks stay).
    if any(ord(ch) < 32 and ch not in "\t\n\r" for ch in value):
        raise ValueError("must not contain control characters")
    return value


def _plausible_time(value: datetime) -> datetime:
    # Far-away years overflow on the way to UTC and in date arithmetic (SLAs, RFM).
    if not 1970 <= value.year <= 2200:
        raise ValueError("must lie between the years 1970 and 2200")
    return value.astimezone(UTC)


def _not_telegram(value: str) -> str:
    if value == Channel.telegram.value:
        raise ValueError("telegram is the bot's own channel; name yours (email, web, shop...)")
    return value


StorableText = Annotated[str, AfterValidator(_storable_text)]
# Another system's channel name: e-mail, web, shop...
ChannelName = Annotated[
    str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,31}$"), AfterValidator(_not_telegram)
]
InputTime = Annotated[AwareDatetime, AfterValidator(_plausible_time)]
# PostgreSQL INTEGER ids: a larger number can name no row.
MAX_ROW_ID = 2**31 - 1


# --------------------------------------------------------------------------------------------
# Enumerations
# --------------------------------------------------------------------------------------------


class Channel(StrEnum):
    telegram = "telegram"
    email = "email"
    web = "web"
    import_ = "import"


class Direction(StrEnum):
    inbound = "in"
    outbound = "out"
    internal = "internal"


class InteractionKind(StrEnum):
    message = "message"
    command = "command"
    kb_answer = "kb_answer"
    kb_suggest = "kb_suggest"
    kb_none = "kb_none"
    kb_feedback = "kb_feedback"
    complaint_event = "complaint_event"
    handoff_event = "handoff_event"
    agent_reply = "agent_reply"
    note = "note"
    csat = "csat"
    identity = "identity"
    system = "system"
    campaign = "campaign"  # a campaign's message, a press of its buttons, an opt-out


class ComplaintCategory(StrEnum):
    price = "price"
    product = "product"
    service = "service"
    delivery = "delivery"
    billing = "billing"
    technical = "technical"
    other = "other"


class Severity(StrEnum):
    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"


class ComplaintStatus(StrEnum):
    open = "open"
    in_progress = "in_progress"
    resolved = "resolved"
    closed = "closed"


class ActorType(StrEnum):
    customer = "customer"
    agent = "agent"
    system = "system"


class HandoffStatus(StrEnum):
    waiting = "waiting"
    claimed = "claimed"
    closed = "closed"


class AgentRole(StrEnum):
    agent = "agent"
    supervisor = "supervisor"


# --------------------------------------------------------------------------------------------
# Customer
# --------------------------------------------------------------------------------------------


class CustomerBase(SQLModel):
    name: str | None = Field(default=None, max_length=200)
    phone: str | None = Field(default=None, max_length=32, description="E.164, e.g. +4915112345678")
    email: str | None = Field(default=None, max_length=320, description="normalised, lower-case")
    language: str | None = Field(default=None, max_length=16)
    external_id: str | None = Field(default=None, max_length=100)
    identity_verified: bool = False


class Customer(CustomerBase, table=True):
    __table_args__ = (
        UniqueConstraint("phone", name="uq_customer_phone"),
        UniqueConstraint("email", name="uq_customer_email"),
        UniqueConstraint("external_id", name="uq_customer_external_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    tags: list[str] = _json(list)
    first_seen_at: datetime | None = _ts(default=None)
    last_seen_at: datetime | None = _ts(default=None)
    # A customer absorbed by a merge stays as a tombstone pointing at the survivor, so that a
    # stale id (an old button, an in-flight update) still resolves to the right person.
    merged_into_id: int | None = Field(default=None, foreign_key="customer.id", index=True)
    anonymized_at: datetime | None = _ts(default=None)
    # Consent to campaigns: set when the customer opted out (/stop, a campaign's button), with
    # where it came from; cleared only by their own /subscribe.
    marketing_opt_out_at: datetime | None = _ts(default=None)
    marketing_opt_out_source: str | None = Field(default=None, max_length=64)
    # When Telegram last refused a message to them (they blocked the bot); a message from
    # them afterwards (``last_seen_at`` later than this) shows they can be reached again.
    unreachable_at: datetime | None = _ts(default=None)
    created_at: datetime = _created()
    updated_at: datetime = _updated()


class CustomerPublic(CustomerBase):
    id: int
    tags: list[str]
    first_seen_at: datetime | None
    last_seen_at: datetime | None
    created_at: datetime
    updated_at: datetime


# --------------------------------------------------------------------------------------------
# Channel identity: (channel, external id) -> customer
# --------------------------------------------------------------------------------------------


class ChannelIdentityBase(SQLModel):
    channel: str = Field(max_length=32)
    external_id: str = Field(max_length=100)
    username: str | None = Field(default=None, max_length=100, index=True)
    display_name: str | None = Field(default=None, max_length=200)


class ChannelIdentity(ChannelIdentityBase, table=True):
    __tablename__ = "channel_identity"
    __table_args__ = (UniqueConstraint("channel", "external_id", name="uq_identity_channel_ext"),)

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customer.id", index=True)
    created_at: datetime = _created()
    updated_at: datetime = _updated()


class ChannelIdentityPublic(ChannelIdentityBase):
    id: int
    customer_id: int
    created_at: datetime


class ChannelIdentityCreate(SQLModel):
    """Another channel's contact (an e-mail sender, a shop account, a web visitor): the same
    ``(channel, external_id)`` again is the same customer, created on first contact."""

    channel: ChannelName
    external_id: Annotated[StorableText, StringConstraints(min_length=1, max_length=100)]
    name: Annotated[StorableText, StringConstraints(max_length=200)] | None = None
    username: Annotated[StorableText, StringConstraints(max_length=100)] | None = None
    language: Annotated[str, StringConstraints(pattern=r"^[a-z]{2}(-[A-Za-z]{2})?$")] | None = None


class ChannelIdentityLink(SQLModel):
    """Another channel's id for a customer the desk knows already (e.g. the shop's account id
    for customer #42, found by e-mail)."""

    channel: ChannelName
    external_id: Annotated[StorableText, StringConstraints(min_length=1, max_length=100)]
    username: Annotated[StorableText, StringConstraints(max_length=100)] | None = None
    display_name: Annotated[StorableText, StringConstraints(max_length=200)] | None = None


# --------------------------------------------------------------------------------------------
# Interaction: the customer's timeline
# --------------------------------------------------------------------------------------------


class InteractionBase(SQLModel):
    channel: str = Field(max_length=32)
    direction: Direction = _enum(Direction)
    kind: InteractionKind = _enum(InteractionKind)
    text: str | None = Field(default=None, sa_type=Text)
    details: dict[str, Any] = _json(dict)
    occurred_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Interaction(InteractionBase, table=True):
    __table_args__ = (
        UniqueConstraint("idempotency_key", name="uq_interaction_idempotency_key"),
        Index("ix_interaction_customer_time", "customer_id", "occurred_at"),
        # Analytics: bot figures per period, and "what did this customer do in the 72 h after"
        # probes (verified resolution) as one index range each, kinds read from the index.
        Index("ix_interaction_kind_time", "kind", "occurred_at"),
        Index("ix_interaction_customer_time_kind", "customer_id", "occurred_at", "kind"),
        # Retention (crm_core.services.retention): the oldest rows not yet anonymised are one
        # index range, however many anonymised rows lie before them.
        Index("ix_interaction_retention", "anonymized_at", "occurred_at"),
        # "A bot answer to this customer in the 72 h before" (handoffs after an answer) and
        # "did the customer write again" (service recovery): one seek per probe instead of a
        # walk through all of a busy customer's entries; the direction read from the index.
        Index(
            "ix_interaction_customer_kind_time_dir",
            "customer_id",
            "kind",
            "occurred_at",
            "direction",
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    # Nullable so that anonymised statistics survive a customer's erasure.
    customer_id: int | None = Field(default=None, foreign_key="customer.id")
    idempotency_key: str | None = Field(default=None, max_length=200)
    handoff_id: int | None = Field(default=None, foreign_key="handoff.id", index=True)
    complaint_id: int | None = Field(default=None, foreign_key="complaint.id", index=True)
    # A campaign's send, button press or opt-out (the campaign report aggregates by it).
    campaign_id: int | None = Field(default=None, foreign_key="campaign.id", index=True)
    # Set when the retention sweep removed the row's text and personal details.
    anonymized_at: datetime | None = _ts(default=None)
    created_at: datetime = _created()
    updated_at: datetime = _updated()


class InteractionPublic(InteractionBase):
    id: int
    customer_id: int | None
    handoff_id: int | None
    complaint_id: int | None


class ExternalInteractionKind(StrEnum):
    """What another channel may write into a timeline: the bot's own kinds (answers, events,
    ratings) feed its statistics and are only ever written by the desk itself."""

    message = "message"
    note = "note"


class InteractionCreate(SQLModel):
    """An interaction another channel (e-mail, web form, shop) appends to a customer's timeline.

    ``external_id`` is the sender's own id for it: the same id from the same channel again is
    the same interaction (stored once)."""

    external_id: StorableText = Field(min_length=1, max_length=100)
    channel: ChannelName = Field(
        description="the channel it came through: email, web, shop... (not telegram: the bot's)"
    )
    direction: Direction = Field(description="in: from the customer; out: to them")
    kind: ExternalInteractionKind = ExternalInteractionKind.message
    text: StorableText | None = Field(default=None, max_length=10_000)
    details: dict[
        Annotated[StorableText, PydanticField(max_length=100)],
        Annotated[StorableText, PydanticField(max_length=1000)] | int | FiniteFloat | bool | None,
    ] = Field(default_factory=_EMPTY_DICT, max_length=50, description="flat key/value facts")
    occurred_at: InputTime | None = Field(default=None, description="default: now")


# --------------------------------------------------------------------------------------------
# Agents
# --------------------------------------------------------------------------------------------


class AgentBase(SQLModel):
    telegram_user_id: int = Field(sa_type=BigInteger)
    display_name: str = Field(max_length=200)
    role: AgentRole = _enum(AgentRole, default=AgentRole.agent)
    active: bool = True


class Agent(AgentBase, table=True):
    __table_args__ = (UniqueConstraint("telegram_user_id", name="uq_agent_telegram_user"),)

    id: int | None = Field(default=None, primary_key=True)
    # Membership of the agents' group as Telegram last told us (a getChatMember answer or a
    # chat_member update), shared by every instance: a removal applies everywhere at once.
    in_agent_group: bool = True
    membership_checked_at: datetime | None = _ts(default=None, nullable=True)
    # /away and /back: an away agent is given no conversations by auto-assignment.
    available: bool = True
    last_assigned_at: datetime | None = _ts(default=None, nullable=True)
    created_at: datetime = _created()
    updated_at: datetime = _updated()


class AgentPublic(AgentBase):
    id: int


# Canned replies: answers agents send often, kept by supervisors, inserted with ``/s name``.
class SnippetBase(SQLModel):
    name: str = Field(max_length=32, description="lower-case letters, digits, - and _")
    text: str = Field(sa_type=Text, description="Jinja2 text; {{ name }} is the customer's name")


class Snippet(SnippetBase, table=True):
    __table_args__ = (UniqueConstraint("name", name="uq_snippet_name"),)

    id: int | None = Field(default=None, primary_key=True)
    updated_by_agent_id: int | None = Field(default=None, foreign_key="agent.id")
    created_at: datetime = _created()
    updated_at: datetime = _updated()


class SnippetPublic(SnippetBase):
    id: int
    updated_at: datetime


# --------------------------------------------------------------------------------------------
# Complaints and their events
# --------------------------------------------------------------------------------------------


class ComplaintBase(SQLModel):
    category: ComplaintCategory = _enum(ComplaintCategory)
    severity: Severity = _enum(Severity, default=Severity.medium)
    description: str = Field(sa_type=Text)
    attachments: list[str] = _json(list)


class Complaint(ComplaintBase, table=True):
    __table_args__ = (
        UniqueConstraint("reference", name="uq_complaint_reference"),
        Index("ix_complaint_status_created", "status", "created_at"),
        # Analytics: period windows (covering: the figures of a period read no table rows),
        # the SLA watch list, "a complaint within 72 h" probes.
        Index(
            "ix_complaint_created_figures",
            "created_at",
            "status",
            "category",
            "severity",
            "first_response_at",
            "resolved_at",
            "sla_due_at",
            "reopen_count",
            "assignee_id",
            "customer_id",
        ),
        # Resolutions of a period, per agent (/agents) and the backlog at a window's end,
        # read from the index alone.
        Index("ix_complaint_resolved_figures", "resolved_at", "assignee_id", "created_at"),
        Index(
            "ix_complaint_unresolved_created",
            "created_at",
            sqlite_where=text("resolved_at IS NULL"),
            postgresql_where=text("resolved_at IS NULL"),
        ),
        Index("ix_complaint_status_due", "status", "sla_due_at"),
        Index("ix_complaint_customer_created", "customer_id", "created_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    reference: str = Field(max_length=20)
    customer_id: int | None = Field(default=None, foreign_key="customer.id", index=True)
    status: ComplaintStatus = _enum(ComplaintStatus, default=ComplaintStatus.open)
    assignee_id: int | None = Field(default=None, foreign_key="agent.id", index=True)
    sla_due_at: datetime | None = _ts(default=None)
    first_response_at: datetime | None = _ts(default=None)
    resolved_at: datetime | None = _ts(default=None)
    closed_at: datetime | None = _ts(default=None)
    resolution_note: str | None = Field(default=None, sa_type=Text)
    reopen_count: int = 0
    # Where the complaint is announced in the agents' group (forum topic / card message).
    group_chat_id: int | None = Field(default=None, sa_type=BigInteger)
    group_topic_id: int | None = Field(default=None, sa_type=BigInteger)
    group_message_id: int | None = Field(default=None, sa_type=BigInteger)
    created_at: datetime = _created()
    updated_at: datetime = _updated()


class ComplaintPublic(ComplaintBase):
    id: int
    reference: str
    customer_id: int | None
    status: ComplaintStatus
    assignee_id: int | None
    sla_due_at: datetime | None
    first_response_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    resolution_note: str | None
    created_at: datetime
    updated_at: datetime


class ComplaintCreate(SQLModel):
    """A complaint filed from another channel (a web form, the shop) for a known customer."""

    category: ComplaintCategory
    severity: Severity = Severity.medium
    description: Annotated[
        StorableText, StringConstraints(min_length=1, max_length=4000, pattern=r"\S")
    ]
    channel: ChannelName = Channel.web.value
    external_id: Annotated[StorableText, StringConstraints(min_length=1, max_length=100)] | None = (
        Field(
            default=None,
            description="the sender's id for it (a form submission, a ticket): the same id "
            "from the same channel again is the same complaint, filed once",
        )
    )


class ComplaintStatusChange(SQLModel):
    status: ComplaintStatus
    note: StorableText | None = Field(
        default=None, max_length=4000, description="shown to the customer with the change"
    )


class ComplaintEventBase(SQLModel):
    action: str = Field(max_length=32, description="filed, assigned, status_changed, comment, ...")
    actor_type: ActorType = _enum(ActorType)
    actor_id: int | None = Field(default=None, description="agent id when the actor is an agent")
    from_status: ComplaintStatus | None = _enum(ComplaintStatus, default=None)
    to_status: ComplaintStatus | None = _enum(ComplaintStatus, default=None)
    note: str | None = Field(default=None, sa_type=Text)


class ComplaintEvent(ComplaintEventBase, table=True):
    __tablename__ = "complaint_event"

    id: int | None = Field(default=None, primary_key=True)
    complaint_id: int = Field(foreign_key="complaint.id", index=True)
    created_at: datetime = _created()


class ComplaintEventPublic(ComplaintEventBase):
    id: int
    complaint_id: int
    created_at: datetime


class ReferenceCounter(SQLModel, table=True):
    """Sequence for human-friendly references (``C-000123``), incremented atomically in the
    filing transaction: a rollback returns the number, so references stay gap-free enough to
    read on the phone, on SQLite and PostgreSQL alike."""

    __tablename__ = "reference_counter"

    name: str = Field(primary_key=True, max_length=32)
    value: int = 0


# --------------------------------------------------------------------------------------------
# Handoffs to human agents
# --------------------------------------------------------------------------------------------


class HandoffBase(SQLModel):
    reason: str | None = Field(default=None, sa_type=Text)


class Handoff(HandoffBase, table=True):
    __table_args__ = (
        # At most one handoff that is not closed per customer, enforced by the database so that
        # two concurrent /human commands cannot open two.
        Index(
            "uq_handoff_one_open_per_customer",
            "customer_id",
            unique=True,
            sqlite_where=text("status != 'closed'"),
            postgresql_where=text("status != 'closed'"),
        ),
        Index("ix_handoff_status_due", "status", "next_reminder_at"),
        # Analytics: period windows and "a handoff within 72 h of a bot answer" probes.
        # Covering: the handoff figures of a period read no table rows.
        Index(
            "ix_handoff_requested_figures",
            "requested_at",
            "customer_id",
            "claimed_at",
            "csat_score",
            "agent_id",
        ),
        Index("ix_handoff_claimed_agent", "claimed_at", "agent_id"),
        Index("ix_handoff_customer_requested", "customer_id", "requested_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int | None = Field(default=None, foreign_key="customer.id")
    complaint_id: int | None = Field(default=None, foreign_key="complaint.id")
    status: HandoffStatus = _enum(HandoffStatus, default=HandoffStatus.waiting)
    agent_id: int | None = Field(default=None, foreign_key="agent.id", index=True)
    chat_id: int | None = Field(default=None, sa_type=BigInteger)
    topic_id: int | None = Field(default=None, sa_type=BigInteger)
    card_message_id: int | None = Field(default=None, sa_type=BigInteger)
    requested_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    claimed_at: datetime | None = _ts(default=None)
    first_agent_reply_at: datetime | None = _ts(default=None)
    closed_at: datetime | None = _ts(default=None)
    summary: str | None = Field(default=None, sa_type=Text)
    # Reminder / escalation schedule, kept here (not in in-memory jobs) to survive restarts.
    reminders_sent: int = 0
    next_reminder_at: datetime | None = _ts(default=None)
    escalated_at: datetime | None = _ts(default=None)
    unreachable: bool = False
    csat_score: int | None = None
    csat_comment: str | None = Field(default=None, sa_type=Text)
    created_at: datetime = _created()
    updated_at: datetime = _updated()


class HandoffPublic(HandoffBase):
    id: int
    customer_id: int | None
    complaint_id: int | None
    status: HandoffStatus
    agent_id: int | None
    requested_at: datetime
    claimed_at: datetime | None
    first_agent_reply_at: datetime | None
    closed_at: datetime | None
    csat_score: int | None
    csat_comment: str | None


class GroupMessageLink(SQLModel, table=True):
    """Which handoff or complaint a message in the agents' group belongs to, so that an agent's
    reply to any bot message (plain-group mode) finds its conversation after a restart."""

    __tablename__ = "group_message_link"
    __table_args__ = (UniqueConstraint("chat_id", "message_id", name="uq_group_message"),)

    id: int | None = Field(default=None, primary_key=True)
    chat_id: int = Field(sa_type=BigInteger)
    message_id: int = Field(sa_type=BigInteger)
    handoff_id: int | None = Field(default=None, foreign_key="handoff.id", index=True)
    complaint_id: int | None = Field(default=None, foreign_key="complaint.id", index=True)
    # A digest of what the bot last showed in this message (a card's text and buttons, a
    # topic's name), so a refresh that would change nothing is not sent: Telegram refuses it
    # ("message is not modified") and it would cost the group's 20-a-minute budget.
    shown_digest: str | None = Field(default=None, max_length=64)
    created_at: datetime = _created()


class CardRefresh(SQLModel, table=True):
    """A card (and its topic's title) that no longer shows its subject's state: a change marks
    it stale, and a refresher renders it from the database at most once per interval, so a
    burst of changes costs a few edits. In the database, so no change is lost to a restart and
    two instances share the work (a lease keeps them off each other's card)."""

    __tablename__ = "card_refresh"
    __table_args__ = (UniqueConstraint("kind", "subject_id", name="uq_card_refresh_subject"),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=16, description="complaint or handoff")
    subject_id: int
    # Bumped by every change: a refresh that rendered an older version leaves the card stale.
    version: int = 1
    # Since when it shows less than its state (None: up to date).
    stale_since: datetime | None = _ts(default=None, index=True)
    refreshed_at: datetime | None = _ts(default=None)
    leased_until: datetime | None = _ts(default=None)
    # What a closed handoff's button says and the status it was set for (who resolved it,
    # withdrawn, closed when idle): {"status": ..., "template": ..., "values": {...}}.
    label: dict[str, Any] | None = Field(default=None, sa_type=JSON)


class GroupEditBudget(SQLModel, table=True):
    """The edits (card texts, topic titles) the bot made in a group in the last minute, shared
    by every instance: Telegram allows about 20 messages a minute per group, edits included."""

    __tablename__ = "group_edit_budget"

    chat_id: int = Field(sa_type=BigInteger, primary_key=True)
    # POSIX timestamps of the edits of the last minute, oldest first.
    sent: list[float] = _json(list)


# --------------------------------------------------------------------------------------------
# Purchases: the monetary side (RFM)
# --------------------------------------------------------------------------------------------


# Larger amounts are refused as typos: they would overflow sums and the drivers' integers.
MAX_AMOUNT_MINOR = 10**15


class PurchaseBase(SQLModel):
    # BigInteger: 32 bits end at 21 million EUR, or 2 billion in zero-decimal currencies (VND).
    amount_minor: int = Field(sa_type=BigInteger, description="amount in minor units (cents)")
    currency: str = Field(default="EUR", min_length=3, max_length=3)
    purchased_at: datetime = Field(sa_type=UTCDateTime)
    external_ref: str | None = Field(default=None, max_length=100)


class Purchase(PurchaseBase, table=True):
    __table_args__ = (
        UniqueConstraint("external_ref", name="uq_purchase_external_ref"),
        # Covering index: RFM reads (customer, time, amount, currency) from the index alone,
        # ~3.5x faster on SQLite at 1M purchases (bench/bench_rfm.py --covering-index).
        Index(
            "ix_purchase_customer_time",
            "customer_id",
            "purchased_at",
            "amount_minor",
            "currency",
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int | None = Field(default=None, foreign_key="customer.id")
    created_at: datetime = _created()
    updated_at: datetime = _updated()


class PurchasePublic(PurchaseBase):
    id: int
    customer_id: int | None


class PurchaseCreate(PurchaseBase):
    """A purchase (or, negative, a refund) another system reports; ``external_ref`` (its order
    id) makes reporting it again harmless."""

    amount_minor: int = Field(
        ge=-MAX_AMOUNT_MINOR, le=MAX_AMOUNT_MINOR, description="minor units; negative: a refund"
    )
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] = "EUR"
    purchased_at: InputTime
    external_ref: StorableText | None = Field(default=None, min_length=1, max_length=100)


# --------------------------------------------------------------------------------------------
# Conversation state and runtime state that must survive restarts and be shared by instances
# --------------------------------------------------------------------------------------------


class FlowState(SQLModel, table=True):
    """A multi-step conversation in progress (e.g. filing a complaint), keyed by the chat."""

    __tablename__ = "flow_state"
    __table_args__ = (UniqueConstraint("channel", "chat_key", name="uq_flow_chat"),)

    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=32)
    chat_key: str = Field(max_length=100)
    customer_id: int | None = Field(default=None, foreign_key="customer.id", index=True)
    flow: str = Field(max_length=32)
    step: str = Field(max_length=32)
    data: dict[str, Any] = _json(dict)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    created_at: datetime = _created()
    updated_at: datetime = _updated()


class AppState(SQLModel, table=True):
    """Small key/value runtime facts shared by all instances (e.g. the agents' group id after
    Telegram migrated it to a supergroup)."""

    __tablename__ = "app_state"

    key: str = Field(primary_key=True, max_length=100)
    value: dict[str, Any] = _json(dict)
    updated_at: datetime = _updated()


class InboxState(StrEnum):
    pending = "pending"
    done = "done"
    failed = "failed"


class InboxUpdate(SQLModel, table=True):
    """A Telegram update as received (polling or webhook), kept durably before Telegram is told
    it arrived, and processed from here: a crash between receiving and handling loses nothing.

    ``order_key`` groups the updates that must be handled in order (one chat); a row is in
    flight while ``claimed_until`` lies in the future (a lease, so that a crashed instance's
    work is taken over)."""

    __tablename__ = "inbox_update"
    __table_args__ = (
        Index("ix_inbox_state_update", "state", "update_id"),
        Index("ix_inbox_order_state_update", "order_key", "state", "update_id"),
        Index("ix_inbox_received", "received_at"),
    )

    update_id: int = Field(
        sa_type=BigInteger, primary_key=True, sa_column_kwargs={"autoincrement": False}
    )
    order_key: str = Field(max_length=64)
    payload: str = Field(sa_type=Text, description="the update as Telegram sent it (JSON)")
    state: InboxState = _enum(InboxState, default=InboxState.pending)
    attempts: int = 0
    claimed_by: str | None = Field(default=None, max_length=200)
    claimed_until: datetime | None = _ts(default=None)
    received_at: datetime = _created()
    processed_at: datetime | None = _ts(default=None)
    last_error: str | None = Field(default=None, sa_type=Text)


# --------------------------------------------------------------------------------------------
# API keys: other channels (web forms, e-mail, the shop) writing into the CRM over /api/v1
# --------------------------------------------------------------------------------------------


class ApiScope(StrEnum):
    read = "read"
    write_interactions = "write:interactions"
    write_complaints = "write:complaints"
    write_purchases = "write:purchases"


class ApiKeyBase(SQLModel):
    name: str = Field(max_length=64, description="who uses it, e.g. shop")
    prefix: str = Field(max_length=16, description="the token's first characters, to recognise it")
    scopes: list[str] = _json(list)


class ApiKey(ApiKeyBase, table=True):
    """A bearer token's SHA-256 (never the token itself). The tokens are 256 random bits, so a
    fast hash is the right one: a slow password hash (bcrypt) guards guessable secrets, and no
    one can enumerate 2**256 tokens; a fast one lets every request find its key by an index
    lookup on the hash instead of trying each stored key."""

    __tablename__ = "api_key"
    __table_args__ = (
        UniqueConstraint("token_sha256", name="uq_api_key_token_sha256"),
        # One live key per name; a revoked key keeps its name in the list.
        Index(
            "uq_api_key_live_name",
            "name",
            unique=True,
            sqlite_where=text("revoked_at IS NULL"),
            postgresql_where=text("revoked_at IS NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    token_sha256: str = Field(max_length=64)
    created_at: datetime = _created()
    revoked_at: datetime | None = _ts(default=None)
    last_used_at: datetime | None = _ts(default=None)


class ApiKeyPublic(ApiKeyBase):
    id: int
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


# --------------------------------------------------------------------------------------------
# Analytics snapshots
# --------------------------------------------------------------------------------------------


class RfmSnapshot(SQLModel, table=True):
    """Every purchasing customer's RFM values and scores as of the last refresh (a periodic job,
    ``crm_core.services.segments.refresh_rfm_snapshot``): /segments, /mvc and /churn read this
    instead of ranking the whole base on each command. Rebuilt wholesale, so no foreign keys;
    when it was taken is kept in AppState (``rfm_snapshot``). Column names are those of the RFM
    query (``crm_core.services.rfm``) so that either can feed the same reports."""

    __tablename__ = "rfm_snapshot"
    __table_args__ = (Index("ix_rfm_snapshot_monetary", "monetary", "customer_id"),)

    customer_id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    last_at: datetime = Field(sa_type=UTCDateTime)
    frequency: int
    monetary: int = Field(sa_type=BigInteger)
    cur_min: str = Field(max_length=3)
    cur_max: str = Field(max_length=3)
    r: int
    f: int
    m: int


class BotAnswerOutcome(SQLModel, table=True):
    """Whether a bot answer was a verified resolution (no handoff, complaint, new question or
    unhelpful vote from that customer within 72 h), recorded once the 72 h are over by a
    periodic job (``crm_core.services.analytics.refresh_bot_outcomes``), so that /stats counts
    rows instead of probing every answer's aftermath. How far it got is in AppState
    (``bot_outcomes``)."""

    __tablename__ = "bot_answer_outcome"
    __table_args__ = (Index("ix_bot_answer_outcome_time", "answered_at", "verified"),)

    interaction_id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    customer_id: int | None = None
    answered_at: datetime = Field(sa_type=UTCDateTime)
    verified: bool


class InteractionHour(SQLModel, table=True):
    """Per UTC hour and kind: how many timeline entries, and for ``kb_feedback`` how many
    helpful / unhelpful votes. Kept by a periodic job
    (``crm_core.services.interaction_hours.refresh_interaction_hours``) for the hours that are
    over (with a margin for late entries), so that /stats and its chart sum a few hundred rows
    instead of reading every vote of a month; how far it got is in AppState
    (``interaction_hours``). Hours it has not reached are counted from the timeline."""

    __tablename__ = "interaction_hour"

    hour: datetime = Field(sa_type=UTCDateTime, primary_key=True)
    kind: str = Field(max_length=32, primary_key=True)
    count: int
    helpful: int
    unhelpful: int


# --------------------------------------------------------------------------------------------
# Campaigns: a message to a segment of customers, with a hold-out group to measure its lift
# --------------------------------------------------------------------------------------------


class CampaignStatus(StrEnum):
    draft = "draft"
    sending = "sending"
    done = "done"
    cancelled = "cancelled"


class RecipientGroup(StrEnum):
    treatment = "treatment"  # is sent the message
    holdout = "holdout"  # same segment, never sent to: what would have happened anyway


class RecipientStatus(StrEnum):
    pending = "pending"
    sending = "sending"  # claimed by a sender; a crash leaves it here (never sent again)
    sent = "sent"
    skipped = "skipped"  # not sent on purpose (opted out since, erased, no chat, hold-out)
    failed = "failed"  # Telegram refused, or the outcome is unknown after a crash


class CampaignBase(SQLModel):
    name: str = Field(max_length=100)
    # Segment criteria, combined with AND: segment, tag, purchased_before, purchased_after
    # (ISO dates, of the last purchase), open_complaint (true/false), language.
    criteria: dict[str, Any] = _json(dict)
    template: str = Field(sa_type=Text, description="Jinja2 text with the customer's fields")
    # [{"kind": "link", "label": ..., "url": ...}, {"kind": "talk"}, {"kind": "stop"}]
    buttons: list[dict[str, Any]] = _json(list)
    holdout_share: float = 0.1
    attribution_days: int = 14


class Campaign(CampaignBase, table=True):
    id: int | None = Field(default=None, primary_key=True)
    status: CampaignStatus = _enum(CampaignStatus, default=CampaignStatus.draft)
    created_by: int | None = Field(default=None, sa_type=BigInteger, description="Telegram id")
    started_at: datetime | None = _ts(default=None)
    finished_at: datetime | None = _ts(default=None)
    created_at: datetime = _created()
    updated_at: datetime = _updated()


class CampaignPublic(CampaignBase):
    id: int
    status: CampaignStatus
    started_at: datetime | None
    finished_at: datetime | None
    created_at: datetime


class CampaignRecipient(SQLModel, table=True):
    """One customer of a campaign's segment, frozen when sending starts: in the treatment group
    (sent to once, at most) or the hold-out (never sent to)."""

    __tablename__ = "campaign_recipient"
    __table_args__ = (
        UniqueConstraint("campaign_id", "customer_id", name="uq_campaign_recipient"),
        Index("ix_campaign_recipient_status", "campaign_id", "status", "id"),
        # Each sweep looks for claims cut off by a crash, across campaigns.
        Index("ix_campaign_recipient_claims", "status", "claimed_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id")
    customer_id: int = Field(foreign_key="customer.id", index=True)
    # treatment or hold-out ("group" is an SQL keyword)
    cohort: RecipientGroup = _enum(RecipientGroup)
    status: RecipientStatus = _enum(RecipientStatus, default=RecipientStatus.pending)
    reason: str | None = Field(default=None, max_length=64)
    claimed_at: datetime | None = _ts(default=None)
    sent_at: datetime | None = _ts(default=None)
    created_at: datetime = _created()


# --------------------------------------------------------------------------------------------
# Outbox: every message the bot sends, and the shared send budget
# --------------------------------------------------------------------------------------------


class OutboxStatus(StrEnum):
    pending = "pending"  # not delivered yet: the sender tries again from not_before on
    sent = "sent"
    failed = "failed"  # Telegram refused it for good (400): logged, not retried
    unreachable = "unreachable"  # 403: the customer blocked the bot, no retries


class OutboxMessage(SQLModel, table=True):
    """One message the bot sends (one Telegram message: a long text split at 4096 is several).

    A message sent at once is written ``sent`` in the same transaction as its outbound
    Interaction; one whose sending failed for a passing reason (429 beyond the rate limiter's
    retries, network error, timeout, 5xx) is written ``pending`` and delivered later by the
    outbox sender, after every older pending message of its chat (per-chat order). ``method``
    and ``payload`` are the Bot API call (PTB's method name, its keyword arguments as JSON);
    ``not_before`` is also the sender's lease: it is pushed forward while one instance sends.
    ``link`` says what a group post belongs to (``{"handoff_id": 1}``), so that a late post is
    still linked to its conversation."""

    __tablename__ = "outbox_message"
    __table_args__ = (
        # The hot path's "does this chat have older pending messages?" and the sender's scan
        # read only this (small) partial index: sent rows are not in it.
        Index(
            "ix_outbox_pending_chat",
            "chat_id",
            "id",
            sqlite_where=text("status = 'pending'"),
            postgresql_where=text("status = 'pending'"),
        ),
        Index("ix_outbox_created", "created_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    chat_id: int = Field(sa_type=BigInteger)
    thread_id: int | None = Field(default=None, sa_type=BigInteger)
    method: str = Field(max_length=32)
    payload: dict[str, Any] = _json(dict)
    priority: int = 0
    status: OutboxStatus = _enum(OutboxStatus, default=OutboxStatus.pending)
    attempts: int = 0
    not_before: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    message_ids: list[int] = _json(list)
    customer_id: int | None = None
    handoff_id: int | None = None
    link: dict[str, Any] = _json(dict)
    error: str | None = Field(default=None, sa_type=Text)
    created_at: datetime = _created()
    sent_at: datetime | None = _ts(default=None)


class SendBudget(SQLModel, table=True):
    """Bot API sends counted per key (``all``, ``chat:<id>``) and time window (named by its
    start, epoch seconds), shared by every instance on one database so that Telegram's
    per-bot limits hold for the bot, not for each process. Rows of past windows are purged by
    the outbox sweeper."""

    __tablename__ = "send_budget"

    key: str = Field(primary_key=True, max_length=40)
    window_start: int = Field(
        primary_key=True, sa_type=BigInteger, sa_column_kwargs={"autoincrement": False}
    )
    count: int = 0
