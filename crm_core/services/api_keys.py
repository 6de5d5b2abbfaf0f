"""API keys: bearer tokens for other channels writing into the CRM (``/api/v1``).

A token is ``dsk_`` + 43 URL-safe characters (256 random bits). Only its SHA-256 is stored:
a request's key is found by looking its hash up in a unique index, so no stored secret is
compared character by character with what the caller sent (the hash of a guess reveals nothing
about the hash of the real token), and a stolen database holds no usable token. Shown once,
when the key is created; ``prefix`` (its first characters) tells keys apart in lists and logs.
"""

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.clock import utcnow
from crm_core.errors import InvalidInput, NotFound
from crm_core.models import ApiKey, ApiScope
from crm_core.services._sql import unit_of_work

TOKEN_PREFIX = "dsk_"
PREFIX_LENGTH = len(TOKEN_PREFIX) + 8
# Writing "last used" on every request would make each read a write; a minute is precise
# enough to tell a key in use from a forgotten one.
LAST_USED_RESOLUTION = timedelta(minutes=1)
_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
_TOKEN = re.compile(r"dsk_[A-Za-z0-9_-]{43}")


class ApiKeyNotFound(NotFound):
    pass


@dataclass(frozen=True)
class CreatedApiKey:
    key: ApiKey
    token: str  # shown once; never stored


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def parse_scopes(raw: Iterable[str]) -> list[str]:
    """The scopes in their canonical order; an unknown one is refused with the known ones."""
    known = {scope.value for scope in ApiScope}
    wanted = {word.strip().lower() for word in raw if word.strip()}
    unknown = sorted(wanted - known)
    if unknown:
        raise InvalidInput(
            f"Unknown scope {', '.join(unknown)}; use {', '.join(s.value for s in ApiScope)}."
        )
    if not wanted:
        raise InvalidInput(f"Give at least one scope: {', '.join(s.value for s in ApiScope)}.")
    return [scope.value for scope in ApiScope if scope.value in wanted]


def _clean_name(name: str) -> str:
    clean = name.strip().lower()
    if not _NAME.fullmatch(clean):
        raise InvalidInput(
            "A key's name is 1-64 lower-case letters, digits, '.', '_' or '-' (e.g. shop)."
        )
    return clean


async def create_api_key(
    *, session: AsyncSession, name: str, scopes: Iterable[str]
) -> CreatedApiKey:
    """A new key; its token is in the answer and nowhere else. One live key per name."""
    clean = _clean_name(name)
    granted = parse_scopes(scopes)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        name=clean, prefix=token[:PREFIX_LENGTH], scopes=granted, token_sha256=token_digest(token)
    )
    try:
        async with unit_of_work(session):
            session.add(key)
            await session.flush()
    except IntegrityError:
        raise InvalidInput(
            f"A live key named {clean} exists; revoke it first or choose another name."
        ) from None
    return CreatedApiKey(key=key, token=token)


async def list_api_keys(*, session: AsyncSession) -> list[ApiKey]:
    """Every key, live and revoked, oldest first."""
    async with unit_of_work(session):
        stmt = select(ApiKey).order_by(col(ApiKey.created_at), col(ApiKey.id))
        return list((await session.exec(stmt)).all())


async def revoke_api_key(
    *, session: AsyncSession, name: str, now: datetime | None = None
) -> ApiKey:
    """Revoke the live key of that name: from the next request on it is refused."""
    clean = name.strip().lower()
    async with unit_of_work(session):
        stmt = select(ApiKey).where(ApiKey.name == clean, col(ApiKey.revoked_at).is_(None))
        key = (await session.exec(stmt)).first()
        if key is None:
            raise ApiKeyNotFound(f"There is no live API key named {clean!r}.")
        key.revoked_at = now or utcnow()
    return key


async def authenticate(
    *, session: AsyncSession, token: str, now: datetime | None = None
) -> ApiKey | None:
    """The live key the token belongs to, or None (unknown, malformed or revoked)."""
    if not _TOKEN.fullmatch(token):
        return None
    digest = token_digest(token)
    now = now or utcnow()
    async with unit_of_work(session):
        key = (await session.exec(select(ApiKey).where(ApiKey.token_sha256 == digest))).first()
        # The lookup found the row by its hash; comparing once more in constant time costs
        # nothing and keeps the check independent of how the database compares strings.
        if key is None or not hmac.compare_digest(key.token_sha256, digest):
            return None
        if key.revoked_at is not None:
            return None
        if key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION:
            key.last_used_at = now
    return key
