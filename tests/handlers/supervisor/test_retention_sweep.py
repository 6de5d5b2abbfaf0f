"""The retention sweep runs with the other sweepers: old interactions are anonymised, today's
conversation is left alone."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import select

from crm_core.clock import utcnow
from crm_core.models import Direction, Interaction, InteractionKind
from handlers.supervisor import jobs
from tests.handlers.conftest import BOTH_DATABASES, HarnessFactory


@BOTH_DATABASES
async def test_the_sweeper_anonymises_interactions_older_than_the_retention(
    harness_factory: HarnessFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jobs, "_last_run", {})  # not yet run in this process
    harness = await harness_factory(retention_days=30)
    alice = harness.customer("Alice")
    await alice.ask("/start", contains="Alice")
    customer_id = await harness.customer_id_of(alice)
    async with harness.session_factory() as session:
        session.add(
            Interaction(
                customer_id=customer_id,
                channel="telegram",
                direction=Direction.inbound,
                kind=InteractionKind.message,
                text="my old address is Elm Street 5",
                details={"chat_id": alice.chat_id, "type": "message"},
                occurred_at=utcnow() - timedelta(days=31),
            )
        )
        await session.commit()

    await harness.sweep()

    async with harness.session_factory() as session:
        rows = (await session.exec(select(Interaction).order_by(Interaction.occurred_at))).all()
    old, *today = rows
    assert (old.text, old.details, old.anonymized_at is not None) == (
        None,
        {"type": "message"},
        True,
    )
    assert today and all(row.anonymized_at is None for row in today)
    assert any(row.text == "/start" for row in today)
