"""The outbox's depth and refusals on /metrics (desk-wide, read from the database)."""

from __future__ import annotations

from bot.metrics import DeskMetrics
from crm_core.db import SessionFactory
from crm_core.models import OutboxStatus
from crm_core.services import outbox as store
from crm_core.services.outbox import OutgoingMessage


async def test_metrics_show_the_outbox_depth_and_refused_messages(
    session_factory: SessionFactory,
) -> None:
    waiting = [
        OutgoingMessage(chat_id=7, method="send_message", payload={"text": t}, priority=0)
        for t in ("one", "two")
    ]
    async with session_factory() as session:
        await store.add_pending_no_commit(session, waiting)
        await session.commit()
        await store.add_finished(
            session, waiting[0], status=OutboxStatus.failed, error="Bad Request: chat not found"
        )
    metrics = DeskMetrics()

    await metrics.refresh(session_factory)

    page = metrics.render().decode()
    assert "deskbot_outbox_depth 2.0" in page, page
    assert "deskbot_outbox_failed 1.0" in page, page
