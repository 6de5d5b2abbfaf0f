"""The operations of ``/api/v1``: customers (search, 360° view, identities), interactions,
complaints and purchases, each through the same CRM services (and, for a complaint's status,
the same code path as an agent's ``/status``) that the bot uses."""

from __future__ import annotations

import logging
from typing import Any

from bot.api.problems import ProblemError, problem
from bot.api.routing import Call, Endpoint, Reply, decode_cursor, encode_cursor, not_found
from bot.api.schemas import (
    MAX_SEARCH_RESULTS,
    ComplaintDetail,
    ComplaintListQuery,
    ComplaintPage,
    ComplaintPath,
    Customer360Out,
    CustomerPage,
    CustomerPath,
    CustomerSearchQuery,
    IdCursor,
    IdentityList,
    IdentityOut,
    InteractionPage,
    OffsetCursor,
    PageQuery,
    PurchasePage,
    StatusChangeOut,
    TimeCursor,
)
from crm_core.clock import as_utc
from crm_core.models import (
    ActorType,
    ApiScope,
    ChannelIdentityCreate,
    ChannelIdentityLink,
    ChannelIdentityPublic,
    ComplaintCreate,
    ComplaintEventPublic,
    ComplaintPublic,
    ComplaintStatusChange,
    Customer,
    CustomerPublic,
    Direction,
    Interaction,
    InteractionCreate,
    InteractionKind,
    InteractionPublic,
    PurchaseCreate,
    PurchasePublic,
)
from crm_core.services import listing
from crm_core.services.complaints import complaint_history, file_complaint, get_complaint
from crm_core.services.customer360 import get_customer_360
from crm_core.services.customers import find_customers, get_customer, identify_customer
from crm_core.services.identities import IdentityTaken, attach_identity
from crm_core.services.intake import file_complaint_once
from crm_core.services.interactions import log_interaction
from crm_core.services.listing import TimePosition
from crm_core.services.purchases import append_purchase
from handlers.agents.announce import announce_complaint
from handlers.agents.complaint_commands import apply_status_change
from handlers.core.context import update_scope
from handlers.core.send import Delivery
from handlers.customer.complaint_flow import sla_policy

log = logging.getLogger(__name__)

V1 = "/api/v1"
CONFLICT = "The external id was used before for something else; nothing was written."


# --- customers -------------------------------------------------------------------------------


async def search_customers(call: Call) -> Reply:
    query: CustomerSearchQuery = call.query
    offset = decode_cursor(query.cursor, OffsetCursor).o if query.cursor else 0
    wanted = min(offset + query.limit + 1, MAX_SEARCH_RESULTS)
    found = await find_customers(
        session=call.session,
        query=query.q,
        limit=wanted,
        default_region=call.application.deps.config.default_phone_region,
    )
    page = found[offset : offset + query.limit]
    more = len(found) > offset + query.limit
    return Reply(
        200,
        CustomerPage(
            items=[CustomerPublic.model_validate(c) for c in page],
            next_cursor=encode_cursor({"o": offset + query.limit}) if more else None,
        ),
    )


async def customer_360(call: Call) -> Reply:
    view = await get_customer_360(session=call.session, customer_id=call.path.customer_id)
    return Reply(200, Customer360Out.of(view))


async def customer_identities(call: Call) -> Reply:
    rows = await listing.customer_identities(
        session=call.session, customer_id=call.path.customer_id
    )
    return Reply(200, IdentityList(items=[ChannelIdentityPublic.model_validate(r) for r in rows]))


async def identify(call: Call) -> Reply:
    body: ChannelIdentityCreate = call.body
    known = await listing.find_identity(
        session=call.session, channel=body.channel, external_id=body.external_id
    )
    customer = await identify_customer(
        session=call.session,
        channel=body.channel,
        external_id=body.external_id,
        name=body.name,
        username=body.username,
        language=body.language,
    )
    identity = await listing.find_identity(
        session=call.session, channel=body.channel, external_id=body.external_id
    )
    assert identity is not None
    answer = IdentityOut(
        identity=ChannelIdentityPublic.model_validate(identity),
        customer=CustomerPublic.model_validate(customer),
    )
    return Reply(200 if known is not None else 201, answer)


