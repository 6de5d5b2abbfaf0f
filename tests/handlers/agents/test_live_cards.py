"""Cards follow every change within the agents' group's edit budget: a burst of changes is a
few edits (card texts and topic titles together within ``card_edits_per_minute``), the last
showing the final state, in forum and plain groups, across a restart."""

from __future__ import annotations

import itertools

import pytest

from crm_core.models import ComplaintStatus
from tests.handlers.complaint_desk import complaint_row, file_and_announce
from tests.handlers.conftest import BOTH_DATABASES, Agent, Harness, HarnessFactory
from tests.handlers.desk import GROUP_ID, a_minute_later, card_shows, stale_cards, topic_named

BUDGET = 6  # card edits and topic renames a minute in the tests' group
EDITS = ("editMessageText", "editMessageReplyMarkup", "editForumTopic")
SEVERITIES = ("low", "medium", "high", "critical")
MARKS = {"low": "🟢", "medium": "🟡", "high": "🟠", "critical": "🔴"}
BUTTONS = {
    ComplaintStatus.in_progress: ["✅ Resolved"],
    ComplaintStatus.resolved: ["🗂 Closed", "↩️ Reopen"],
}


def edits_to_group(harness: Harness) -> list[float]:
    """When each edit of a message or topic in the agents' group was asked for."""
    return [
        request.time
        for request in harness.fake.requests
        if request.method in EDITS and int(request.params.get("chat_id") or 0) == GROUP_ID
    ]


class Burst:
    """Status, severity and assignee changes to one complaint, as fast as agents can type."""

    def __init__(self, reference: str, agents: list[Agent]) -> None:
        self.reference = reference
        self.agents = itertools.cycle(agents)
        self.status = ComplaintStatus.open
        self.severity = "high"
        self.count = 0

    async def send(self, changes: int) -> None:
        for _ in range(changes):
            agent = next(self.agents)
            kind = self.count % 3
            if kind == 0:  # open -> in progress -> resolved -> in progress (reopened) -> ...
                done = self.status == ComplaintStatus.in_progress
                self.status = ComplaintStatus.resolved if done else ComplaintStatus.in_progress
                await agent.send(f"/status {self.reference} {self.status.value}")
            elif kind == 1:
                self.severity = SEVERITIES[(self.count // 3) % len(SEVERITIES)]
                await agent.send(f"/severity {self.reference} {self.severity}")
            else:
                await agent.send(f"/assign {self.reference}")
            self.count += 1

    @property
    def first_line(self) -> str:
        label = self.status.value.replace("_", " ")
        return f"📝 Complaint {self.reference} · delivery · {self.severity} · {label}"

    @property
    def topic(self) -> str:
        mark = "✅" if self.status == ComplaintStatus.resolved else MARKS[self.severity]
        return f"{mark} {self.reference} · Alice · {self.status.value.replace('_', ' ')}"


async def shows_final_state(harness: Harness, burst: Burst, card_id: int, forum: bool) -> None:
    card = harness.fake.message(GROUP_ID, card_id)
    shown = await card_shows(harness, card, text=burst.first_line, buttons=BUTTONS[burst.status])
    assert shown.text.splitlines()[0] == burst.first_line
    if forum:
        assert card.thread_id is not None
        await topic_named(harness, harness.fake.chats[GROUP_ID], card.thread_id, burst.topic)
    complaint = await complaint_row(harness)
    assert (complaint.status, complaint.severity.value) == (burst.status, burst.severity)
    assert await stale_cards(harness) == []


@pytest.mark.parametrize("forum", [True, False], ids=["forum", "plain"])
async def test_a_burst_of_50_changes_stays_within_the_budget_and_ends_on_the_last_state(
    harness_factory: HarnessFactory, forum: bool
) -> None:
    harness, sam, _, card = await file_and_announce(
        harness_factory, forum=forum, card_refresh_seconds=0.5, card_edits_per_minute=BUDGET
    )
    kim = harness.agent("Kim", group=harness.fake.chats[GROUP_ID])
    burst = Burst((await complaint_row(harness)).reference, [sam, kim])
    announced = len(edits_to_group(harness))

    await burst.send(50)
    await harness.settle(timeout=60)  # 50 updates of one chat, one after the other

    during = edits_to_group(harness)[announced:]
    assert 1 <= len(during) <= BUDGET  # 50 changes, 35 of them visible: a few edits
    # A minute on, the group has room again: the card shows the final state (the changes were
    # not lost, only put together), and the budget still holds for every minute.
    await a_minute_later(harness)
    await harness.sweep()
    await shows_final_state(harness, burst, card.message_id, forum)
    # The new minute's edits are within the budget too (a refresh the refresher had due while
    # the minute was being rewound counts in it as well).
    assert len(edits_to_group(harness)) - announced - len(during) <= BUDGET
    not_modified = [r for r in harness.fake.requests if "not modified" in str(r.error or "")]
    assert not_modified == []


@BOTH_DATABASES
async def test_a_restart_in_the_middle_of_a_burst_loses_no_change(
    harness_factory: HarnessFactory,
) -> None:
    harness, sam, _, card = await file_and_announce(
        harness_factory, card_refresh_seconds=0.5, card_edits_per_minute=BUDGET
    )
    burst = Burst((await complaint_row(harness)).reference, [sam])
    announced = len(edits_to_group(harness))
    await burst.send(25)
    await harness.settle(timeout=60)

    await harness.restart()  # the stale mark is in the database, the budget spent too
    await burst.send(25)
    await harness.settle(timeout=60)
    assert len(edits_to_group(harness)) - announced <= BUDGET

    await a_minute_later(harness, after_restart=True)
    await harness.sweep()
    await shows_final_state(harness, burst, card.message_id, forum=True)
