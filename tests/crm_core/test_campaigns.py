"""Campaigns in the CRM core: targeting on a fixture (each criterion, each exclusion), the
reproducible hold-out, consent honoured while sending, crash-cut claims never resent, and the
hold-out lift on known purchases. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.clock import utcnow
from crm_core.models import (
    CampaignRecipient,
    CampaignStatus,
    ChannelIdentity,
    Complaint,
    ComplaintCategory,
    ComplaintStatus,
    Customer,
    Direction,
    Interaction,
    InteractionKind,
    Purchase,
    RecipientGroup,
    RecipientStatus,
)
from crm_core.services.campaigns import (
    UNKNOWN_AFTER_CRASH,
    Attributed,
    Criteria,
    InvalidCampaign,
    attribute_responses,
    audience,
    campaign_report,
    cancel_campaign,
    claim_next,
    configure_campaign,
    create_campaign,
    finish_if_complete,
    get_campaign,
    mark_sent,
    opt_out,
    parse_buttons,
    parse_criteria_text,
    settle_stale_claims,
    split_holdout,
    start_sending,
)
from crm_core.services.customers import merge_customers

NOW = utcnow()


async def _customer(
    session: AsyncSession,
    name: str,
    *,
    tags: list[str] | None = None,
    language: str | None = "en",
    chat: bool = True,
    **fields: object,
) -> int:
    customer = Customer(name=name, language=language, tags=tags or [], last_seen_at=NOW, **fields)
    session.add(customer)
    await session.flush()
    assert customer.id is not None
    if chat:
        session.add(
            ChannelIdentity(
                channel="telegram", external_id=str(900000 + customer.id), customer_id=customer.id
            )
        )
    return customer.id


async def _purchases(session: AsyncSession, customer_id: int, *days_ago: int) -> None:
    for n, days in enumerate(days_ago):
        session.add(
            Purchase(
                customer_id=customer_id,
                amount_minor=1000 * (n + 1),
                purchased_at=NOW - timedelta(days=days),
            )
        )


@pytest.fixture
async def people(session: AsyncSession) -> dict[str, int]:
    """Reachable: Ann (vip, de, champion, open complaint), Ben (en, older buyer), Cid (en-GB,
    no purchase, resolved complaint), Hal (vip, blocked once but wrote since). Not reachable:
    Olga (opted out), Eve (erased), Ned (no Telegram chat), Bob (blocked since he last wrote),
    Max (merged into Ann)."""
    ids = {
        "ann": await _customer(session, "Ann", tags=["vip"], language="de"),
        "ben": await _customer(session, "Ben", tags=["regular"]),
        "cid": await _customer(session, "Cid", language="en-GB"),
        "hal": await _customer(
            session, "Hal", tags=["vip"], unreachable_at=NOW - timedelta(days=3)
        ),
        "olga": await _customer(session, "Olga", tags=["vip"], marketing_opt_out_at=NOW),
        "eve": await _customer(session, "Eve", tags=["vip"], anonymized_at=NOW),
        "ned": await _customer(session, "Ned", tags=["vip"], chat=False),
        "bob": await _customer(
            session, "Bob", tags=["vip"], unreachable_at=NOW + timedelta(seconds=1)
        ),
    }
    ids["max"] = await _customer(session, "Max", tags=["vip"], merged_into_id=ids["ann"])
    await _purchases(session, ids["ann"], 30, 20, 5)
    await _purchases(session, ids["ben"], 150, 100)
    await _purchases(session, ids["hal"], 200)
    session.add(
        Complaint(
            reference="C-1",
            customer_id=ids["ann"],
            category=ComplaintCategory.delivery,
            description="late",
            status=ComplaintStatus.in_progress,
        )
    )
    session.add(
        Complaint(
            reference="C-2",
            customer_id=ids["cid"],
            category=ComplaintCategory.price,
            description="dear",
            status=ComplaintStatus.resolved,
        )
    )
    await session.commit()
    return ids


async def _targets(session: AsyncSession, people: dict[str, int], criteria: str) -> set[str]:
    found = await audience(session=session, criteria=parse_criteria_text(criteria), sample_size=99)
    names = {cid: name for name, cid in people.items()}
    assert found.count == len(found.sample)
    return {names[c.id] for c in found.sample if c.id is not None}


@pytest.mark.parametrize(
    ("criteria", "expected"),
    [
        ("all", {"ann", "ben", "cid", "hal"}),
        ("tag=vip", {"ann", "hal"}),
        ("tag=VIP ", {"ann", "hal"}),
        ("tag=vi", set()),
        ("language=de", {"ann"}),
        ("language=en", {"ben", "cid", "hal"}),
        ("segment=Champions", {"ann"}),
        ("segment=potential_loyalist", {"ben"}),
        ("segment=hibernating", {"hal"}),
        ("purchased_before=" + (NOW - timedelta(days=50)).date().isoformat(), {"ben", "hal"}),
        ("purchased_after=" + (NOW - timedelta(days=50)).date().isoformat(), {"ann"}),
        ("open_complaint=yes", {"ann"}),
        ("open_complaint=no", {"ben", "cid", "hal"}),
        ("tag=vip language=de open_complaint=yes", {"ann"}),
        ("tag=vip language=de open_complaint=no", set()),
    ],
)
async def test_targeting_by_each_criterion_excludes_who_may_not_be_written_to(
    session: AsyncSession, people: dict[str, int], criteria: str, expected: set[str]
) -> None:
    assert await _targets(session, people, criteria) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("segment=Whales", "no segment"),
        ("colour=red", "Unknown criterion"),
        ("purchased_before=yesterday", "date like"),
        ("open_complaint=maybe", "yes or no"),
        ("vip customers", "key=value"),
        ("tag=a tag=b", "twice"),
    ],
)
def test_bad_criteria_are_explained(text: str, problem: str) -> None:
    with pytest.raises(InvalidCampaign, match=problem):
        parse_criteria_text(text)


def test_buttons_are_parsed_and_bad_ones_explained() -> None:
    assert parse_buttons("link Our sale https://shop.example/sale\ntalk\nstop") == [
        {"kind": "link", "label": "Our sale", "url": "https://shop.example/sale"},
        {"kind": "talk"},
        {"kind": "stop"},
    ]
    assert parse_buttons("none") == []
    with pytest.raises(InvalidCampaign, match="link Label"):
        parse_buttons("link Sale ftp://x")
    with pytest.raises(InvalidCampaign, match="Unknown button"):
        parse_buttons("call us")


def test_the_holdout_is_reproducible_and_of_the_asked_share() -> None:
    ids = list(range(1, 201))
    first = split_holdout(ids, 0.1, seed=7)
    assert len(first) == 20 and first <= set(ids)
    assert split_holdout(list(reversed(ids)), 0.1, seed=7) == first
    assert split_holdout(ids, 0.1, seed=8) != first
    assert split_holdout(ids, 0, seed=7) == set()


async def _campaign(session: AsyncSession, criteria: str = "all", **kwargs: object) -> int:
    campaign = await create_campaign(
        session=session,
        name="Spring",
        criteria=parse_criteria_text(criteria),
        template="Hi {{ first_name }}",
        buttons=[{"kind": "stop"}],
        created_by=1,
        **kwargs,  # type: ignore[arg-type]
    )
    assert campaign.id is not None
    return campaign.id


async def _recipients(session: AsyncSession, campaign_id: int) -> list[CampaignRecipient]:
    rows = await session.exec(
        select(CampaignRecipient)
        .where(CampaignRecipient.campaign_id == campaign_id)
        .order_by(col(CampaignRecipient.id))
    )
    result = list(rows.all())
    await session.commit()
    return result


async def test_starting_freezes_the_segment_once_and_an_opt_out_is_honoured(
    session: AsyncSession, people: dict[str, int]
) -> None:
    campaign_id = await _campaign(session, holdout_share=0.0)
    assert await start_sending(session=session, campaign_id=campaign_id) == (4, 0)
    with pytest.raises(InvalidCampaign, match="not a draft"):
        await start_sending(session=session, campaign_id=campaign_id)
    assert len(await _recipients(session, campaign_id)) == 4

    # Ben says /stop after the start: he is skipped, never claimed.
    assert await opt_out(session=session, customer_id=people["ben"], source="stop_command")
    assert not await opt_out(session=session, customer_id=people["ben"], source="again")
    claimed = []
    while (taken := await claim_next(session=session, campaign_id=campaign_id)) is not None:
        claimed.append(taken.customer_id)
        await mark_sent(session=session, claimed=taken)
    assert sorted(claimed) == sorted([people["ann"], people["cid"], people["hal"]])
    rows = {r.customer_id: r for r in await _recipients(session, campaign_id)}
    assert rows[people["ben"]].status == RecipientStatus.skipped
    assert rows[people["ben"]].reason == "unreachable_since_start"
    assert await finish_if_complete(session=session, campaign_id=campaign_id)
    assert (await get_campaign(session=session, campaign_id=campaign_id)).status == "done"
    ben = await session.get(Customer, people["ben"])
    assert ben is not None and ben.marketing_opt_out_source == "stop_command"


async def test_a_claim_cut_off_by_a_crash_is_never_sent_again(
    session: AsyncSession, people: dict[str, int]
) -> None:
    campaign_id = await _campaign(session, holdout_share=0.0)
    await start_sending(session=session, campaign_id=campaign_id)
    cut_off = await claim_next(session=session, campaign_id=campaign_id)  # then: SIGKILL
    logged = await claim_next(session=session, campaign_id=campaign_id)
    assert cut_off is not None and logged is not None
    # The second one's message had been logged when the process died (not marked sent).
    session.add(
        Interaction(
            customer_id=logged.customer_id,
            channel="telegram",
            direction=Direction.outbound,
            kind=InteractionKind.campaign,
            idempotency_key=logged.key,
        )
    )
    await session.commit()
    assert await settle_stale_claims(session=session, older_than=timedelta(minutes=5)) == 0
    later = utcnow() + timedelta(minutes=6)
    assert await settle_stale_claims(session=session, older_than=timedelta(minutes=5), now=later)
    rows = {r.customer_id: r for r in await _recipients(session, campaign_id)}
    assert rows[cut_off.customer_id].status == RecipientStatus.failed
    assert rows[cut_off.customer_id].reason == UNKNOWN_AFTER_CRASH
    assert rows[logged.customer_id].status == RecipientStatus.sent
    rest = []
    while (taken := await claim_next(session=session, campaign_id=campaign_id)) is not None:
        rest.append(taken.customer_id)
    assert cut_off.customer_id not in rest and logged.customer_id not in rest and len(rest) == 2
    report = await campaign_report(session=session, campaign_id=campaign_id)
    assert report.unknown == 1


async def test_cancel_skips_who_is_still_pending(
    session: AsyncSession, people: dict[str, int]
) -> None:
    campaign_id = await _campaign(session, holdout_share=0.0)
    await start_sending(session=session, campaign_id=campaign_id)
    assert await claim_next(session=session, campaign_id=campaign_id) is not None
    assert await cancel_campaign(session=session, campaign_id=campaign_id) == 3
    assert await claim_next(session=session, campaign_id=campaign_id) is None
    with pytest.raises(InvalidCampaign, match="cancelled already"):
        await cancel_campaign(session=session, campaign_id=campaign_id)


async def test_the_report_measures_lift_against_the_holdout(session: AsyncSession) -> None:
    ids = [await _customer(session, f"C{n}") for n in range(20)]
    await session.commit()
    started = NOW - timedelta(days=10)
    campaign_id = await _campaign(session, holdout_share=0.5, attribution_days=7)
    assert await start_sending(session=session, campaign_id=campaign_id, now=started) == (10, 10)
    cohorts = {r.customer_id: r.cohort for r in await _recipients(session, campaign_id)}
    treated = sorted(c for c in ids if cohorts[c] == RecipientGroup.treatment)
    held = sorted(c for c in ids if cohorts[c] == RecipientGroup.holdout)

    def buy(customer_id: int, amount: int, at: datetime) -> None:
        session.add(Purchase(customer_id=customer_id, amount_minor=amount, purchased_at=at))

    inside = started + timedelta(days=2)
    for customer_id in treated[:4]:  # 4 of 10 treated buyers, 50.00 each
        buy(customer_id, 5000, inside)
    buy(held[0], 5000, inside)  # 1 of 10 held-out buyers
    buy(held[1], 9999, started - timedelta(days=1))  # before the start: not counted
    buy(treated[5], 9999, started + timedelta(days=8))  # after the window: not counted
    session.add(
        Interaction(
            customer_id=treated[6],
            channel="telegram",
            direction=Direction.inbound,
            kind=InteractionKind.message,
            occurred_at=inside,
        )
    )
    await session.commit()
    await opt_out(
        session=session,
        customer_id=treated[7],
        source="button",
        campaign_id=campaign_id,
        now=inside,
    )

    report = await campaign_report(session=session, campaign_id=campaign_id)
    assert report.campaign.status == CampaignStatus.sending
    assert (report.treatment.recipients, report.holdout.recipients) == (10, 10)
    assert (report.treatment.buyers, report.treatment.revenue_minor) == (4, 20000)
    assert (report.holdout.buyers, report.holdout.revenue_minor) == (1, 5000)
    assert report.treatment.responded == 2  # a message and the opt-out
    assert report.treatment.opted_out == 1 and report.holdout.opted_out == 0
    assert report.revenue_lift == pytest.approx(3.0)  # 2000 vs 500 per recipient
    assert report.conversion_lift == pytest.approx(3.0)  # 40% vs 10%
    assert report.incremental_revenue_minor == pytest.approx(15000)
    assert report.pending == 10 and report.treatment.sent == 0


async def test_replies_and_purchases_after_the_message_are_tied_to_the_campaign(
    session: AsyncSession,
) -> None:
    ids = [await _customer(session, f"C{n}") for n in range(8)]
    await session.commit()
    started = NOW - timedelta(days=3)
    campaign_id = await _campaign(session, holdout_share=0.5, attribution_days=7)
    await start_sending(session=session, campaign_id=campaign_id, now=started)
    cohorts = {r.customer_id: r.cohort for r in await _recipients(session, campaign_id)}
    treated = sorted(c for c in ids if cohorts[c] == RecipientGroup.treatment)
    held = sorted(c for c in ids if cohorts[c] == RecipientGroup.holdout)
    sent_at = started + timedelta(hours=1)
    await session.exec(
        update(CampaignRecipient)
        .where(
            col(CampaignRecipient.campaign_id) == campaign_id,
            col(CampaignRecipient.cohort) == RecipientGroup.treatment,
        )
        .values(status=RecipientStatus.sent, sent_at=sent_at)
    )

    def write(customer_id: int, at: datetime) -> None:
        session.add(
            Interaction(
                customer_id=customer_id,
                channel="telegram",
                direction=Direction.inbound,
                kind=InteractionKind.message,
                text="about your offer",
                occurred_at=at,
            )
        )

    write(treated[0], sent_at + timedelta(hours=1))  # a reply: tied
    write(treated[1], sent_at - timedelta(minutes=30))  # before their message: not
    write(held[0], sent_at + timedelta(hours=1))  # held out, never sent: not
    session.add(Purchase(customer_id=treated[0], amount_minor=5000, purchased_at=sent_at))
    later = sent_at + timedelta(hours=2)
    session.add(Purchase(customer_id=treated[2], amount_minor=700, purchased_at=later))
    session.add(Purchase(customer_id=held[1], amount_minor=5000, purchased_at=later))
    await session.commit()

    assert await attribute_responses(session=session, now=NOW) == Attributed(replies=1, purchases=2)
    assert await attribute_responses(session=session, now=NOW) == Attributed(0, 0)  # once
    tied = (
        await session.exec(
            select(Interaction)
            .where(col(Interaction.campaign_id) == campaign_id)
            .order_by(col(Interaction.id))
        )
    ).all()
    await session.commit()
    reply = [i for i in tied if i.kind == InteractionKind.message]
    bought = [i for i in tied if i.details.get("event") == "purchase"]
    assert [i.customer_id for i in reply] == [treated[0]]
    assert sorted((i.customer_id, i.details["amount_minor"]) for i in bought) == sorted(
        [(treated[0], 5000), (treated[2], 700)]
    )
    assert all(i.direction == Direction.internal for i in bought)  # not a message from them
    report = await campaign_report(session=session, campaign_id=campaign_id, now=NOW)
    assert (report.tied_replies, report.tied_purchases, report.presses) == (1, 2, 0)
    assert report.treatment.responded == 2  # wrote to us (before or after): the window's rule
    assert report.holdout.responded == 1 and report.holdout.buyers == 1


async def test_nobody_to_send_to_is_refused(session: AsyncSession, people: dict[str, int]) -> None:
    campaign_id = await _campaign(session, "tag=nobody")
    with pytest.raises(InvalidCampaign, match="Nobody matches"):
        await start_sending(session=session, campaign_id=campaign_id)
    campaign = await get_campaign(session=session, campaign_id=campaign_id)
    assert campaign.status == CampaignStatus.draft  # nothing half-written


def test_criteria_survive_json() -> None:
    criteria = parse_criteria_text("segment=at risk purchased_after=2026-01-31 open_complaint=no")
    assert Criteria.from_json(criteria.to_json()) == criteria


async def test_an_opt_out_on_a_merged_record_holds_for_the_person(
    session: AsyncSession, people: dict[str, int]
) -> None:
    olga_shop = await _customer(session, "Olga S", chat=False, external_id="shop-olga")
    await session.commit()
    await merge_customers(session=session, survivor_id=olga_shop, absorbed_id=people["olga"])
    survivor = await session.get(Customer, olga_shop, populate_existing=True)
    assert survivor is not None and survivor.marketing_opt_out_at is not None
    assert "olga" not in await _targets(session, people | {"olga": olga_shop}, "all")


async def test_the_holdout_can_change_only_before_the_start(
    session: AsyncSession, people: dict[str, int]
) -> None:
    campaign_id = await _campaign(session)
    changed = await configure_campaign(
        session=session, campaign_id=campaign_id, holdout_share=0.5, attribution_days=30
    )
    assert (changed.holdout_share, changed.attribution_days) == (0.5, 30)
    assert await start_sending(session=session, campaign_id=campaign_id) == (2, 2)
    with pytest.raises(InvalidCampaign, match="drawn already"):
        await configure_campaign(session=session, campaign_id=campaign_id, holdout_share=0.1)
    later = await configure_campaign(session=session, campaign_id=campaign_id, attribution_days=7)
    assert later.attribution_days == 7