async def _living_customer(call: Call) -> Customer:
    """The customer a write is for (an absorbed id: the survivor); one erased at their request
    takes no new data."""
    customer = await get_customer(session=call.session, customer_id=call.path.customer_id)
    if customer.anonymized_at is not None:
        raise not_found(f"Customer #{call.path.customer_id} was erased at their request.")
    return customer


async def link_identity(call: Call) -> Reply:
    body: ChannelIdentityLink = call.body
    customer = await _living_customer(call)
    assert customer.id is not None
    try:
        attached = await attach_identity(
            session=call.session,
            customer_id=customer.id,
            channel=body.channel,
            external_id=body.external_id,
            username=body.username,
            display_name=body.display_name,
        )
    except IdentityTaken as taken:
        raise ProblemError(problem(409, "Conflict", str(taken), "identity-taken")) from None
    answer = IdentityOut(
        identity=ChannelIdentityPublic.model_validate(attached.identity),
        customer=CustomerPublic.model_validate(customer),
    )
    return Reply(201 if attached.created else 200, answer)


# --- interactions ----------------------------------------------------------------------------


def _time_position(cursor: str | None) -> TimePosition | None:
    if cursor is None:
        return None
    position = decode_cursor(cursor, TimeCursor)
    return TimePosition(at=as_utc(position.t), id=position.i)


def _next_time_cursor(rows: list[Any], limit: int, time_of: Any) -> str | None:
    if len(rows) <= limit:
        return None
    last = rows[limit - 1]
    return encode_cursor({"t": time_of(last).isoformat(), "i": last.id})


async def list_interactions(call: Call) -> Reply:
    query: PageQuery = call.query
    rows = await listing.interactions_page(
        session=call.session,
        customer_id=call.path.customer_id,
        after=_time_position(query.cursor),
        limit=query.limit,
    )
    return Reply(
        200,
        InteractionPage(
            items=[InteractionPublic.model_validate(r) for r in rows[: query.limit]],
            next_cursor=_next_time_cursor(rows, query.limit, lambda r: r.occurred_at),
        ),
    )


def _same_interaction(stored: Interaction, body: InteractionCreate) -> bool:
    return (
        stored.direction == body.direction
        and stored.kind.value == body.kind.value
        and (stored.text or None) == (body.text or None)
    )


async def append_interaction(call: Call) -> Reply:
    body: InteractionCreate = call.body
    customer = await _living_customer(call)
    logged = await log_interaction(
        session=call.session,
        customer_id=customer.id,
        channel=body.channel,
        direction=Direction(body.direction),
        kind=InteractionKind(body.kind.value),
        text=body.text,
        details={**body.details, "external_id": body.external_id, "via": "api"},
        # Per channel: two systems may well number their messages alike.
        idempotency_key=f"api:{body.channel}:{body.external_id}",
        occurred_at=body.occurred_at,
    )
    stored = logged.interaction
    if not logged.created and (
        stored.customer_id != customer.id or not _same_interaction(stored, body)
    ):
        raise ProblemError(problem(409, "Conflict", CONFLICT, "idempotency-conflict"))
    answer = InteractionPublic.model_validate(stored)
    return Reply(201 if logged.created else 200, answer)


# --- complaints ------------------------------------------------------------------------------


async def list_complaints(call: Call) -> Reply:
    query: ComplaintListQuery = call.query
    after = decode_cursor(query.cursor, IdCursor).i if query.cursor else None
    rows = await listing.complaints_page(
        session=call.session,
        status=query.status,
        customer_id=query.customer_id,
        after_id=after,
        limit=query.limit,
    )
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    return Reply(
        200,
        ComplaintPage(
            items=[ComplaintPublic.model_validate(r) for r in rows],
            next_cursor=encode_cursor({"i": rows[-1].id}) if more else None,
        ),
    )


async def show_complaint(call: Call) -> Reply:
    complaint = await get_complaint(session=call.session, reference=call.path.reference)
    events = await complaint_history(session=call.session, reference=complaint.reference)
    return Reply(
        200,
        ComplaintDetail(
            complaint=ComplaintPublic.model_validate(complaint),
            events=[ComplaintEventPublic.model_validate(e) for e in events],
        ),
    )


