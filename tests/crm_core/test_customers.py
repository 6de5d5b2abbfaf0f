import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.db import SessionFactory
from crm_core.errors import CustomerNotFound, InvalidEmail, InvalidPhone
from crm_core.models import (
    ChannelIdentity,
    Complaint,
    ComplaintCategory,
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
    ContactInUse,
    add_tags,
    find_customers,
    get_customer,
    identify_customer,
    identify_sender_no_commit,
    link_email,
    link_phone,
    merge_customers,
    set_customer_tags,
)
from crm_core.services.interactions import log_interaction

T0 = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)


async def _count(session: AsyncSession, model: type) -> int:
    n = (await session.exec(select(func.count()).select_from(model))).one()
    await session.commit()
    return int(n)


async def test_identify_creates_once_and_updates(session: AsyncSession) -> None:
    first = await identify_customer(
        session=session, channel="telegram", external_id="42", name="Ann", username="ann", now=T0
    )
    again = await identify_customer(
        session=session,
        channel="telegram",
        external_id="42",
        name="Annie",
        username="@annie",
        language="de",
        now=T0 + timedelta(hours=1),
    )
    assert again.id == first.id
    assert again.name == "Ann"  # a known name is not replaced by a nickname
    assert again.language == "de"
    assert again.first_seen_at == T0
    assert again.last_seen_at == T0 + timedelta(hours=1)
    identity = (await session.exec(select(ChannelIdentity))).one()
    assert (identity.username, identity.display_name) == ("annie", "Annie")
    assert await _count(session, Customer) == 1


async def test_a_sender_whose_event_was_logged_is_neither_created_nor_touched(
    session: AsyncSession,
) -> None:
    known = await identify_customer(session=session, channel="telegram", external_id="42", now=T0)
    await log_interaction(
        session=session,
        customer_id=known.id,
        channel="telegram",
        direction=Direction.inbound,
        kind=InteractionKind.message,
        idempotency_key="tg:9",
    )
    later = T0 + timedelta(hours=1)
    again = await identify_sender_no_commit(
        session, channel="telegram", external_id="42", event_key="tg:9", now=later
    )
    assert again is None
    assert known.last_seen_at == T0  # a redelivered event is not a new visit
    # The event of a sender with no identity (since erased): not brought back.
    stranger = await identify_sender_no_commit(
        session, channel="telegram", external_id="43", event_key="tg:9", now=later
    )
    fresh = await identify_sender_no_commit(
        session, channel="telegram", external_id="42", event_key="tg:10", now=later
    )
    await session.commit()
    assert stranger is None
    assert fresh is not None and fresh.id == known.id
    assert fresh.last_seen_at == later
    assert await _count(session, Customer) == 1


async def test_concurrent_identify_of_new_user_yields_one_customer(
    session_factory: SessionFactory,
) -> None:
    async def one() -> int:
        async with session_factory() as s:
            c = await identify_customer(session=s, channel="telegram", external_id="777")
            assert c.id is not None
            return c.id

    ids = await asyncio.wait_for(asyncio.gather(*(one() for _ in range(6))), timeout=60)
    assert len(set(ids)) == 1
    async with session_factory() as s:
        assert await _count(s, Customer) == 1
        assert await _count(s, ChannelIdentity) == 1


async def test_get_customer_follows_merge_and_reports_missing(session: AsyncSession) -> None:
    a = await identify_customer(session=session, channel="telegram", external_id="1")
    b = await identify_customer(session=session, channel="telegram", external_id="2")
    assert a.id and b.id
    await merge_customers(session=session, survivor_id=a.id, absorbed_id=b.id)
    assert (await get_customer(session=session, customer_id=b.id)).id == a.id
    with pytest.raises(CustomerNotFound, match="no customer #999"):
        await get_customer(session=session, customer_id=999)


async def test_link_phone_normalises_and_marks_verified(session: AsyncSession) -> None:
    c = await identify_customer(session=session, channel="telegram", external_id="1")
    assert c.id
    result = await link_phone(
        session=session, customer_id=c.id, phone="+49 (151) 123-45678", verified=True
    )
    assert result.value == "+4915112345678"
    assert result.customer.phone == "+4915112345678"
    assert result.customer.identity_verified
    assert result.merged_customer_ids == []


