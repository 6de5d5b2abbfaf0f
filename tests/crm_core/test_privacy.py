import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import func
from sqlalchemy import select as sa_select
from sqlmodel import SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.models import (
    ActorType,
    ChannelIdentity,
    Complaint,
    ComplaintCategory,
    ComplaintEvent,
    ComplaintStatus,
    Customer,
    Direction,
    FlowState,
    Handoff,
    HandoffStatus,
    Interaction,
    InteractionKind,
    Purchase,
)
from crm_core.services.customers import (
    add_tags,
    find_customers,
    identify_customer,
    link_email,
    link_phone,
    merge_customers,
)
from crm_core.services.flows import save_flow
from crm_core.services.interactions import log_interaction
from crm_core.services.privacy import export_customer_data, forget_customer
from crm_core.services.purchases import record_purchase

T0 = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
SECRET = "my address is Hauptstr. 1"


async def _rich_customer(session: AsyncSession) -> int:
    """A customer with one of everything, plus an absorbed duplicate."""
    c = await identify_customer(
        session=session,
        channel="telegram",
        external_id="987654321",
        name="Eva Muster",
        username="eva",
    )
    assert c.id is not None
    cid = c.id
    dup = await identify_customer(session=session, channel="web", external_id="w-1", name="Eva M")
    assert dup.id is not None
    await merge_customers(session=session, survivor_id=cid, absorbed_id=dup.id)
    await link_phone(session=session, customer_id=cid, phone="+4915112345678", verified=True)
    await link_email(session=session, customer_id=cid, email="eva@example.com")
    await add_tags(session=session, customer_id=cid, tags=["vip"])
    await log_interaction(
        session=session,
        customer_id=cid,
        channel="telegram",
        direction=Direction.inbound,
        kind=InteractionKind.message,
        text=SECRET,
        details={"message_id": 5},
        idempotency_key="tg:update:1",
        occurred_at=T0,
    )
    complaint = Complaint(
        customer_id=cid,
        reference="C-000001",
        category=ComplaintCategory.delivery,
        description=SECRET,
        attachments=["file-id-1"],
        status=ComplaintStatus.resolved,
        resolution_note="sent a new parcel to Hauptstr. 1",
    )
    session.add(complaint)
    await session.flush()
    assert complaint.id is not None
    session.add(
        ComplaintEvent(
            complaint_id=complaint.id,
            action="comment",
            actor_type=ActorType.agent,
            note="called Eva at home",
        )
    )
    await log_interaction(  # agent-side, tied to the complaint only
        session=session,
        customer_id=None,
        channel="telegram",
        direction=Direction.outbound,
        kind=InteractionKind.agent_reply,
        text="Dear Eva, about Hauptstr. 1 ...",
        complaint_id=complaint.id,
    )
    session.add(
        Handoff(
            customer_id=cid,
            status=HandoffStatus.claimed,
            reason=SECRET,
            summary="Eva wants a refund",
            csat_score=4,
            csat_comment="Eva says thanks",
        )
    )
    await session.commit()
    await record_purchase(
        session=session,
        customer_id=cid,
        amount_minor=4999,
        currency="EUR",
        purchased_at=T0,
        external_ref="order-1",
    )
    await save_flow(
        session=session,
        channel="telegram",
        chat_key="987654321",
        customer_id=cid,
        flow="complaint",
        step="describe",
        data={"text": SECRET},
        ttl=timedelta(hours=1),
        now=T0,
    )
    return cid


async def test_export_contains_everything(session: AsyncSession) -> None:
    cid = await _rich_customer(session)
    data = await export_customer_data(session=session, customer_id=cid)
    text = json.dumps(data)  # JSON-serialisable as it is
    assert data["customer"]["name"] == "Eva Muster"
    assert data["customer"]["phone"] == "+4915112345678"
    assert data["customer"]["email"] == "eva@example.com"
    assert data["customer"]["tags"] == ["vip"]
    assert [m["name"] for m in data["merged_customers"]] == ["Eva M"]
    assert {(i["channel"], i["external_id"]) for i in data["identities"]} == {
        ("telegram", "987654321"),
        ("web", "w-1"),
    }
    texts = [i["text"] for i in data["interactions"]]
    assert SECRET in texts and "Dear Eva, about Hauptstr. 1 ..." in texts
    [complaint] = data["complaints"]
    assert complaint["description"] == SECRET
    assert [e["note"] for e in complaint["events"]] == ["called Eva at home"]
    assert data["handoffs"][0]["csat_comment"] == "Eva says thanks"
    assert data["purchases"][0]["amount_minor"] == 4999
    assert data["conversation_state"][0]["data"] == {"text": SECRET}
    assert "Hauptstr" in text