async def file(call: Call) -> Reply:
    body: ComplaintCreate = call.body
    customer = await _living_customer(call)
    assert customer.id is not None
    sla = sla_policy(call.application.deps.config)
    if body.external_id is None:
        complaint = await file_complaint(
            session=call.session,
            customer_id=customer.id,
            category=body.category,
            severity=body.severity,
            description=body.description,
            sla=sla,
            channel=body.channel,
        )
        created = True
    else:
        filed = await file_complaint_once(
            session=call.session,
            idempotency_key=f"api:complaint:{body.channel}:{body.external_id}",
            customer_id=customer.id,
            category=body.category,
            severity=body.severity,
            description=body.description,
            sla=sla,
            channel=body.channel,
        )
        complaint, created = filed.complaint, filed.created
        if not created and (
            complaint.customer_id != customer.id
            or complaint.category != body.category
            or complaint.description != body.description.strip()
        ):
            raise ProblemError(problem(409, "Conflict", CONFLICT, "idempotency-conflict"))
    assert complaint.id is not None
    if created:
        # The agents' card goes out after the answer: the group's 20 messages a minute may
        # make it wait, and the complaint is filed whether or not it is shown yet.
        call.application.create_task(
            _announce(call, complaint.id), name=f"api-announce-{complaint.reference}"
        )
    location = f"{V1}/complaints/{complaint.reference}"
    return Reply(
        201 if created else 200, ComplaintPublic.model_validate(complaint), {"Location": location}
    )


async def _announce(call: Call, complaint_id: int) -> None:
    async with update_scope(call.application.deps.session_factory):
        await announce_complaint(call.context(), complaint_id=complaint_id)


async def change_status(call: Call) -> Reply:
    body: ComplaintStatusChange = call.body
    delivery = await apply_status_change(
        call.context(),
        reference=call.path.reference,
        status=body.status.value,
        note=body.note,
        actor_type=ActorType.system,
        actor_id=None,
        actor_name=f"{call.key.name} (API)",
        details={"via": "api", "api_key": call.key.name},
    )
    complaint = await get_complaint(session=call.session, reference=call.path.reference)
    return Reply(
        200,
        StatusChangeOut(
            complaint=ComplaintPublic.model_validate(complaint),
            customer_notified=delivery is Delivery.SENT,
        ),
    )


# --- purchases -------------------------------------------------------------------------------


async def list_purchases(call: Call) -> Reply:
    query: PageQuery = call.query
    rows = await listing.purchases_page(
        session=call.session,
        customer_id=call.path.customer_id,
        after=_time_position(query.cursor),
        limit=query.limit,
    )
    return Reply(
        200,
        PurchasePage(
            items=[PurchasePublic.model_validate(r) for r in rows[: query.limit]],
            next_cursor=_next_time_cursor(rows, query.limit, lambda r: r.purchased_at),
        ),
    )


async def append_a_purchase(call: Call) -> Reply:
    body: PurchaseCreate = call.body
    customer = await _living_customer(call)
    recorded = await append_purchase(
        session=call.session,
        customer_id=call.path.customer_id,
        amount_minor=body.amount_minor,
        currency=body.currency,
        purchased_at=body.purchased_at,
        external_ref=body.external_ref,
    )
    stored = recorded.purchase
    if not recorded.created and (
        stored.customer_id != customer.id
        or stored.amount_minor != body.amount_minor
        or stored.currency != body.currency
    ):
        raise ProblemError(problem(409, "Conflict", CONFLICT, "idempotency-conflict"))
    return Reply(201 if recorded.created else 200, PurchasePublic.model_validate(stored))


# --- the table -------------------------------------------------------------------------------

