"""Canned replies ("snippets"): answers agents send often, kept by supervisors in the database
(shared by every instance), inserted into a conversation with ``/s name``."""

import re

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.clock import utcnow
from crm_core.errors import InvalidInput, SnippetNotFound
from crm_core.models import Snippet
from crm_core.services._sql import unit_of_work

NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
MAX_TEXT_LENGTH = 3000  # room for the signature within Telegram's 4096


def clean_name(name: str) -> str:
    cleaned = name.strip().lower()
    if not NAME_PATTERN.fullmatch(cleaned):
        raise InvalidInput(
            "A snippet name is 1-32 lower-case letters, digits, - or _, e.g. refund-time."
        )
    return cleaned


async def save_snippet(
    *, session: AsyncSession, name: str, text: str, agent_id: int | None = None
) -> Snippet:
    """Create the snippet, or replace the text of the one with that name."""
    key = clean_name(name)
    body = text.strip()
    if not body:
        raise InvalidInput("A snippet needs a text.")
    if len(body) > MAX_TEXT_LENGTH:
        raise InvalidInput(f"A snippet is at most {MAX_TEXT_LENGTH} characters ({len(body)}).")
    async with unit_of_work(session):
        snippet = (await session.exec(select(Snippet).where(Snippet.name == key))).first()
        if snippet is None:
            snippet = Snippet(name=key, text=body, updated_by_agent_id=agent_id)
            session.add(snippet)
        else:
            snippet.text, snippet.updated_by_agent_id = body, agent_id
            snippet.updated_at = utcnow()
        await session.flush()
    return snippet


async def get_snippet(*, session: AsyncSession, name: str) -> Snippet:
    key = name.strip().lower()
    async with unit_of_work(session):
        snippet = (await session.exec(select(Snippet).where(Snippet.name == key))).first()
    if snippet is None:
        raise SnippetNotFound(f"There is no snippet “{key[:40]}”. /snippets lists them.")
    return snippet


async def list_snippets(*, session: AsyncSession) -> list[Snippet]:
    async with unit_of_work(session):
        return list((await session.exec(select(Snippet).order_by(col(Snippet.name)))).all())


async def delete_snippet(*, session: AsyncSession, name: str) -> None:
    snippet = await get_snippet(session=session, name=name)
    async with unit_of_work(session):
        await session.delete(snippet)