async def test_forget_wipes_the_person_but_keeps_statistics(session: AsyncSession) -> None:
    cid = await _rich_customer(session)
    counts_before = {
        m.__name__: await _count(session, m)
        for m in (Interaction, Complaint, ComplaintEvent, Handoff, Purchase, Customer)
    }

    await forget_customer(session=session, customer_id=cid, now=T0 + timedelta(days=1))

    session.expunge_all()
    customer = await session.get(Customer, cid)
    assert customer is not None
    assert customer.anonymized_at == T0 + timedelta(days=1)
    assert (customer.name, customer.phone, customer.email, customer.external_id) == (None,) * 4
    assert customer.tags == []
    tombstones = (await session.exec(select(Customer).where(Customer.merged_into_id == cid))).all()
    assert [t.name for t in tombstones] == [None]
    assert await _count(session, ChannelIdentity) == 0
    assert await _count(session, FlowState) == 0
    # Every row is still there (plus the erasure note), with kinds, statuses and amounts...
    counts_after = {
        m.__name__: await _count(session, m)
        for m in (Interaction, Complaint, ComplaintEvent, Handoff, Purchase, Customer)
    }
    assert counts_after == {**counts_before, "Interaction": counts_before["Interaction"] + 1}
    complaint = (await session.exec(select(Complaint))).one()
    assert (complaint.category, complaint.status) == (
        ComplaintCategory.delivery,
        ComplaintStatus.resolved,
    )
    handoff = (await session.exec(select(Handoff))).one()
    assert (handoff.status, handoff.csat_score) == (HandoffStatus.closed, 4)
    purchase = (await session.exec(select(Purchase))).one()
    assert (purchase.amount_minor, purchase.customer_id, purchase.external_ref) == (
        4999,
        cid,
        None,
    )
    kinds = (await session.exec(select(Interaction.kind))).all()
    assert InteractionKind.message in kinds
    # ...but nothing the person said or that identifies them.
    dump = json.dumps(await export_customer_data(session=session, customer_id=cid))
    for secret in ("Hauptstr", "Eva", "987654321", "eva@", "+49151", "vip", "order-1", "file-id"):
        assert secret not in dump, secret
    assert await find_customers(session=session, query="Eva") == []


async def test_after_forget_the_same_account_is_a_new_customer(session: AsyncSession) -> None:
    cid = await _rich_customer(session)
    await forget_customer(session=session, customer_id=cid)
    again = await identify_customer(session=session, channel="telegram", external_id="987654321")
    assert again.id != cid
    assert again.name is None and again.phone is None
    # the old phone is free to be linked again without merging into the erased record
    result = await link_phone(
        session=session, customer_id=again.id or 0, phone="+4915112345678", verified=True
    )
    assert result.merged_customer_ids == []


async def _count(session: AsyncSession, model: type) -> int:
    n = (await session.exec(select(func.count()).select_from(model))).one()
    await session.commit()
    return int(n)


async def _flow_under_the_absorbed_id(session: AsyncSession, cid: int) -> None:
    """A flow saved under the absorbed id (a handler still held it when the merge happened)."""
    [tombstone] = await session.exec(select(Customer.id).where(Customer.merged_into_id == cid))
    await session.commit()
    await save_flow(
        session=session,
        channel="web",
        chat_key="w-1",
        customer_id=tombstone,
        flow="complaint",
        step="describe",
        data={"text": "Eva again, Hauptstr. 1"},
        ttl=timedelta(hours=1),
        now=T0,
    )


async def test_export_includes_state_kept_under_an_absorbed_id(session: AsyncSession) -> None:
    cid = await _rich_customer(session)
    await _flow_under_the_absorbed_id(session, cid)
    data = await export_customer_data(session=session, customer_id=cid)
    assert {"text": "Eva again, Hauptstr. 1"} in [f["data"] for f in data["conversation_state"]]


async def test_forget_leaves_the_person_in_no_table_at_all(session: AsyncSession) -> None:
    cid = await _rich_customer(session)
    await _flow_under_the_absorbed_id(session, cid)

    await forget_customer(session=session, customer_id=cid)

    rows = []
    for table in SQLModel.metadata.sorted_tables:
        result = await session.exec(sa_select(table))  # type: ignore[call-overload]
        rows += [dict(row._mapping) for row in result]
    await session.commit()
    everything = json.dumps(rows, default=str)
    for secret in (
        "Hauptstr",
        "Eva",
        "eva",
        "987654321",
        "w-1",
        "+49151",
        "vip",
        "order-1",
        "file-id",
    ):
        assert secret not in everything, secret