async def test_link_phone_of_imported_customer_merges(session: AsyncSession) -> None:
    imported = Customer(
        name="Maria Schmidt",
        phone="+4915112345678",
        external_id="shop-17",
        tags=["vip"],
        first_seen_at=T0 - timedelta(days=400),
    )
    session.add(imported)
    await session.commit()
    assert imported.id
    session.add(
        Purchase(customer_id=imported.id, amount_minor=5000, currency="EUR", purchased_at=T0)
    )
    await session.commit()
    tg = await identify_customer(
        session=session, channel="telegram", external_id="900", name="Mary", now=T0
    )
    assert tg.id
    await add_tags(session=session, customer_id=tg.id, tags=["Telegram", "vip"])

    # typed, unverified: fine, the imported record has no live identity
    result = await link_phone(
        session=session, customer_id=tg.id, phone="+49 151 12345678", verified=False
    )

    assert result.merged_customer_ids == [imported.id]
    survivor = result.customer
    assert survivor.id == tg.id
    assert survivor.phone == "+4915112345678"
    assert survivor.external_id == "shop-17"
    assert survivor.name == "Mary"
    assert survivor.tags == ["telegram", "vip"]
    assert survivor.first_seen_at == T0 - timedelta(days=400)
    purchases = (await session.exec(select(Purchase))).all()
    assert [p.customer_id for p in purchases] == [tg.id]
    tomb = await session.get(Customer, imported.id)
    assert tomb is not None
    assert (tomb.merged_into_id, tomb.phone, tomb.external_id) == (tg.id, None, None)
    assert [c.id for c in await find_customers(session=session, query="shop-17")] == [tg.id]


async def test_unverified_phone_of_live_customer_is_refused(session: AsyncSession) -> None:
    a = await identify_customer(session=session, channel="telegram", external_id="1")
    b = await identify_customer(session=session, channel="telegram", external_id="2")
    assert a.id and b.id
    await link_phone(session=session, customer_id=a.id, phone="+4915112345678", verified=True)
    with pytest.raises(ContactInUse, match="already belongs to another customer"):
        await link_phone(session=session, customer_id=b.id, phone="+4915112345678", verified=False)
    assert (await get_customer(session=session, customer_id=b.id)).phone is None
    # with proof (Telegram contact share), the accounts are merged
    result = await link_phone(
        session=session, customer_id=b.id, phone="+4915112345678", verified=True
    )
    assert result.merged_customer_ids == [a.id]


async def test_invalid_phone_is_a_clear_error_and_writes_nothing(session: AsyncSession) -> None:
    c = await identify_customer(session=session, channel="telegram", external_id="1")
    assert c.id
    for raw in ["", "12345", "hello", "+1 555", "+49 151", "+49 151 1234567890123"]:
        with pytest.raises(InvalidPhone) as err:
            await link_phone(session=session, customer_id=c.id, phone=raw, verified=True)
        assert "international format" in str(err.value), raw
    fresh = await get_customer(session=session, customer_id=c.id)
    assert fresh.phone is None and not fresh.identity_verified


async def test_invalid_email_is_a_clear_error_and_writes_nothing(session: AsyncSession) -> None:
    c = await identify_customer(session=session, channel="telegram", external_id="1")
    assert c.id
    for raw in ["", "foo", "foo@", "a b@example.com", "x@localhost", "@example.com"]:
        with pytest.raises(InvalidEmail) as err:
            await link_email(session=session, customer_id=c.id, email=raw)
        assert "name@example.com" in str(err.value), raw
    assert (await get_customer(session=session, customer_id=c.id)).email is None


async def test_link_email_lowercases_and_merges(session: AsyncSession) -> None:
    imported = Customer(email="ann@example.com", name="Ann Import", language="fr")
    session.add(imported)
    await session.commit()
    c = await identify_customer(session=session, channel="telegram", external_id="5")
    assert c.id
    result = await link_email(session=session, customer_id=c.id, email=" Ann@Example.COM ")
    assert result.value == "ann@example.com"
    assert result.merged_customer_ids == [imported.id]
    assert (result.customer.name, result.customer.language) == ("Ann Import", "fr")


