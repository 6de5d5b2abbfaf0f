"""/stats for supervisors."""

from __future__ import annotations

from tests.handlers.conftest import BOTH_DATABASES, Harness, HarnessFactory
from tests.handlers.desk import drain, open_handoff, start

SUPERVISOR_ID = 9001


def private(harness: Harness, user_id: int, text: str) -> None:
    harness.fake.push_message(harness.fake.chats[user_id].user, text)  # type: ignore[arg-type]


@BOTH_DATABASES
async def test_stats_for_a_supervisor_in_private_and_in_the_group(
    harness_factory: HarnessFactory,
) -> None:
    harness, group = await start(harness_factory, supervisor_ids=str(SUPERVISOR_ID))
    sam = harness.agent("Sam", group=group)
    sue = harness.agent("Sue", group=group, user_id=SUPERVISOR_ID)
    alice = harness.customer("Alice")
    card = await open_handoff(harness, alice, sam)
    await sam.press("Claim", card)
    await sam.send("/resolve", thread_id=card.thread_id)
    await alice.press("4", await alice.expect("How satisfied"))
    await alice.expect("rating us 4/5")
    await drain(harness, sue)

    private(harness, SUPERVISOR_ID, "/stats 7d")
    stats = await sue.expect_private("Desk figures")
    assert "7d" in stats.text
    assert "1 (+1) requested, 1 (+1) claimed" in stats.text  # the handoff, none the week before
    assert "4.0 average, 100% rated 4–5, from 1 (+1) rating(s)" in stats.text
    assert stats.button("Unclaimed") and stats.button("SLA breached")

    await sue.send("/stats month")
    in_group = await sue.expect("Desk figures")
    assert "change against the" in in_group.text

    private(harness, SUPERVISOR_ID, "/stats lots")
    refused = await sue.expect_private("I don't understand the period")
    assert "today, 7d, 30d" in refused.text and "YYYY-MM-DD..YYYY-MM-DD" in refused.text


async def test_stats_refused_for_agents_and_customers(harness_factory: HarnessFactory) -> None:
    harness, group = await start(harness_factory, supervisor_ids=str(SUPERVISOR_ID))
    sam = harness.agent("Sam", group=group)
    alice = harness.customer("Alice")

    await alice.ask("/stats", contains="Only supervisors")
    await sam.send("/stats")
    refused = await sam.expect()
    assert refused.text == "Only supervisors can use this command."
    await sam.send("/reload_kb")
    await sam.expect("Only supervisors")
    for command in ("/sla", "/agents", "/export", "/segments", "/mvc", "/churn", "/gaps"):
        await alice.ask(command, contains="Only supervisors")
        await sam.send(command)
        await sam.expect("Only supervisors")
    assert not [d for d in harness.fake.messages if d.from_bot and d.data.get("document")]
