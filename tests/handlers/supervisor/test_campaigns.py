"""Campaigns through Telegram: a supervisor writes one step by step (a bad template is refused
with the reason), previews it on real recipients, confirms the send; the sweeper sends each
recipient their personalised text with the buttons in their language, once; /stop and the
opt-out button are honoured, /start does not re-subscribe; the report counts it all."""

from __future__ import annotations

from sqlalchemy import update
from sqlmodel import col, select

from crm_core.models import (
    CampaignRecipient,
    Customer,
    Interaction,
    RecipientStatus,
)
from tests.handlers.conftest import BOTH_DATABASES, Harness, HarnessFactory
from tests.handlers.conftest import Customer as Person

SUPERVISOR_ID = 9001


async def _tag_vip(harness: Harness, *people: Person) -> None:
    ids = [await harness.customer_id_of(p) for p in people]
    async with harness.session_factory() as session:
        await session.exec(update(Customer).where(col(Customer.id).in_(ids)).values(tags=["vip"]))
        await session.commit()


async def _write_campaign(boss: Person) -> None:
    await boss.ask("/campaign new", contains="What is it called")
    await boss.ask("Spring sale", contains="who gets it")
    problem = await boss.ask("segment=whales", contains="no segment")
    assert "Champions" in problem.text
    await boss.ask("tag=vip", contains="2 customers match")
    await boss.ask("Hi {{ first_name", contains="cannot be filled in")
    await boss.ask("Hi {{ phone }}", contains="cannot be filled in")
    await boss.ask("{{ '' }}", contains="comes out empty")
    await boss.ask("Hi {{ first_name }}, 20% off for you <3", contains="buttons under")
    await boss.ask("link Shop now\ntalk", contains="link Label https")


@BOTH_DATABASES
async def test_a_campaign_reaches_its_segment_once_with_personal_text_and_buttons(
    harness_factory: HarnessFactory,
) -> None:
    harness = await harness_factory(supervisor_ids=str(SUPERVISOR_ID), campaign_rate_per_second=25)
    boss = harness.customer("Sue", user_id=SUPERVISOR_ID)
    ann = harness.customer("Ann", language_code="en")
    ben = harness.customer("Ben", language_code="de")
    olga = harness.customer("Olga", language_code="en")
    for person in (boss, ann, ben, olga):
        await person.ask("/start")
    await olga.ask("/stop", contains="no more news or offers")
    await olga.ask("/start")  # opening the chat again is no consent
    await _tag_vip(harness, ann, ben, olga)

    await _write_campaign(boss)
    preview = await boss.ask(
        "link Shop https://shop.example/sale?a=1&b=2\ntalk\nstop", contains="Campaign #1"
    )
    assert "Recipients now: 2" in preview.text
    assert "To Ann" in preview.text and "Hi Ann, 20% off for you <3" in preview.text
    assert "To Ben" in preview.text and "Olga" not in preview.text

    confirm = await boss.ask("/campaign send 1", contains="Send campaign #1")
    await boss.press("Send now", confirm)
    await boss.expect("being sent to 2 customers")
    await harness.sweep()

    to_ann = await ann.expect("Hi Ann")
    assert to_ann.text == "Hi Ann, 20% off for you <3"
    labels = [b["text"] for b in to_ann.inline_buttons()]
    assert labels == ["Shop", "💬 Talk to us", "No more offers"]
    assert to_ann.inline_buttons()[0]["url"] == "https://shop.example/sale?a=1&b=2"
    to_ben = await ben.expect("Hi Ben")
    assert [b["text"] for b in to_ben.inline_buttons()][1:] == [
        "💬 Mit uns sprechen",
        "Keine Angebote mehr",
    ]
    await olga.expect_silence()

    await ann.press("No more offers", to_ann)
    await ann.expect("no more news or offers")
    await ben.press("Mit uns sprechen", to_ben)
    await ben.expect()  # what /human answers
    await harness.sweep()
    await harness.sweep()
    assert sum(1 for m in ann.replies if "Hi Ann" in m.text) == 1
    assert sum(1 for m in ben.replies if "Hi Ben" in m.text) == 1

    report = await boss.ask("/campaign report 1", contains="Reach")
    assert "2 sent of 2" in report.text and "Button presses: 2" in report.text
    listing = await boss.ask("/campaign list", contains="Campaigns")
    assert "#1 · Spring sale · done" in listing.text
    await harness.settle()
    async with harness.session_factory() as session:
        statuses = (await session.exec(select(CampaignRecipient.status))).all()
        assert sorted(statuses) == [RecipientStatus.sent, RecipientStatus.sent]
        tied = (await session.exec(select(Interaction).where(Interaction.campaign_id == 1))).all()
        events = sorted(
            (i.kind.value, i.direction.value, str(i.details.get("event", ""))) for i in tied
        )
        # two messages, a press of "talk to us", Ann's opt-out (the presses' own updates are
        # not replies: nothing was written)
        assert len(tied) == 4, events


