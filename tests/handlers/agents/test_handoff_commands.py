"""Claiming and resolving a conversation."""

from __future__ import annotations

from crm_core.models import (
    HandoffStatus,
)
from tests.handlers.conftest import HarnessFactory
from tests.handlers.desk import GROUP_ID, latest_handoff, open_handoff, start


async def test_two_agents_claim_at_once_one_wins_the_other_is_told(
    harness_factory: HarnessFactory,
) -> None:
    harness, group = await start(harness_factory)
    sam = harness.agent("Sam", group=group)
    kim = harness.agent("Kim", group=group)
    alice = harness.customer("Alice")
    card = await open_handoff(harness, alice, sam)

    first = await sam.press("Claim", card)
    second = await kim.press("Claim", card)
    await harness.settle()

    handoff = await latest_handoff(harness)
    assert handoff.status == HandoffStatus.claimed
    answers = harness.fake.answered_callbacks
    assert "text" not in answers[first] or not answers[first].get("show_alert")
    assert answers[second]["show_alert"] is True
    assert "Already taken by Sam" in answers[second]["text"]
    claimed = [m for m in harness.fake.sent_to(GROUP_ID) if "took this conversation" in m.text]
    assert len(claimed) == 1

    again = harness.fake.push_callback(sam.user, f"hc:{handoff.id}", card)  # e.g. a reminder's
    await harness.settle()
    assert "already yours" in answers[again]["text"]
    claimed = [m for m in harness.fake.sent_to(GROUP_ID) if "took this conversation" in m.text]
    assert len(claimed) == 1
