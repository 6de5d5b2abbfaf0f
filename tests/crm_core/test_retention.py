"""Retention: interactions older than the cutoff are anonymised (figures unchanged) or deleted;
newer ones, complaints and handoffs are left alone (both databases)."""

from datetime import timedelta
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.models import Complaint, Direction, Interaction, InteractionKind
from crm_core.services.analytics import desk_figures
from crm_core.services.retention import (
    RetentionMode,
    anonymised_details,
    apply_retention,
)
from tests.crm_core.test_analytics import NOW, PERIOD, W, build_desk

CUTOFF = NOW + timedelta(days=1)  # everything build_desk writes is older
PERSONAL = {
    "chat_id": 555000111,
    "message_id": 42,
    "update_id": 9001,
    "file_ids": ["AgACAgIAAxkBAAIBsecret"],
    "agent_name": "Anna",
    "agent_text": "I sent it to anna@example.com",
    "callback_data": "kb:refund",
}


async def _personalise(session: AsyncSession) -> None:
    """Give every interaction a text and personal details, as the bot writes them."""
    rows = (await session.exec(select(Interaction))).all()
    for row in rows:
        row.text = f"my phone is +4915112345678, row {row.id}"
        row.details = {**row.details, **PERSONAL}
    await session.commit()


async def _recent(session: AsyncSession, customer_id: int) -> int:
    row = Interaction(
        customer_id=customer_id,
        channel="telegram",
        direction=Direction.inbound,
        kind=InteractionKind.message,
        text="a message from yesterday",
        details={"chat_id": 555000111, "file_ids": ["BQACAgIAAx"]},
        occurred_at=CUTOFF + timedelta(hours=12),
    )
    session.add(row)
    await session.commit()
    assert row.id is not None
    return row.id


async def _rows(session: AsyncSession) -> dict[int, tuple[Any, ...]]:
    session.expunge_all()
    rows = (await session.exec(select(Interaction))).all()
    return {
        row.id or 0: (row.kind, row.text, row.details, row.anonymized_at, row.occurred_at)
        for row in rows
    }


async def _desk(session: AsyncSession) -> int:
    desk = await build_desk(session)
    await _personalise(session)
    return await _recent(session, desk.customers["A"])


async def test_anonymise_strips_old_rows_and_leaves_newer_ones(session: AsyncSession) -> None:
    recent = await _desk(session)
    before = await _rows(session)

    report = await apply_retention(session=session, before=CUTOFF)

    after = await _rows(session)
    assert report.touched == len(before) - 1 and report.finished
    assert after.keys() == before.keys()  # anonymised, not deleted
    assert after[recent] == before[recent]
    for row_id, (kind, text, details, anonymized_at, occurred_at) in after.items():
        if row_id == recent:
            continue
        assert text is None and anonymized_at is not None
        assert not set(PERSONAL) & set(details), details
        assert (kind, occurred_at) == (before[row_id][0], before[row_id][4])
    votes = [
        d["helpful"] for k, _t, d, _a, _o in after.values() if k == InteractionKind.kb_feedback
    ]
    assert sorted(votes) == [False, True]  # what /stats counts stays


async def test_anonymise_leaves_every_figure_as_it_was(session: AsyncSession) -> None:
    await _desk(session)
    figures_before = await desk_figures(session=session, window=W, now=NOW)
    previous_before = await desk_figures(session=session, window=PERIOD.previous, now=NOW)

    await apply_retention(session=session, before=CUTOFF)

    assert await desk_figures(session=session, window=W, now=NOW) == figures_before
    assert await desk_figures(session=session, window=PERIOD.previous, now=NOW) == previous_before
    assert figures_before.bot.answered == 5  # the figures compared are not empty ones


async def test_a_second_sweep_changes_nothing(session: AsyncSession) -> None:
    await _desk(session)
    await apply_retention(session=session, before=CUTOFF)
    once = await _rows(session)

    again = await apply_retention(session=session, before=CUTOFF)

    assert again.touched == 0 and again.finished
    assert await _rows(session) == once


async def test_dry_run_counts_and_changes_nothing(session: AsyncSession) -> None:
    await _desk(session)
    before = await _rows(session)

    anonymise = await apply_retention(session=session, before=CUTOFF, dry_run=True)
    delete = await apply_retention(
        session=session, before=CUTOFF, mode=RetentionMode.delete, dry_run=True
    )

    assert anonymise.touched == delete.touched == len(before) - 1
    assert await _rows(session) == before


async def test_delete_removes_old_rows_only(session: AsyncSession) -> None:
    recent = await _desk(session)
    before = await _rows(session)
    # One row anonymised earlier (e.g. by an erasure): deleted as well.
    await apply_retention(session=session, before=CUTOFF, batch_size=1, max_batches=1)

    report = await apply_retention(session=session, before=CUTOFF, mode=RetentionMode.delete)

    assert report.touched == len(before) - 1
    assert await _rows(session) == {recent: before[recent]}
    again = await apply_retention(session=session, before=CUTOFF, mode=RetentionMode.delete)
    assert again.touched == 0


async def test_work_is_done_in_bounded_batches(session: AsyncSession) -> None:
    await _desk(session)
    total = len(await _rows(session)) - 1

    first = await apply_retention(session=session, before=CUTOFF, batch_size=3, max_batches=2)
    rest = await apply_retention(session=session, before=CUTOFF, batch_size=3)

    assert (first.touched, first.finished) == (6, False)
    assert (rest.touched, rest.finished) == (total - 6, True)
    left = await session.exec(
        select(Interaction).where(
            col(Interaction.anonymized_at).is_(None), col(Interaction.occurred_at) < CUTOFF
        )
    )
    assert left.all() == []


async def test_complaints_are_kept(session: AsyncSession) -> None:
    await _desk(session)
    session.expunge_all()
    complaints = (await session.exec(select(Complaint).order_by(col(Complaint.id)))).all()
    kept = [(c.reference, c.description, c.attachments) for c in complaints]

    await apply_retention(session=session, before=CUTOFF, mode=RetentionMode.delete)

    session.expunge_all()
    complaints = (await session.exec(select(Complaint).order_by(col(Complaint.id)))).all()
    assert [(c.reference, c.description, c.attachments) for c in complaints] == kept
    assert len(kept) == 5


def test_anonymised_details_keep_what_happened_and_nothing_personal() -> None:
    details = {
        **PERSONAL,
        "verdict": "suggest",
        "candidates": [
            {"article_id": "refund", "title": "Refunds", "confidence": 0.4, "extra": "x"},
            "junk",
        ],
        "helpful": False,
        "score": 4,
        "template": "kb_suggest",
    }
    assert anonymised_details(details) == {
        "verdict": "suggest",
        "candidates": [{"article_id": "refund", "title": "Refunds", "confidence": 0.4}],
        "helpful": False,
        "score": 4,
        "template": "kb_suggest",
    }
    assert anonymised_details(None) == {}
