"""/stats for supervisors."""

from __future__ import annotations

from handlers.supervisor.stats import parse_days
from tests.handlers.conftest import BOTH_DATABASES, Harness, HarnessFactory
from tests.handlers.desk import drain, open_handoff, start


def test_parse_days() -> None:
    assert parse_days([]) == 30
    assert parse_days(["7"]) == 7
    assert parse_days(["all"]) is None
    assert parse_days(["-3"]) == "-3"
    assert parse_days(["99999"]) == "99999"
    assert parse_days(["²"]) == "²"  # a digit to str.isdigit, not to int(): no traceback
    assert parse_days(["١٢"]) == 12  # Arabic-Indic digits are a number


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

    private(harness, SUPERVISOR_ID, "/stats 7")
    stats = await sue.expect_private("Complaint statistics")
    assert "last 7 days" in stats.text
    assert "closed 1" in stats.text  # the handoff
    assert "CSAT: 4.0/5 from 1 rating" in stats.text

    await sue.send("/stats all")
    in_group = await sue.expect("Complaint statistics")
    assert "all time" in in_group.text

    private(harness, SUPERVISOR_ID, "/stats lots")
    await sue.expect_private("as a number of days")


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