async def _populate(session: AsyncSession, customer_id: int, tag: str, now: datetime) -> None:
    """One row of every kind that hangs off a customer."""
    complaint = Complaint(
        customer_id=customer_id,
        reference=f"C-{tag}",
        category=ComplaintCategory.delivery,
        description=f"late parcel {tag}",
    )
    session.add(complaint)
    session.add(
        Handoff(customer_id=customer_id, status=HandoffStatus.waiting, reason=f"help {tag}")
    )
    session.add(
        Purchase(customer_id=customer_id, amount_minor=100, currency="EUR", purchased_at=now)
    )
    session.add(
        FlowState(
            channel="telegram",
            chat_key=f"chat-{tag}",
            customer_id=customer_id,
            flow="complaint",
            step="describe",
            expires_at=now + timedelta(hours=1),
        )
    )
    await session.commit()
    await log_interaction(
        session=session,
        customer_id=customer_id,
        channel="telegram",
        direction=Direction.inbound,
        kind=InteractionKind.message,
        text=f"hello {tag}",
    )


async def test_merge_loses_nothing(session: AsyncSession) -> None:
    a = await identify_customer(session=session, channel="telegram", external_id="1", now=T0)
    b = await identify_customer(session=session, channel="email", external_id="b@x.org", now=T0)
    assert a.id and b.id
    await _populate(session, a.id, "a", T0)
    await _populate(session, b.id, "b", T0)
    models = (Interaction, Complaint, Purchase, Handoff, ChannelIdentity, FlowState)
    before = {m.__name__: await _count(session, m) for m in models}

    survivor = await merge_customers(session=session, survivor_id=a.id, absorbed_id=b.id)

    after = {m.__name__: await _count(session, m) for m in models}
    # The merge adds its own notes: one "merged", one "handoff closed because of the merge".
    assert after == {**before, "Interaction": before["Interaction"] + 2}
    for model in models:
        owners = set((await session.exec(select(model.customer_id))).all())  # type: ignore[attr-defined]
        assert owners == {survivor.id}, model.__name__
    handoffs = (await session.exec(select(Handoff).order_by(Handoff.id))).all()
    assert [h.status for h in handoffs] == [HandoffStatus.waiting, HandoffStatus.closed]
    notes = (
        await session.exec(select(Interaction).where(Interaction.handoff_id == handoffs[1].id))
    ).all()
    assert "merged into" in (notes[0].text or "")
    for channel, ext in (("telegram", "1"), ("email", "b@x.org")):
        c = await identify_customer(session=session, channel=channel, external_id=ext)
        assert c.id == a.id


async def test_merge_keeps_the_contact_data_the_survivor_had_its_own_of(
    session: AsyncSession,
) -> None:
    a = await identify_customer(session=session, channel="telegram", external_id="1")
    b = await identify_customer(session=session, channel="telegram", external_id="2")
    assert a.id and b.id
    await link_email(session=session, customer_id=a.id, email="a@example.com")
    await link_email(session=session, customer_id=b.id, email="b@example.com")
    await link_phone(session=session, customer_id=b.id, phone="+4915112345678", verified=True)

    survivor = await merge_customers(session=session, survivor_id=a.id, absorbed_id=b.id)

    assert (survivor.email, survivor.phone) == ("a@example.com", "+4915112345678")
    event = (
        await session.exec(select(Interaction).where(Interaction.kind == InteractionKind.identity))
    ).one()
    assert event.details["absorbed_contact"] == {"email": "b@example.com"}


async def test_merge_chains_resolve_to_final_survivor(session: AsyncSession) -> None:
    ids = []
    for ext in ("1", "2", "3"):
        c = await identify_customer(session=session, channel="telegram", external_id=ext)
        assert c.id
        ids.append(c.id)
    await merge_customers(session=session, survivor_id=ids[1], absorbed_id=ids[0])
    await merge_customers(session=session, survivor_id=ids[2], absorbed_id=ids[1])
    assert (await get_customer(session=session, customer_id=ids[0])).id == ids[2]
    tomb = await session.get(Customer, ids[0])
    assert tomb is not None and tomb.merged_into_id == ids[2]


