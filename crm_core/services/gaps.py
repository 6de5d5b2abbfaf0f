"""Knowledge-base gaps: the questions the bot could not answer, grouped by similarity, largest
group first, each with example questions and the answers agents gave to them.

The database finds, for each ``kb_none`` of the window (the most recent ``sample`` of them), the
question it answered (the customer's last inbound message at or before it) and the first agent
reply to that customer within 72 h after. Grouping by similarity is text work the databases
cannot do: it runs on that bounded sample with rapidfuzz (``token_set_ratio``), greedily: a
question joins the first group whose first question it resembles at least ``threshold``.
"""

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from rapidfuzz import fuzz, utils
from sqlalchemy import select
from sqlalchemy.orm import aliased
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.models import Direction, Interaction, InteractionKind
from crm_core.periods import Window
from crm_core.services._figures import dialect_name, shifted
from crm_core.services._sql import unit_of_work

K = InteractionKind
ANSWER_WITHIN = timedelta(hours=72)
DEFAULT_SAMPLE = 500
DEFAULT_THRESHOLD = 70.0
EXAMPLES = 3


@dataclass
class GapGroup:
    question: str  # the first (most recent) question of the group, as asked
    count: int = 0
    examples: list[str] = field(default_factory=list)
    agent_answers: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class GapReport:
    window: Window
    unanswered: int  # kb_none in the sample that had a question text
    groups: list[GapGroup]


async def knowledge_gaps(
    *,
    session: AsyncSession,
    window: Window,
    limit: int = 10,
    sample: int = DEFAULT_SAMPLE,
    threshold: float = DEFAULT_THRESHOLD,
) -> GapReport:
    dialect = dialect_name(session)
    none = aliased(Interaction)
    question, reply = aliased(Interaction), aliased(Interaction)
    asked = (
        select(col(question.text))
        .where(
            col(question.customer_id) == col(none.customer_id),
            col(question.kind) == K.message,
            col(question.direction) == Direction.inbound,
            col(question.occurred_at) <= col(none.occurred_at),
        )
        .order_by(col(question.occurred_at).desc())
        .limit(1)
        .scalar_subquery()
    )
    answered = (
        select(col(reply.text))
        .where(
            col(reply.customer_id) == col(none.customer_id),
            col(reply.kind) == K.agent_reply,
            col(reply.occurred_at) > col(none.occurred_at),
            col(reply.occurred_at) <= shifted(dialect, col(none.occurred_at), ANSWER_WITHIN),
        )
        .order_by(col(reply.occurred_at))
        .limit(1)
        .scalar_subquery()
    )
    stmt: Any = (
        select(asked, answered)
        .where(
            col(none.kind) == K.kb_none,
            col(none.occurred_at) >= window.start,
            col(none.occurred_at) < window.end,
            col(none.customer_id).is_not(None),
        )
        .order_by(col(none.occurred_at).desc())
        .limit(sample)
    )
    async with unit_of_work(session):
        rows = (await session.exec(stmt)).all()
    pairs = [(q.strip(), a) for q, a in rows if q and q.strip()]
    groups = _group(pairs, threshold)
    groups.sort(key=lambda g: -g.count)
    return GapReport(window=window, unanswered=len(pairs), groups=groups[:limit])


def _group(pairs: list[tuple[str, str | None]], threshold: float) -> list[GapGroup]:
    groups: list[GapGroup] = []
    keys: list[str] = []
    for text, answer in pairs:
        key = utils.default_process(text)
        index = next(
            (i for i, other in enumerate(keys) if fuzz.token_set_ratio(key, other) >= threshold),
            None,
        )
        if index is None:
            groups.append(GapGroup(question=text))
            keys.append(key)
        group = groups[-1 if index is None else index]
        group.count += 1
        if len(group.examples) < EXAMPLES and text not in group.examples:
            group.examples.append(text)
        if answer and len(group.agent_answers) < EXAMPLES and answer not in group.agent_answers:
            group.agent_answers.append(answer)
    return groups
