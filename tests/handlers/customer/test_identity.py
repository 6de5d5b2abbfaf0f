"""Who is writing: a shared phone, /email."""

from __future__ import annotations

from sqlmodel import select

from crm_core.clock import utcnow
from crm_core.models import Channel, ChannelIdentity, Purchase
from crm_core.models import Customer as CustomerRow
from crm_core.services.customers import identify_customer, link_email, link_phone
from crm_core.services.purchases import record_purchase
from handlers.customer.identity import contact_phone, mask_phone
from tests.handlers.conftest import BOTH_DATABASES, Customer, Harness


async def _customer_of(harness: Harness, customer: Customer) -> CustomerRow:
    await harness.settle()
    async with harness.session_factory() as session:
        identity = (
            await session.exec(
                select(ChannelIdentity).where(ChannelIdentity.external_id == str(customer.id))
            )
        ).one()
        row = await session.get(CustomerRow, identity.customer_id)
        assert row is not None
        return row


@BOTH_DATABASES
async def test_sharing_own_contact_links_and_merges_the_imported_customer(
    harness: Harness,
) -> None:
    async with harness.session_factory() as session:
        imported = await identify_customer(
            session=session, channel=Channel.import_, external_id="shop-42", name="Alice Shopper"
        )
        assert imported.id is not None
        await link_phone(
            session=session, customer_id=imported.id, phone="+49 151 12345678", verified=False
        )
        await record_purchase(
            session=session,
            customer_id=imported.id,
            amount_minor=4999,
            currency="EUR",
            purchased_at=utcnow(),
        )
    alice = harness.customer("Alice")
    await alice.ask("/start", contains="Alice")

    await alice.share_contact("4915112345678")  # as Telegram sends it: no "+"

    reply = await alice.expect("linked")
    assert "+49 ••• •••• 78" in reply.text and "12345678" not in reply.text
    assert "earlier records" in reply.text
    me = await _customer_of(harness, alice)
    assert me.phone == "+4915112345678" and me.identity_verified
    async with harness.session_factory() as session:
        absorbed = await session.get(CustomerRow, imported.id)
        assert absorbed is not None and absorbed.merged_into_id == me.id
        purchases = (await session.exec(select(Purchase))).all()
        assert [p.customer_id for p in purchases] == [me.id]


async def test_sharing_without_an_earlier_record_just_links(harness: Harness) -> None:
    alice = harness.customer("Alice")
    await alice.share_contact("+44 7911 123456")

    reply = await alice.expect("linked")

    assert "earlier records" not in reply.text
    assert (await _customer_of(harness, alice)).phone == "+447911123456"


async def test_somebody_elses_contact_is_refused(harness: Harness) -> None:
    alice = harness.customer("Alice")

    await alice.share_contact("+4915112345678", own=False)

    await alice.expect("your own")
    assert (await _customer_of(harness, alice)).phone is None


async def test_an_impossible_shared_number_is_explained(harness: Harness) -> None:
    alice = harness.customer("Alice")

    await alice.share_contact("12")

    await alice.expect("is not a phone number")
    assert (await _customer_of(harness, alice)).phone is None


async def test_email_good_bad_and_missing(harness: Harness) -> None:
    alice = harness.customer("Alice")

    await alice.ask("/email", contains="/email name@example.com")
    bad = await alice.ask("/email not-an-address", contains="not a valid")
    hostile = await alice.ask("/email <b>&</pre>", contains="not a valid")
    assert "<b>&</pre>" in hostile.text
    assert "/email name@example.com" in bad.text
    assert (await _customer_of(harness, alice)).email is None

    good = await alice.ask("/email Alice.Smith@Example.COM", contains="noted")

    assert "alice.smith@example.com" in good.text
    me = await _customer_of(harness, alice)
    assert me.email == "alice.smith@example.com" and not me.identity_verified


async def test_email_of_another_live_customer_is_refused(harness: Harness) -> None:
    alice, bob = harness.customer("Alice"), harness.customer("Bob")
    await alice.ask("/email shared@example.com", contains="noted")

    await bob.ask("/email shared@example.com", contains="already belongs")

    assert (await _customer_of(harness, bob)).email is None


async def test_typing_someone_elses_email_does_not_take_over_their_imported_record(
    harness: Harness,
) -> None:
    """/email is not verified: knowing a shop customer's address must not merge their record
    (phone, purchases) into the sender's account, nor let /mydata export it."""
    async with harness.session_factory() as session:
        imported = await identify_customer(
            session=session, channel=Channel.import_, external_id="shop-7", name="Vera Victim"
        )
        assert imported.id is not None
        await link_email(session=session, customer_id=imported.id, email="vera@example.com")
        await link_phone(
            session=session, customer_id=imported.id, phone="+49 151 12345678", verified=False
        )
    mallory = harness.customer("Mallory")

    refused = await mallory.ask("/email Vera@Example.com", contains="already belongs")

    assert "share" in refused.text.lower()  # the safe way to link: the verified phone
    me = await _customer_of(harness, mallory)
    assert me.email is None and me.phone is None
    async with harness.session_factory() as session:
        vera = await session.get(CustomerRow, imported.id)
        assert vera is not None and vera.merged_into_id is None
        assert vera.email == "vera@example.com"


async def test_share_phone_label_typed_as_text_explains_the_button(harness: Harness) -> None:
    alice = harness.customer("Alice")

    reply = await alice.ask("📱 Share my phone", contains="tap")

    assert any(b.get("request_contact") for b in reply.keyboard_buttons())


def test_mask_phone_and_contact_phone() -> None:
    assert mask_phone("+4915112345678") == "+49 ••• •••• 78"
    assert mask_phone("+123") == "••••"
    assert contact_phone("4915112345678") == "+4915112345678"
    assert contact_phone("+4915112345678") == "+4915112345678"
    assert contact_phone(" 44 7700 900123 ") == "+447700900123"
    assert contact_phone("(030) 1234") == "(030) 1234"  # left to the normaliser to judge