async def test_find_customers_by_every_key(session: AsyncSession) -> None:
    ann = await identify_customer(
        session=session, channel="telegram", external_id="4242", name="Ann Lee", username="annl"
    )
    bob = await identify_customer(
        session=session, channel="telegram", external_id="5151", name="Bob Annex"
    )
    assert ann.id and bob.id
    await link_phone(session=session, customer_id=ann.id, phone="+4915112345678", verified=True)
    await link_email(session=session, customer_id=bob.id, email="bob@example.com")

    async def ids(q: str) -> list[int | None]:
        return [c.id for c in await find_customers(session=session, query=q)]

    assert await ids("@annl") == [ann.id]
    assert await ids("ANNL") == [ann.id]
    assert await ids("+49 151 12345678") == [ann.id]
    assert await ids("4915112345678") == [ann.id]
    assert await ids("BOB@example.com") == [bob.id]
    assert await ids("4242") == [ann.id]
    assert await ids(f"#{bob.id}") == [bob.id]
    assert set(await ids("ann")) == {ann.id, bob.id}
    assert await ids("100%") == []
    assert await ids("   ") == []


async def test_find_customers_reads_a_local_phone_in_the_desks_region(
    session: AsyncSession,
) -> None:
    ann = await identify_customer(session=session, channel="telegram", external_id="4242")
    assert ann.id
    await link_phone(session=session, customer_id=ann.id, phone="+4915112345678", verified=True)

    async def ids(q: str, region: str | None) -> list[int | None]:
        found = await find_customers(session=session, query=q, default_region=region)
        return [c.id for c in found]

    assert await ids("0151 12345678", "DE") == [ann.id]  # as a German agent writes it
    assert await ids("0151 12345678", None) == []  # no region: no guess
    assert await ids("4915112345678", "DE") == [ann.id]  # international without "+" still works
    assert await ids("+4915112345678", "FR") == [ann.id]


async def test_tags_are_trimmed_lowercased_and_unique(session: AsyncSession) -> None:
    c = await identify_customer(session=session, channel="telegram", external_id="1")
    assert c.id
    c = await set_customer_tags(session=session, customer_id=c.id, tags=[" VIP ", "vip", ""])
    assert c.tags == ["vip"]
    c = await add_tags(session=session, customer_id=c.id, tags=["wholesale"])
    assert (await get_customer(session=session, customer_id=c.id)).tags == ["vip", "wholesale"]


async def test_concurrent_opposite_merges_leave_one_survivor(
    session_factory: SessionFactory,
) -> None:
    async with session_factory() as s:
        a = await identify_customer(session=s, channel="telegram", external_id="1")
        b = await identify_customer(session=s, channel="telegram", external_id="2")
        assert a.id and b.id
        a_id, b_id = a.id, b.id

    async def merge(survivor: int, absorbed: int) -> int | None:
        async with session_factory() as s:
            return (await merge_customers(session=s, survivor_id=survivor, absorbed_id=absorbed)).id

    results = await asyncio.wait_for(
        asyncio.gather(merge(a_id, b_id), merge(b_id, a_id), merge(a_id, b_id)), 60
    )
    assert len(set(results)) == 1
    async with session_factory() as s:
        rows = (await s.exec(select(Customer).order_by(Customer.id))).all()
        live = [c.id for c in rows if c.merged_into_id is None]
        assert live == [results[0]]
        identities = (await s.exec(select(ChannelIdentity.customer_id))).all()
        assert set(identities) == {results[0]}


async def test_concurrent_links_of_one_phone_end_in_one_customer(
    session_factory: SessionFactory,
) -> None:
    async with session_factory() as s:
        a = await identify_customer(session=s, channel="telegram", external_id="1")
        b = await identify_customer(session=s, channel="telegram", external_id="2")
        assert a.id and b.id
        ids = (a.id, b.id)

    async def link(customer_id: int) -> None:
        async with session_factory() as s:
            await link_phone(
                session=s, customer_id=customer_id, phone="+4915112345678", verified=True
            )

    await asyncio.wait_for(asyncio.gather(*(link(i) for i in ids)), 60)
    async with session_factory() as s:
        rows = (await s.exec(select(Customer))).all()
        live = [c for c in rows if c.merged_into_id is None]
        assert len(live) == 1 and live[0].phone == "+4915112345678"
        assert {c.merged_into_id for c in rows if c.merged_into_id} == {live[0].id}


@pytest.mark.parametrize("query", ["²", "①", "#²", "١٢", "#", "   "])
async def test_find_customers_with_odd_digits_finds_nobody_without_error(
    session: AsyncSession, query: str
) -> None:
    await identify_customer(session=session, channel="telegram", external_id="1", name="Ann")
    assert await find_customers(session=session, query=query) == []