READ, W_INTERACTIONS = ApiScope.read, ApiScope.write_interactions
W_COMPLAINTS, W_PURCHASES = ApiScope.write_complaints, ApiScope.write_purchases
NO_CUSTOMER = {404: "no such customer"}
NO_COMPLAINT = {404: "no such complaint"}
REPLAYED = "stored before under this external id: the stored row, unchanged"

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "GET", f"{V1}/customers", "searchCustomers", "Find customers", READ, search_customers,
        {200: (CustomerPage, "matches, exact ones first")}, query=CustomerSearchQuery,
        description="As agents' /customer: exact matches (id, phone, e-mail, @username, "
        "external id) first, then name, e-mail and username substrings.",
    ),
    Endpoint(
        "GET", f"{V1}/customers/{{customer_id}}", "getCustomer", "A customer's 360° view", READ,
        customer_360, {200: (Customer360Out, "the customer (an absorbed id: the survivor)")},
        path_params=CustomerPath, problems=NO_CUSTOMER,
    ),
    Endpoint(
        "GET", f"{V1}/customers/{{customer_id}}/identities", "listIdentities",
        "A customer's channel identities", READ, customer_identities,
        {200: (IdentityList, "oldest first")}, path_params=CustomerPath, problems=NO_CUSTOMER,
    ),
    Endpoint(
        "POST", f"{V1}/identities", "identify", "Identify (or create) a customer by a channel id",
        W_INTERACTIONS, identify,
        {201: (IdentityOut, "a new customer"), 200: (IdentityOut, "known already")},
        body=ChannelIdentityCreate,
    ),
    Endpoint(
        "POST", f"{V1}/customers/{{customer_id}}/identities", "linkIdentity",
        "Give a known customer another channel's id", W_INTERACTIONS, link_identity,
        {201: (IdentityOut, "linked"), 200: (IdentityOut, "this customer's already")},
        path_params=CustomerPath, body=ChannelIdentityLink,
        problems={**NO_CUSTOMER, 409: "the id belongs to another customer"},
    ),
    Endpoint(
        "GET", f"{V1}/customers/{{customer_id}}/interactions", "listInteractions",
        "A customer's timeline", READ, list_interactions,
        {200: (InteractionPage, "newest first")}, path_params=CustomerPath, query=PageQuery,
        problems=NO_CUSTOMER,
    ),
    Endpoint(
        "POST", f"{V1}/customers/{{customer_id}}/interactions", "appendInteraction",
        "Append to a customer's timeline", W_INTERACTIONS, append_interaction,
        {201: (InteractionPublic, "stored"), 200: (InteractionPublic, REPLAYED)},
        path_params=CustomerPath, body=InteractionCreate,
        problems={**NO_CUSTOMER, 409: "the external id was used for a different interaction"},
        description="Idempotent: the same external_id from the same channel is stored once.",
    ),
    Endpoint(
        "GET", f"{V1}/complaints", "listComplaints", "List complaints", READ, list_complaints,
        {200: (ComplaintPage, "newest filed first")}, query=ComplaintListQuery,
    ),
    Endpoint(
        "POST", f"{V1}/customers/{{customer_id}}/complaints", "fileComplaint",
        "File a complaint for a customer", W_COMPLAINTS, file,
        {
            201: (ComplaintPublic, "filed; its reference is in the answer"),
            200: (ComplaintPublic, "filed before under this external_id: that complaint"),
        },
        path_params=CustomerPath, body=ComplaintCreate,
        problems={**NO_CUSTOMER, 409: "the external_id was used for a different complaint"},
        description="Filed with its SLA as in Telegram and announced in the agents' group; "
        "idempotent with external_id.",
    ),
    Endpoint(
        "GET", f"{V1}/complaints/{{reference}}", "getComplaint", "A complaint and its history",
        READ, show_complaint, {200: (ComplaintDetail, "the complaint")},
        path_params=ComplaintPath, problems=NO_COMPLAINT,
    ),
    Endpoint(
        "POST", f"{V1}/complaints/{{reference}}/status", "changeComplaintStatus",
        "Change a complaint's status", W_COMPLAINTS, change_status,
        {200: (StatusChangeOut, "changed")}, path_params=ComplaintPath,
        body=ComplaintStatusChange,
        problems={**NO_COMPLAINT, 409: "the lifecycle does not allow this move"},
        description="As an agent's /status: the customer is told in Telegram (with the note), "
        "the complaint's card in the agents' group follows.",
    ),
    Endpoint(
        "GET", f"{V1}/customers/{{customer_id}}/purchases", "listPurchases",
        "A customer's purchases and refunds", READ, list_purchases,
        {200: (PurchasePage, "newest first")}, path_params=CustomerPath, query=PageQuery,
        problems=NO_CUSTOMER,
    ),
    Endpoint(
        "POST", f"{V1}/customers/{{customer_id}}/purchases", "appendPurchase",
        "Record a purchase or refund", W_PURCHASES, append_a_purchase,
        {201: (PurchasePublic, "stored"), 200: (PurchasePublic, REPLAYED)},
        path_params=CustomerPath, body=PurchaseCreate,
        problems={**NO_CUSTOMER, 409: "the external_ref was used for a different purchase"},
        description="Idempotent with external_ref (the shop's order id).",
    ),
)  # fmt: skip
