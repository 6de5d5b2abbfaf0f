"""The API's query parameters and answers. Entities are answered as their ``XPublic`` models
(``crm_core.models``), request bodies validated by their ``XCreate`` models; what is here only
wraps them (pages, the 360° view) or describes query parameters."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from crm_core.models import (
    MAX_ROW_ID,
    ChannelIdentityPublic,
    ComplaintEventPublic,
    ComplaintPublic,
    ComplaintStatus,
    CustomerPublic,
    HandoffPublic,
    InteractionPublic,
    PurchasePublic,
    StorableText,
)
from crm_core.services.customer360 import Customer360

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
# A search is ranked, not a keyset list: its pages are slices of at most this many matches.
MAX_SEARCH_RESULTS = 1000

RowId = Annotated[int, Field(ge=1, le=MAX_ROW_ID)]
Cursor = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200),
    Field(description="opaque: the next_cursor of the previous page"),
]
Limit = Annotated[int, Field(ge=1, le=MAX_LIMIT, description="rows per page")]


# Where a page ended (inside the opaque cursors).
class OffsetCursor(BaseModel):
    o: int = Field(ge=0, lt=MAX_SEARCH_RESULTS)


class IdCursor(BaseModel):
    i: RowId


class TimeCursor(BaseModel):
    t: AwareDatetime
    i: RowId


class _Query(BaseModel):
    # An unknown parameter is refused: a typo (?statu=open) must not silently list everything.
    model_config = ConfigDict(extra="forbid")


class CustomerPath(_Query):
    customer_id: RowId


class ComplaintPath(_Query):
    reference: Annotated[str, StringConstraints(min_length=1, max_length=20)] = Field(
        description="e.g. C-000123 (C123 and 123 are read the same)"
    )


class PageQuery(_Query):
    cursor: Cursor | None = None
    limit: Limit = DEFAULT_LIMIT


class CustomerSearchQuery(PageQuery):
    q: Annotated[StorableText, StringConstraints(min_length=1, max_length=200)] = Field(
        description="phone (also without country code), e-mail, name, @username, external id "
        "or #id, as agents type it in /customer"
    )


class ComplaintListQuery(PageQuery):
    status: ComplaintStatus | None = None
    customer_id: RowId | None = None


class CustomerPage(BaseModel):
    items: list[CustomerPublic]
    next_cursor: str | None = Field(description="null on the last page")


class InteractionPage(BaseModel):
    items: list[InteractionPublic]
    next_cursor: str | None


class ComplaintPage(BaseModel):
    items: list[ComplaintPublic]
    next_cursor: str | None


class PurchasePage(BaseModel):
    items: list[PurchasePublic]
    next_cursor: str | None


class IdentityList(BaseModel):
    items: list[ChannelIdentityPublic]


class IdentityOut(BaseModel):
    identity: ChannelIdentityPublic
    customer: CustomerPublic


class ComplaintDetail(BaseModel):
    complaint: ComplaintPublic
    events: list[ComplaintEventPublic] = Field(description="its history, oldest first")


class StatusChangeOut(BaseModel):
    complaint: ComplaintPublic
    customer_notified: bool = Field(description="the customer was told in Telegram")


class RfmOut(BaseModel):
    recency_days: int
    frequency: int
    monetary_minor: int
    currency: str
    r: int
    f: int
    m: int
    segment: str
    tier: str
    last_purchase_at: datetime | None


class Customer360Out(BaseModel):
    """Everything the desk knows of a customer, as agents see it with /customer."""

    customer: CustomerPublic
    identities: list[ChannelIdentityPublic]
    lifetime_value_minor: int
    currency: str | None = Field(description="null without purchases; XXX when they mix")
    purchase_count: int
    first_purchase_at: datetime | None
    last_purchase_at: datetime | None
    recent_interactions: list[InteractionPublic]
    open_complaints: list[ComplaintPublic]
    open_handoff: HandoffPublic | None
    past_handoffs: list[HandoffPublic]
    rfm: RfmOut | None

    @classmethod
    def of(cls, view: Customer360) -> Customer360Out:
        rfm = view.rfm
        return cls(
            customer=view.customer,
            identities=view.identities,
            lifetime_value_minor=view.lifetime_value_minor,
            currency=view.currency,
            purchase_count=view.purchase_count,
            first_purchase_at=view.first_purchase_at,
            last_purchase_at=view.last_purchase_at,
            recent_interactions=view.recent_interactions,
            open_complaints=view.open_complaints,
            open_handoff=view.open_handoff,
            past_handoffs=list(view.past_handoffs),
            rfm=RfmOut.model_validate(dataclasses.asdict(rfm)) if rfm is not None else None,
        )
