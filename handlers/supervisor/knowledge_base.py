"""``/reload_kb`` (supervisors): reload the knowledge base; on any problem the previous version
stays live and the problems are listed."""

from __future__ import annotations

import asyncio
import logging

from telegram import Update

from handlers.core.context import DeskContext
from handlers.core.guards import supervisor_only
from handlers.core.send import reply

log = logging.getLogger(__name__)

MAX_PROBLEMS_SHOWN = 10


@supervisor_only
async def on_reload_kb(update: Update, context: DeskContext) -> None:
    holder = context.deps.kb_holder
    if holder is None:
        await reply(context, "supervisor_reload_kb", applied=False, count=0, problems=[])
        return
    result = await asyncio.to_thread(holder.reload)
    log.info("/reload_kb by %s: %s", update.effective_user, result.summary())
    problems = [f"{p.path.name}:{p.line}: {p.reason}" for p in result.problems]
    await reply(
        context,
        "supervisor_reload_kb",
        applied=result.applied,
        count=result.article_count,
        problems=problems[:MAX_PROBLEMS_SHOWN],
        more=max(0, len(problems) - MAX_PROBLEMS_SHOWN),
    )