async def test_stop_is_honoured_and_only_subscribe_undoes_it(
    harness_factory: HarnessFactory,
) -> None:
    harness = await harness_factory(supervisor_ids=str(SUPERVISOR_ID), campaign_rate_per_second=25)
    boss = harness.customer("Sue", user_id=SUPERVISOR_ID)
    ann = harness.customer("Ann", language_code="de")
    await boss.ask("/start")
    await ann.ask("/start")
    await ann.ask("/stop", contains="keine Neuigkeiten")
    await ann.ask("/stop", contains="bereits abgemeldet")
    await boss.ask("/campaign new", contains="What is it called")
    await boss.ask("Everyone", contains="who gets it")
    # Sue herself (a customer too) is the only one left
    await boss.ask("all", contains="1 customer match")
    await ann.ask("/subscribe", contains="Willkommen zurück")
    await boss.ask("Hello {{ name }}", contains="buttons under")
    preview = await boss.ask("none", contains="Campaign #1")
    assert "Recipients now: 2" in preview.text
    await boss.ask("/campaign set 1 holdout=60%", contains="between 0% and 50%")
    await boss.ask("/campaign set 1 colour=red", contains="Only holdout= and days=")
    await boss.ask("/campaign set 1 holdout=0% days=30", contains="0% of its segment")

    await ann.ask("/stop", contains="keine Neuigkeiten")  # after the preview, before the send
    confirm = await boss.ask("/campaign send 1", contains="Send campaign #1")
    assert "to 1 customers now" in confirm.text
    await boss.press("Send now", confirm)
    await boss.expect("being sent to 1 customers")
    await harness.sweep()
    await boss.expect("Hello Sue")
    await ann.expect_silence()


async def test_the_campaign_commands_are_for_supervisors(harness: Harness) -> None:
    alice = harness.customer("Alice")
    await alice.ask("/campaign list", contains="supervisors")


async def _send_campaign(boss: Person, campaign_id: int, template: str) -> None:
    await boss.ask("/campaign new", contains="What is it called")
    await boss.ask(f"Campaign {campaign_id}", contains="who gets it")
    await boss.ask("tag=vip", contains="match")
    await boss.ask(template, contains="buttons under")
    await boss.ask("stop", contains=f"Campaign #{campaign_id}")
    confirm = await boss.ask(f"/campaign send {campaign_id}", contains="Send campaign")
    await boss.press("Send now", confirm)
    await boss.expect("being sent")


async def test_a_customer_who_blocked_the_bot_is_left_out_until_they_write_again(
    harness_factory: HarnessFactory,
) -> None:
    harness = await harness_factory(supervisor_ids=str(SUPERVISOR_ID), campaign_rate_per_second=25)
    boss = harness.customer("Sue", user_id=SUPERVISOR_ID)
    ann, carl = harness.customer("Ann"), harness.customer("Carl")
    for person in (boss, ann, carl):
        await person.ask("/start")
    await _tag_vip(harness, ann, carl)
    harness.fake.block(carl.id)
    await _send_campaign(boss, 1, "First {{ first_name }}")
    await harness.sweep()
    await ann.expect("First Ann")
    report = await boss.ask("/campaign report 1", contains="Reach")
    assert "1 sent of 2" in report.text and ", 1 failed" in report.text
    assert "No hold-out" in report.text

    await boss.ask("/campaign new", contains="What is it called")
    await boss.ask("Second", contains="who gets it")
    await boss.ask("tag=vip", contains="1 customer match")  # Carl is out
    await boss.ask("/cancel", contains="")
    harness.fake.unblock(carl.id)
    await carl.ask("/start")  # he writes again: reachable again
    await _send_campaign(boss, 2, "Second {{ first_name }}")
    await harness.sweep()
    await carl.expect("Second Carl")
    assert not any("First" in m.text for m in carl.replies)
